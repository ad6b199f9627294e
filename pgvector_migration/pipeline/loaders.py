"""Turn an uploaded file into text documents the way Open WebUI's default extraction engine does.

The mapping from extension and content type to loader follows Open WebUI's `Loader`; every
loader's text goes through the same `ftfy` clean-up Open WebUI applies.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from enum import Enum
from functools import partial
from pathlib import Path

import ftfy

from pgvector_migration.pipeline.docx_text import docx_text
from pgvector_migration.pipeline.html_text import html_text
from pgvector_migration.pipeline.office_loaders import (
    PartitionError,
    archive_too_large,
    partition_documents,
)
from pgvector_migration.pipeline.pdf_loader import EncryptedPdfError, PdfOptions, load_pdf
from pgvector_migration.pipeline.records import TextDocument

DOCX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
EXCEL_CONTENT_TYPES = frozenset(
    {
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)
POWERPOINT_CONTENT_TYPES = frozenset(
    {
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)


class UnsupportedFileType(Exception):
    """Open WebUI itself would not extract text from this file (or we cannot yet)."""


class LoaderError(Exception):
    """The file's bytes could not be turned into text; the message says why."""


def extension_of(filename: str) -> str:
    """Open WebUI's notion of an extension: what follows the last dot, lower-cased."""
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def unsupported_reason(filename: str, content_type: str | None) -> str | None:
    """Why Open WebUI would refuse to extract this file, or None if it would try."""
    if content_type and content_type.startswith("video/"):
        return f"video files are stored without text extraction ({content_type})"
    if content_type and content_type.startswith("image/"):
        return f"file type {content_type} is not supported for processing (no OCR engine)"
    return None


CHARDET_WINDOW_BYTES = 256 * 1024
CJK_MIN_SHARE = 0.05
# chardet's names for CJK encodings, mapped to the codec that decodes the whole family (GB2312
# and GBK text is GB18030 text); tried first when chardet names one of them.
CJK_CODEC_OF_GUESS = {
    "gb2312": "gb18030",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "big5": "big5",
    "euckr": "euc-kr",
    "cp949": "cp949",
    "eucjp": "euc-jp",
    "iso2022jp": "euc-jp",
    "shiftjis": "cp932",
    "cp932": "cp932",
}
CJK_CODECS = ("gb18030", "big5", "euc-kr", "euc-jp")
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0xF900, 0xFAFF),
    (0x3000, 0x303F),
    (0x3040, 0x309F),
    (0x30A0, 0x30FF),
    (0xAC00, 0xD7AF),
    (0xFF00, 0xFFEF),
)


def _mostly_cjk(text: str) -> bool:
    """At least CJK_MIN_SHARE of the visible characters are CJK: a CJK codec that decodes
    bytes into something else has guessed wrong."""
    visible = [ord(ch) for ch in text if not ch.isspace()]
    if not visible:
        return False
    cjk = sum(1 for cp in visible if any(low <= cp <= high for low, high in _CJK_RANGES))
    return cjk / len(visible) >= CJK_MIN_SHARE


def detect_text_encoding(raw: bytes) -> str:
    """The encoding Open WebUI's loaders read a text file with: UTF-8 when it decodes; else a
    CJK codec (chardet's hint first) whose text is recognisably CJK; else chardet's guess when
    it decodes; else latin-1, which always decodes (ftfy then repairs Windows-1252 mojibake).

    chardet reads a window around the first non-UTF-8 byte, or the whole file when that window
    holds almost no non-ASCII bytes, as Open WebUI does."""
    if not raw:
        return "utf-8"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        first_bad = error.start
    import chardet

    start = max(0, first_bad - CHARDET_WINDOW_BYTES // 2)
    sample = raw[start : start + CHARDET_WINDOW_BYTES]
    detected = chardet.detect(sample)
    if len(sample.translate(None, delete=bytes(range(128)))) < 64 and len(sample) < len(raw):
        detected = chardet.detect(raw)
    guess = detected.get("encoding")
    hinted = CJK_CODEC_OF_GUESS.get((guess or "").lower().replace("-", "").replace("_", ""))
    for codec in ([hinted] if hinted else []) + [c for c in CJK_CODECS if c != hinted]:
        try:
            text = raw.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if text.strip() and _mostly_cjk(text):
            return codec
    if guess:
        try:
            raw.decode(guess)
            return guess
        except (UnicodeDecodeError, LookupError):
            pass
    return "latin-1"


BINARY_SAMPLE_BYTES = 8192
BINARY_CONTROL_RATIO = 0.3
_TEXT_CONTROLS = {9, 10, 12, 13, 27}


def looks_binary(raw: bytes) -> bool:
    """NUL bytes, or mostly control bytes, in the first 8 KiB: not a text file whatever its
    name says."""
    sample = raw[:BINARY_SAMPLE_BYTES]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for byte in sample if byte < 32 and byte not in _TEXT_CONTROLS)
    return controls / len(sample) > BINARY_CONTROL_RATIO


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if looks_binary(raw):
        raise UnsupportedFileType(f"{path.name} holds binary data, not text")
    return raw.decode(detect_text_encoding(raw))


def _load_text(path: Path) -> list[TextDocument]:
    return [TextDocument(_read_text(path), {"source": str(path)})]


def _load_html(path: Path) -> list[TextDocument]:
    text, title = html_text(_read_text(path))
    return [TextDocument(text, {"source": str(path), "title": title})]


def _load_docx(path: Path) -> list[TextDocument]:
    return [TextDocument(docx_text(path), {"source": str(path)})]


def _load_csv(path: Path) -> list[TextDocument]:
    documents = []
    with path.open(newline="", encoding=detect_text_encoding(path.read_bytes())) as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            fields = []
            for key, value in row.items():
                if isinstance(value, str):
                    value = value.strip()
                elif isinstance(value, list):
                    value = ",".join(v.strip() for v in value)
                fields.append(f"{key.strip() if key is not None else key}: {value}")
            documents.append(TextDocument("\n".join(fields), {"source": str(path), "row": index}))
    return documents


def loader_for(
    filename: str,
    content_type: str | None,
    stored_path: str | None = None,
    pdf: PdfOptions | None = None,
) -> Callable[[Path], list[TextDocument]]:
    """Pick the loader Open WebUI's default engine would use for this file, tested in its order
    (an .epub is recognised by its content type only; anything unmatched is read as text).

    `stored_path` is Open WebUI's `file.path`, which .rst element metadata names; `pdf` holds
    its PDF settings (page mode, no image OCR when None)."""
    reason = unsupported_reason(filename, content_type)
    if reason:
        raise UnsupportedFileType(reason)
    extension = extension_of(filename)
    if extension == "pdf":
        return partial(_load_pdf, options=pdf)
    if extension == "csv":
        return _load_csv
    if extension == "rst":
        return partial(_load_unstructured, "rst", elements_mode=True, stored_path=stored_path)
    if extension == "xml":
        return partial(_load_unstructured, "xml")
    if extension in ("htm", "html"):
        return _load_html
    if extension == "md":
        return _load_text
    if content_type == "application/epub+zip":
        return partial(_load_unstructured, "epub")
    if extension == "docx" or content_type == DOCX_CONTENT_TYPE:
        return _load_docx
    if extension == "doc" or content_type == "application/msword":
        return partial(_load_unstructured, "doc")
    if extension in ("xls", "xlsx") or content_type in EXCEL_CONTENT_TYPES:
        return partial(_load_unstructured, "xlsx")
    if extension in ("ppt", "pptx") or content_type in POWERPOINT_CONTENT_TYPES:
        return partial(_load_unstructured, "ppt" if extension == "ppt" else "pptx")
    if extension == "msg":
        return partial(_load_unstructured, "msg", process_attachments=False)
    if extension == "odt":
        return partial(_load_unstructured, "odt")
    return _load_text


class LoaderWeight(Enum):
    """What reading a file costs the process that reads it, beyond the file's own text."""

    TEXT = "text"  # decoded (text, Markdown, source code, CSV): no parser library, no parse tree
    PARSER = "parser"  # pypdf, the HTML or the .docx reader: what the document parses into
    PARTITION = "partition"  # unstructured: spaCy, langdetect's profiles, word lists (~220 MiB
    # that stay in the process), and pandoc or LibreOffice for some formats


def loader_weight(filename: str, content_type: str | None) -> LoaderWeight:
    """The weight of the loader `loader_for` picks (a refused file weighs nothing); planning
    decides by it which process reads a file."""
    try:
        loader = loader_for(filename, content_type)
    except UnsupportedFileType:
        return LoaderWeight.TEXT
    function = loader.func if isinstance(loader, partial) else loader
    if function is _load_unstructured:
        return LoaderWeight.PARTITION
    if function in (_load_text, _load_csv):
        return LoaderWeight.TEXT
    return LoaderWeight.PARSER


def _load_pdf(path: Path, options: PdfOptions | None) -> list[TextDocument]:
    try:
        return load_pdf(path, options)
    except EncryptedPdfError as error:
        raise LoaderError(str(error)) from error


def _load_unstructured(file_format: str, path: Path, **options) -> list[TextDocument]:
    try:
        return partition_documents(path, file_format, **options)
    except PartitionError as error:
        raise LoaderError(str(error)) from error


def load_documents(
    path: Path,
    filename: str,
    content_type: str | None,
    stored_path: str | None = None,
    pdf: PdfOptions | None = None,
) -> list[TextDocument]:
    """Extract the text documents of one uploaded file, cleaned as Open WebUI cleans them.

    `stored_path` (the file row's `path`) only matters for .rst files, whose element metadata
    names the directory Open WebUI read them from; `pdf` only for PDFs."""
    loader = loader_for(filename, content_type, stored_path, pdf)
    if archive_too_large(path, extension_of(filename), content_type):
        raise LoaderError(f"{filename}: the document archive is too large after decompression")
    try:
        documents = loader(path)
    except (UnsupportedFileType, LoaderError):
        raise
    except Exception as error:
        raise LoaderError(f"cannot read {filename}: {type(error).__name__}: {error}") from error
    return [TextDocument(clean_text(document.text), document.metadata) for document in documents]


def clean_text(text: str) -> str:
    """The `ftfy` repair Open WebUI applies to every extracted text, whatever the engine."""
    return ftfy.fix_text(text, unescape_html=False, fix_character_width=False, uncurl_quotes=False)
