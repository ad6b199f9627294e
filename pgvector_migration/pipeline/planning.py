"""What one file must look like in each of its collections: the chunks, before embedding."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from pgvector_migration.pipeline.extraction_engines import (
    extract_documents,
    reading_weight,
    refusal_reason,
)
from pgvector_migration.pipeline.extraction_services import Transport
from pgvector_migration.pipeline.loaders import LoaderError, LoaderWeight, UnsupportedFileType
from pgvector_migration.pipeline.records import (
    Chunk,
    SourceFile,
    TextDocument,
    file_collection_name,
)
from pgvector_migration.pipeline.splitting import (
    EmptyContentError,
    build_chunks,
    content_hash_of,
    joined_text,
    loaded_documents,
    split_documents,
    stored_content_documents,
)
from pgvector_migration.pipeline.text_source import (
    SourceText,
    TextOrigin,
    TextSource,
    source_fingerprint,
)
from pgvector_migration.process_memory import release_free_heap
from pgvector_migration.settings import RagSettings, resolve_rag_settings

# Below this many files, one process plans them faster than starting more.
PARALLEL_FROM_FILES = 16
# Files `unstructured` partitions wait for the others up to this many, or this much stored
# text (they are held in memory until planned).
POSTPONED_FILES = 256
POSTPONED_TEXT = 32 * 1024 * 1024


@dataclass(frozen=True)
class FilePlan:
    """The chunks of one file per collection, the hash of the text they came from, where that
    text came from, and the fingerprint its units are written under."""

    file_id: str
    content_hash: str
    chunks_by_collection: dict[str, list[Chunk]]
    origin: TextOrigin = TextOrigin.UPLOAD
    fallback_reason: str | None = None
    settings_fingerprint: str = ""

    @property
    def chunk_count(self) -> int:
        return sum(len(chunks) for chunks in self.chunks_by_collection.values())


def _stored(file: SourceFile, content: str, fallback_reason: str | None = None) -> SourceText:
    return SourceText(
        stored_content_documents(file, content), content, TextOrigin.STORED, fallback_reason
    )


def _read_upload(
    file: SourceFile, settings: RagSettings, transport: Transport | None
) -> SourceText:
    """The upload's documents under the configured extraction engine, as Open WebUI's upload
    pipeline makes them; `transport` sends an HTTP engine's requests."""
    reason = refusal_reason(file.filename, file.content_type, settings)
    if reason:
        raise UnsupportedFileType(reason)
    if file.upload_path is None:
        raise LoaderError(file.upload_problem or "the file has no upload path")
    extracted = extract_documents(
        file.upload_path,
        file.filename,
        file.content_type,
        settings,
        file.id,
        file.user_id,
        file.stored_path,
        transport,
    )
    documents = loaded_documents(file, extracted)
    text = joined_text(documents)
    if not text.strip():
        raise EmptyContentError(f"file {file.id} ({file.filename}): the upload yields no text")
    return SourceText(documents, text, TextOrigin.UPLOAD)


def source_documents(
    file: SourceFile,
    text_source: TextSource = TextSource.UPLOAD,
    settings: RagSettings | None = None,
    transport: Transport | None = None,
) -> SourceText:
    """The file's documents and the full text Open WebUI hashes.

    By default the upload is read as Open WebUI's upload pipeline reads it; the text Open WebUI
    stored is used instead when the upload is missing, refused or unreadable (the reason is
    kept for reports), or when `text_source` asks for it. Without stored text the upload's
    problem is the file's error. `transport` sends the requests of an HTTP extraction engine.
    """
    if settings is None:
        settings = resolve_rag_settings({}, {})
    if file.source_problem:
        raise LoaderError(file.source_problem)
    if file.oversize:
        raise UnsupportedFileType(file.oversize)
    content = file.stored_content
    if content is not None and text_source is TextSource.STORED:
        return _stored(file, content)
    try:
        return _read_upload(file, settings, transport)
    except (UnsupportedFileType, LoaderError, EmptyContentError) as error:
        if isinstance(error, EmptyContentError) and not (content or "").strip():
            raise  # Open WebUI refused the file as empty at upload, as we do now
        if content is None:
            if isinstance(error, LoaderError) and file.upload_path is None:
                raise LoaderError(
                    f"{error}, and Open WebUI stored no extracted content for it"
                ) from error
            raise
        if text_source is TextSource.UPLOAD_ONLY:
            raise LoaderError(f"re-extraction needs the upload: {error}") from error
        return _stored(file, content, str(error))


def plan_file(
    file: SourceFile,
    settings: RagSettings,
    collection_names: list[str],
    text_source: TextSource = TextSource.UPLOAD,
    transport: Transport | None = None,
) -> FilePlan:
    """Chunk one file for the given collections exactly as Open WebUI would.

    The file collection is split from the file's documents; a knowledge collection is split
    again from the file collection's stored chunks, as Open WebUI's "add to knowledge" does.
    """
    source = source_documents(file, text_source, settings, transport)
    content_hash = content_hash_of(source.text)
    own_collection = file_collection_name(file.id)
    file_chunks = build_chunks(
        split_documents(source.documents, settings), own_collection, file, content_hash, settings
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
    reads_upload = source.origin is TextOrigin.UPLOAD
    fingerprint = source_fingerprint(
        settings.splitting_fingerprint(reads_upload), source.origin, file
    )
    return FilePlan(
        file.id, content_hash, planned, source.origin, source.fallback_reason, fingerprint
    )


PlanOutcome = tuple[SourceFile, FilePlan | None, str | None]


def _plan_or_error(
    file: SourceFile,
    settings: RagSettings,
    collection_names: list[str],
    text_source: TextSource,
    transport: Transport | None,
) -> PlanOutcome:
    try:
        return file, plan_file(file, settings, collection_names, text_source, transport), None
    except Exception as error:  # reported per file; one file never stops the others
        return file, None, f"{type(error).__name__}: {error}"
    finally:
        # A large document's parse tree is freed once it is read; without this the process
        # would keep the largest one's size for the rest of the run.
        release_free_heap()


def _worker_started() -> bool:
    return True


def _planned_here(outcome: PlanOutcome) -> Future:
    done: Future = Future()
    done.set_result(outcome)
    return done


def _in_order(futures: Iterable[Future], window: int) -> Iterator[PlanOutcome]:
    """The futures' results in order, with at most `window` submitted and not yet yielded."""
    pending: deque[Future] = deque()
    for future in futures:
        pending.append(future)
        while pending and (pending[0].done() or len(pending) >= window):
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def plan_files(
    files: Iterable[tuple[SourceFile, list[str]]],
    settings: RagSettings,
    text_source: TextSource,
    workers: int,
    transport: Transport | None = None,
) -> Iterator[PlanOutcome]:
    """Plan many files on `workers` processes when there is more than one (loading PDFs and
    office documents is CPU-bound); at most two files per process are in flight, so memory
    stays bounded however many files there are. `transport` (a picklable function) sends the
    requests of an HTTP extraction engine. Outcomes come in the files' order, except that
    files `unstructured` partitions come after the others.

    The processes fork from a server that first imports this module (the loaders and
    splitters, about a second). Until one of them is ready, the files read as plain text are
    planned in this process, so the first units reach the embedding at once; no other file is,
    because a parser's tree or `unstructured`'s libraries would stay in this process's memory
    for the whole run. The files `unstructured` partitions are set aside and planned together
    by one process of their own once the others are done (or once POSTPONED_FILES or
    POSTPONED_TEXT of them wait), after the workers have exited: its libraries (about 220
    MiB) are loaded once, and never beside the workers' memory."""
    files = iter(files)
    if workers <= 1:
        for file, collection_names in files:
            yield _plan_or_error(file, settings, collection_names, text_source, transport)
        return
    # forkserver: forking a process that runs threads (Dagster's, the writer's) could copy a
    # held lock into the child; the fork server is single-threaded and preloads this module.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    while True:
        set_aside = _SetAside()
        with ProcessPoolExecutor(workers, mp_context=context) as readers:
            started = readers.submit(_worker_started)
            submitted = _submitted(
                files, readers, started, set_aside, settings, text_source, transport
            )
            yield from _in_order(submitted, 2 * workers)
        if set_aside.arguments:
            with ProcessPoolExecutor(1, mp_context=context) as partitioner:
                yield from _in_order(
                    (partitioner.submit(_plan_or_error, *a) for a in set_aside.arguments), 2
                )
        if not set_aside.full:
            return  # the files ran out, not the room to set them aside


@dataclass
class _SetAside:
    """Files `unstructured` partitions (the arguments to plan each), waiting for the others."""

    arguments: list[tuple] = field(default_factory=list)
    text: int = 0

    @property
    def full(self) -> bool:
        return len(self.arguments) >= POSTPONED_FILES or self.text >= POSTPONED_TEXT


def _submitted(
    files: Iterator[tuple[SourceFile, list[str]]],
    readers: ProcessPoolExecutor,
    started: Future,
    set_aside: _SetAside,
    settings: RagSettings,
    text_source: TextSource,
    transport: Transport | None,
) -> Iterator[Future]:
    """Each file's plan on its way, until the files run out or `set_aside` is full: planned
    here while `started` is not done and the file is plain text, set aside when
    `unstructured` partitions it, sent to `readers` otherwise."""
    for file, collection_names in files:
        arguments = (file, settings, collection_names, text_source, transport)
        weight = reading_weight(file.filename, file.content_type, settings)
        if weight is LoaderWeight.PARTITION:
            set_aside.arguments.append(arguments)
            set_aside.text += len(file.stored_content or "")
            if set_aside.full:
                return
        elif weight is LoaderWeight.TEXT and not started.done():
            yield _planned_here(_plan_or_error(*arguments))
        else:
            yield readers.submit(_plan_or_error, *arguments)


def planning_workers(
    text_source: TextSource, file_count: int, configured: int, cpu_count: int | None
) -> int:
    """How many processes plan a run's files: `configured`, or one per CPU when 0; one for
    stored text or few files. Splitting stored text is cheaper than shipping its chunks
    between processes (measured: 200 files, 2.1 s in one process, 2.7 s on two); parsing
    uploads again is what pays."""
    if text_source is TextSource.STORED or file_count < PARALLEL_FROM_FILES:
        return 1
    return configured or cpu_count or 1
