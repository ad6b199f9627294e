"""Split documents into chunks with Open WebUI's splitter, settings and chunk metadata.

Open WebUI writes a file's own collection from the file's documents, and a knowledge
collection from the *stored* chunks of the file collection run through the splitter again, so a
knowledge chunk's `start_index` is relative to the file chunk it came from. Both are reproduced.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.documents import Document

from pgvector_migration.pipeline.ids import chunk_id_for, text_sha256
from pgvector_migration.pipeline.langchain_splitters import (
    MarkdownHeaderTextSplitter,
    RecursiveCharacterTextSplitter,
    TokenTextSplitter,
)
from pgvector_migration.pipeline.metadata import (
    chunk_metadata,
    sanitize_text,
    source_document_metadata,
)
from pgvector_migration.pipeline.records import Chunk, SourceFile, TextDocument
from pgvector_migration.settings import RagSettings, SettingsError

MARKDOWN_HEADERS = [("#" * level, f"Header {level}") for level in range(1, 7)]


class EmptyContentError(ValueError):
    """Open WebUI refuses to index a file whose content yields no chunk."""


def _length_function(settings: RagSettings) -> Callable[[str], int]:
    if settings.text_splitter != "token":
        return len
    encoding = _tiktoken_encoding(settings)
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def _tiktoken_encoding(settings: RagSettings):
    import tiktoken

    try:
        return tiktoken.get_encoding(settings.tiktoken_encoding_name)
    except Exception as error:
        raise SettingsError(
            f"TIKTOKEN_ENCODING_NAME={settings.tiktoken_encoding_name!r} cannot be loaded "
            f"without network access ({error}); put its file in TIKTOKEN_CACHE_DIR"
        ) from error


def _markdown_header_pass(documents: list[Document]) -> list[Document]:
    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=MARKDOWN_HEADERS, strip_headers=False)
    return [
        Document(page_content=piece.page_content, metadata={**document.metadata})
        for document in documents
        for piece in splitter.split_text(document.page_content)
    ]


def _can_merge(first: Document, second: Document) -> bool:
    if first.metadata.get("source") != second.metadata.get("source"):
        return False
    first_id, second_id = first.metadata.get("file_id"), second.metadata.get("file_id")
    return first_id == second_id if first_id is not None and second_id is not None else True


def merge_to_target_size(
    documents: list[Document], min_size: int, max_size: int, measure: Callable[[str], int]
) -> list[Document]:
    """Grow chunks below `min_size` by joining neighbours (forward first, then backward) with a
    blank line, never past `max_size` nor across files, as `CHUNK_MIN_SIZE_TARGET` does."""
    if min_size <= 0:
        return documents
    merged: list[Document] = []

    def emit(content: str, origin: Document) -> None:
        if measure(content) < min_size and merged and _can_merge(merged[-1], origin):
            candidate = f"{merged[-1].page_content}\n\n{content}"
            if measure(candidate) <= max_size:
                merged[-1] = Document(page_content=candidate, metadata={**merged[-1].metadata})
                return
        merged.append(Document(page_content=content, metadata={**origin.metadata}))

    current: Document | None = None
    content = ""
    for following in documents:
        if current is None:
            current, content = following, following.page_content
            continue
        joined = f"{content}\n\n{following.page_content}"
        if (
            _can_merge(current, following)
            and measure(content) < min_size
            and measure(joined) <= max_size
        ):
            content = joined
        else:
            emit(content, current)
            current, content = following, following.page_content
    if current is not None:
        emit(content, current)
    return merged


def split_documents(documents: list[TextDocument], settings: RagSettings) -> list[TextDocument]:
    """Open WebUI's split step: optional markdown-header pass and size merging, then the
    character or token splitter with `start_index`."""
    docs = [Document(page_content=d.text, metadata=dict(d.metadata)) for d in documents]
    if settings.enable_markdown_header_text_splitter:
        docs = _markdown_header_pass(docs)
        docs = merge_to_target_size(
            docs,
            settings.chunk_min_size_target,
            settings.chunk_size,
            _length_function(settings),
        )
    if settings.text_splitter == "token":
        _tiktoken_encoding(settings)
        splitter = TokenTextSplitter(
            encoding_name=settings.tiktoken_encoding_name,
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            add_start_index=True,
            disallowed_special=(),
        )
    else:
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=settings.chunk_size,
            chunk_overlap=settings.chunk_overlap,
            add_start_index=True,
        )
    return [TextDocument(d.page_content, d.metadata) for d in splitter.split_documents(docs)]


def build_chunks(
    split: list[TextDocument],
    collection_name: str,
    file: SourceFile,
    content_hash: str,
    settings: RagSettings,
) -> list[Chunk]:
    """Turn split documents into the rows of one collection: sanitized text, stored metadata and
    deterministic ids."""
    if not split:
        raise EmptyContentError(f"file {file.id} ({file.filename}): the content is empty")
    chunks = []
    for position, document in enumerate(split):
        text = sanitize_text(document.text)
        chunks.append(
            Chunk(
                id=chunk_id_for(collection_name, file.id, position, text),
                collection_name=collection_name,
                file_id=file.id,
                position=position,
                text=text,
                metadata=chunk_metadata(
                    document.metadata,
                    file,
                    content_hash,
                    settings.embedding_engine,
                    settings.embedding_model,
                ),
            )
        )
    return chunks


def stored_content_documents(file: SourceFile, content: str) -> list[TextDocument]:
    """The single document Open WebUI builds from `file.data.content` when it re-indexes a file
    without re-reading the upload."""
    return [TextDocument(content, source_document_metadata(file, {}))]


UPLOAD_TIME_LATER_META_KEYS = ("collection_name",)


def loaded_documents(file: SourceFile, loaded: list[TextDocument]) -> list[TextDocument]:
    """Loader output with the metadata Open WebUI gives it at upload time: the file's `meta` as
    it was then, before Open WebUI recorded the file's collection in it (the knowledge
    collection's chunks inherit the file chunks' metadata, so it is absent there too)."""
    documents = []
    for document in loaded:
        metadata = source_document_metadata(file, document.metadata)
        for key in UPLOAD_TIME_LATER_META_KEYS:
            if key not in document.metadata:
                metadata.pop(key, None)
        documents.append(TextDocument(document.text, metadata))
    return documents


def joined_text(documents: list[TextDocument]) -> str:
    """The text Open WebUI stores as `file.data.content` and hashes: pages joined by a space."""
    return " ".join(document.text for document in documents)


def content_hash_of(text: str) -> str:
    """`hash` metadata and `file.hash`: sha256 of the extracted text."""
    return text_sha256(text)
