"""Open WebUI's content-extraction engines: who turns an upload into text documents.

`CONTENT_EXTRACTION_ENGINE` picks the engine. The default engine is Open WebUI's own loaders
(`loaders.load_documents`); `tika`, `docling` and `external` are HTTP services, called here with
the same method, path, headers and body Open WebUI 0.12.4 sends, and their answers turned into
documents (text and metadata) the way Open WebUI turns them (`extraction_services`). Under
`tika` and `docling`, text files stay on Open WebUI's plain text loader; every engine's text
gets the same `ftfy` clean-up.
"""

from __future__ import annotations

from pathlib import Path

from pgvector_migration.pipeline.extraction_services import (
    Transport,
    docling_documents,
    external_documents,
    tika_documents,
)
from pgvector_migration.pipeline.loaders import (
    LoaderError,
    LoaderWeight,
    UnsupportedFileType,
    clean_text,
    detect_text_encoding,
    extension_of,
    load_documents,
    loader_weight,
    looks_binary,
    unsupported_reason,
)
from pgvector_migration.pipeline.office_loaders import archive_too_large
from pgvector_migration.pipeline.pdf_loader import PdfOptions
from pgvector_migration.pipeline.records import TextDocument
from pgvector_migration.settings import DEFAULT_EXTRACTION_ENGINES, RagSettings, SettingsError

# Extensions Open WebUI's `Loader` reads as plain text whatever the engine (`known_source_ext`).
_SOURCE_EXTENSION_WORDS = (
    "go py java sh bat ps1 cmd js ts css cpp hpp h c cs ino sql log ini pl pm r dart "
    "dockerfile env php hs hsc lua nginxconf conf m mm plsql perl rb rs db2 scala bash "
    "swift vue svelte ex exs erl tsx jsx lhs json yaml yml toml svg"
)
SOURCE_EXTENSIONS = frozenset(_SOURCE_EXTENSION_WORDS.split())


def extract_documents(
    path: Path,
    filename: str,
    content_type: str | None,
    settings: RagSettings,
    file_id: str | None = None,
    user_id: str | None = None,
    stored_path: str | None = None,
    transport: Transport | None = None,
) -> list[TextDocument]:
    """The text documents of one upload under the configured extraction engine, cleaned as
    Open WebUI cleans them. `file_id` and `user_id` fill the external loader's header
    templates (`{{FILE_ID}}`, `{{USER_ID}}`); `stored_path` is the file row's `path`, which
    the default engine's .rst metadata names; `transport` sends the HTTP engines' requests
    (the default engine needs none)."""
    engine = settings.content_extraction_engine
    if engine in DEFAULT_EXTRACTION_ENGINES:
        pdf = PdfOptions(
            settings.pdf_loader_mode, settings.pdf_extract_images, settings.rapidocr_params
        )
        return load_documents(path, filename, content_type, stored_path, pdf)
    if transport is None:
        raise SettingsError(
            f"CONTENT_EXTRACTION_ENGINE={engine!r} (config rag.content_extraction_engine) calls "
            "an HTTP service, and no transport to send its requests was given"
        )
    if archive_too_large(path, extension_of(filename), content_type):
        raise LoaderError(f"{filename}: the document archive is too large after decompression")
    if engine == "external":
        documents = external_documents(
            path, filename, content_type, settings, transport, file_id, user_id
        )
    elif keeps_text_loader(engine, filename, content_type):
        documents = _text_file_documents(path, filename)
    elif engine == "tika":
        documents = tika_documents(path, settings, transport)
    elif engine == "docling":
        documents = docling_documents(path, content_type, settings, transport)
    else:
        raise SettingsError(
            f"CONTENT_EXTRACTION_ENGINE={engine!r} (config rag.content_extraction_engine) "
            "cannot extract text in this version"
        )
    return [TextDocument(clean_text(d.text), d.metadata) for d in documents]


def refusal_reason(filename: str, content_type: str | None, settings: RagSettings) -> str | None:
    """Why Open WebUI would not extract this upload under the configured engine, or None.

    Images and videos go to an HTTP engine when `CONTENT_EXTRACTION_SUPPORTED_MEDIA_MIME_TYPES`
    lists their type, or, when that setting is unset, to the external loader only.
    """
    engine = settings.content_extraction_engine
    if (
        engine not in DEFAULT_EXTRACTION_ENGINES
        and content_type
        and content_type.startswith(("image/", "video/"))
        and _media_goes_to_engine(settings, content_type)
    ):
        return None
    return unsupported_reason(filename, content_type)


def reading_weight(filename: str, content_type: str | None, settings: RagSettings) -> LoaderWeight:
    """What reading this upload under the configured engine costs the process that reads it:
    the default engine's loader's weight; an HTTP engine's answer is parsed like a document,
    except for the text files tika and docling leave to the text loader."""
    engine = settings.content_extraction_engine
    if engine in DEFAULT_EXTRACTION_ENGINES:
        return loader_weight(filename, content_type)
    if keeps_text_loader(engine, filename, content_type):
        return LoaderWeight.TEXT
    return LoaderWeight.PARSER


def keeps_text_loader(engine: str, filename: str, content_type: str | None) -> bool:
    """Whether Open WebUI reads this upload with its text loader although `engine` is an HTTP
    engine: tika and docling leave text files (`is_text_file`) to it."""
    return engine in ("tika", "docling") and is_text_file(filename, content_type)


def is_text_file(filename: str, content_type: str | None) -> bool:
    """Open WebUI's test for a file it keeps on its text loader under tika and docling: a
    source-code extension, or a `text/` content type that is not HTML."""
    extension = filename.split(".")[-1].lower()
    if extension in SOURCE_EXTENSIONS:
        return True
    return bool(content_type) and "text/" in content_type and "html" not in content_type


def _media_goes_to_engine(settings: RagSettings, content_type: str) -> bool:
    supported = settings.content_extraction_supported_media_mime_types
    if supported is None:
        return settings.content_extraction_engine == "external"
    return _mime_type_matches(supported, content_type)


def _mime_type_matches(supported: list[str], content_type: str) -> bool:
    """`type/subtype` against entries like `image/png`, `image/*` or `*/*`; parameters an
    entry names must be equal in the content type."""

    def parse(mime: str) -> tuple[str, str, dict[str, str]]:
        full, *raw_params = (part.strip() for part in mime.split(";"))
        kind, _, subtype = full.lower().partition("/")
        params = dict(p.split("=", 1) for p in raw_params if "=" in p)
        return kind.strip() or "*", subtype.strip() or "*", params

    kind, subtype, params = parse(content_type)
    for entry in supported:
        if "/" not in entry:
            continue
        want_kind, want_subtype, want_params = parse(entry)
        if want_kind not in ("*", kind) or want_subtype not in ("*", subtype):
            continue
        if all(params.get(k) == v for k, v in want_params.items()):
            return True
    return False


def _text_file_documents(path: Path, filename: str) -> list[TextDocument]:
    """Open WebUI's `TextLoader`: the whole file as one document, read in text mode (so line
    endings become `\\n`)."""
    raw = path.read_bytes()
    if looks_binary(raw):
        raise UnsupportedFileType(f"{filename} holds binary data, not text")
    text = raw.decode(detect_text_encoding(raw))
    return [TextDocument(text.replace("\r\n", "\n").replace("\r", "\n"), {"source": str(path)})]
