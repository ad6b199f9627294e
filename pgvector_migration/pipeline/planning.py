"""What one file must look like in each of its collections: the chunks, before embedding."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from pgvector_migration.pipeline.extraction_engines import extract_documents, refusal_reason
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType
from pgvector_migration.pipeline.records import (
    Chunk,
    SourceFile,
    TextDocument,
    file_collection_name,
)
from pgvector_migration.pipeline.splitting import (
    build_chunks,
    content_hash_of,
    joined_text,
    loaded_documents,
    split_documents,
    stored_content_documents,
)
from pgvector_migration.settings import RagSettings, resolve_rag_settings


@dataclass(frozen=True)
class FilePlan:
    """The chunks of one file per collection, and the hash of the text they came from."""

    file_id: str
    content_hash: str
    chunks_by_collection: dict[str, list[Chunk]]

    @property
    def chunk_count(self) -> int:
        return sum(len(chunks) for chunks in self.chunks_by_collection.values())


def source_documents(
    file: SourceFile, reextract: bool = False, settings: RagSettings | None = None
) -> tuple[list[TextDocument], str]:
    """The file's documents and the full text Open WebUI hashes.

    Stored content is what Open WebUI's own knowledge path re-indexes from, so it is preferred;
    the upload is read only when no content was stored (or `reextract` asks for it), with the
    content-extraction engine of `settings` (Open WebUI's defaults when None).
    """
    if settings is None:
        settings = resolve_rag_settings({}, {})
    if file.source_problem:
        raise LoaderError(file.source_problem)
    if file.oversize:
        raise UnsupportedFileType(file.oversize)
    content = file.stored_content
    if content is not None and not reextract:
        return stored_content_documents(file, content), content
    reason = refusal_reason(file.filename, file.content_type, settings)
    if reason:
        raise UnsupportedFileType(reason)
    if file.upload_path is None:
        problem = file.upload_problem or "the file has no upload path"
        if reextract and content is not None:
            raise LoaderError(f"re-extraction needs the upload: {problem}")
        raise LoaderError(f"{problem}, and Open WebUI stored no extracted content for it")
    extracted = extract_documents(
        file.upload_path,
        file.filename,
        file.content_type,
        settings,
        file.id,
        file.user_id,
        file.stored_path,
    )
    documents = loaded_documents(file, extracted)
    return documents, joined_text(documents)


def plan_file(
    file: SourceFile,
    settings: RagSettings,
    collection_names: list[str],
    reextract: bool = False,
) -> FilePlan:
    """Chunk one file for the given collections exactly as Open WebUI would.

    The file collection is split from the file's documents; a knowledge collection is split
    again from the file collection's stored chunks, as Open WebUI's "add to knowledge" does.
    """
    documents, text = source_documents(file, reextract, settings)
    content_hash = content_hash_of(text)
    own_collection = file_collection_name(file.id)
    file_chunks = build_chunks(
        split_documents(documents, settings), own_collection, file, content_hash, settings
    )
    planned: dict[str, list[Chunk]] = {}
    for name in collection_names:
        if name == own_collection:
            planned[name] = file_chunks
            continue
        stored_chunks = [TextDocument(c.text, dict(c.metadata)) for c in file_chunks]
        planned[name] = build_chunks(
            split_documents(stored_chunks, settings), name, file, content_hash, settings
        )
    return FilePlan(file.id, content_hash, planned)


PlanOutcome = tuple[SourceFile, FilePlan | None, str | None]


def _plan_or_error(
    file: SourceFile, settings: RagSettings, collection_names: list[str], reextract: bool
) -> PlanOutcome:
    try:
        return file, plan_file(file, settings, collection_names, reextract), None
    except Exception as error:  # reported per file; one file never stops the others
        return file, None, f"{type(error).__name__}: {error}"


def plan_files(
    files: Iterable[tuple[SourceFile, list[str]]],
    settings: RagSettings,
    reextract: bool,
    workers: int,
) -> Iterator[PlanOutcome]:
    """Plan many files, in order, on `workers` processes when there is more than one (loading
    PDFs and office documents is CPU-bound); at most two files per worker are in flight, so
    memory stays bounded however many files there are."""
    if workers <= 1:
        for file, collection_names in files:
            yield _plan_or_error(file, settings, collection_names, reextract)
        return
    window = workers * 2
    # forkserver: forking a process that runs threads (Dagster's, the writer's) could copy a
    # held lock into the child; the fork server is single-threaded and preloads this module.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: deque = deque()
        for file, collection_names in files:
            pending.append(pool.submit(_plan_or_error, file, settings, collection_names, reextract))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
