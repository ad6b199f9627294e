"""What a migration would do to each file, and what it would cost, assessed in this process with
reads only.

A dry run must work for a role that may only look (CONNECT, USAGE, SELECT), so it runs the
completeness assessment itself instead of the `assess_knowledge_base` job, whose assets record
the inventory and the report in our tables. The files a run would write are split here as the
run would split them, so the estimate counts the texts the embedding cache does not hold yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pgvector_migration.embedding.pacing import MAX_IN_FLIGHT
from pgvector_migration.pipeline.completeness import UnitStatus
from pgvector_migration.pipeline.estimate import Estimate, list_price
from pgvector_migration.pipeline.file_assessment import assess_file
from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.pipeline.planning import FilePlan, plan_file
from pgvector_migration.pipeline.records import (
    STANDALONE_PARTITION_KEY,
    SourceFile,
    file_collection_name,
)
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.resources.extraction_http import send_over_http
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.migration_state import MigrationState
from pgvector_migration.summary import FileOutcome, partition_outcomes

NEVER_SELECTED = (UnitStatus.UNSUPPORTED, UnitStatus.UNREADABLE)
SPEED_SAMPLE_TEXTS = 64


@dataclass
class TextTally:
    """The distinct texts a run would send to the engine: their cache keys with token counts
    (never the texts themselves, so a large deployment's dry run stays small), and a few texts
    to time a local model on."""

    count_tokens: Callable[[str], int]
    texts: int = 0
    files: set[str] = field(default_factory=set)
    collections: set[str] = field(default_factory=set)
    tokens_by_key: dict[bytes, int] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    written_units: set[tuple[str, str]] = field(default_factory=set)

    def add_file(self, file: SourceFile, collection_names: list[str], plan) -> None:
        """A file's selected collections; a file collection already counted for another
        knowledge base holding the same file is written once, so counted once."""
        self.files.add(file.id)
        for name in collection_names:
            if (name, file.id) in self.written_units:
                continue
            self.written_units.add((name, file.id))
            self.collections.add(name)
            for chunk in plan.chunks_by_collection[name]:
                self.texts += 1
                text = chunk.embedding_input
                key = text_key(text)
                if key not in self.tokens_by_key:
                    self.tokens_by_key[key] = self.count_tokens(text)
                    if len(self.sample) < SPEED_SAMPLE_TEXTS:
                        self.sample.append(text)


def assess_partition(
    key: str,
    file_ids: Sequence[str],
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    state: MigrationState,
    settings: RagSettings,
    overwrite: bool,
    text_source: TextSource,
    tally: TextTally | None = None,
    membership=None,
) -> list[FileOutcome]:
    """One outcome per file of the partition (limited to `file_ids` when given): what the
    migration's completeness report would select, and why a file would be skipped. With a
    `tally`, the selected units are split as the run would split them and counted into it.
    `membership`: one read of the source shared by every partition of the dry run."""
    partition_files, _ = openwebui.partition_file_ids(key, membership)
    if file_ids:
        partition_files = [file_id for file_id in partition_files if file_id in set(file_ids)]
    collection_names = [file_collection_name(file_id) for file_id in partition_files]
    if partition_files and key != STANDALONE_PARTITION_KEY:
        collection_names.append(key)
    present = vector_store.present_rows(collection_names)
    records = state.written_records(collection_names)
    rows = []
    fetch = "missing-content" if text_source is TextSource.STORED else "always"
    for file in openwebui.iter_files(partition_files, fetch, membership):
        names = file.collection_names(key)
        selected_names = []
        plans: dict[str, FilePlan] = {}
        for _, name, assessment in assess_file(
            file, names, present, records, settings, text_source, send_over_http, plans
        ):
            selected = assessment.status.needs_work or (
                overwrite and assessment.status not in NEVER_SELECTED
            )
            if selected:
                selected_names.append(name)
            rows.append(
                {
                    "file_id": file.id,
                    "filename": file.filename,
                    "collection_name": name,
                    "status": str(assessment.status),
                    "reason": assessment.reason,
                    "selected": selected,
                    "written": False,
                }
            )
        if tally is not None and selected_names:
            # The assessment's own plan (all of the file's collections) when it made one.
            plan = plans.get(file.id)
            if plan is None:
                try:
                    plan = plan_file(file, settings, selected_names, text_source, send_over_http)
                except Exception:  # the run would fail this file: nothing of it is embedded
                    continue
            tally.add_file(file, selected_names, plan)
    return partition_outcomes(rows, [], dry_run=True)


def cached_text_keys(vector_store: PgVectorResource, model_key: str, keys: list[bytes]) -> set:
    """Which texts the embedding cache already holds for this model; none when no run has made
    the cache yet (looked up without creating it)."""
    with vector_store.connect() as connection:
        exists = connection.execute(
            "SELECT to_regclass(%s)", (f"{vector_store.state_schema()}.embedding_cache",)
        ).fetchone()[0]
    if exists is None:
        return set()
    return vector_store.state().cached_keys(model_key, keys)


def assess_run(
    keys: dict[str, list[str]],
    args,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings,
    probe,
    summary,
) -> Estimate:
    """Every partition's outcomes into `summary`, and the run's estimate: work, tokens, cost at
    `--price-per-million` or a known list price, and time at the provider's budget or the local
    model's measured speed."""
    from pgvector_migration.embedding.model_key import model_key_of_settings
    from pgvector_migration.embedding.probe import measure_local_speed
    from pgvector_migration.embedding.tokens import LABEL, cl100k_token_counter

    state = vector_store.state()
    settings = embeddings.effective_settings(openwebui.rag_settings())
    tally = TextTally(cl100k_token_counter())
    membership = openwebui.knowledge_membership()
    for key, file_ids in keys.items():
        summary.add(
            assess_partition(
                key,
                file_ids,
                openwebui,
                vector_store,
                state,
                settings,
                args.overwrite,
                args.text_source,
                tally,
                membership,
            )
        )
    distinct = list(tally.tokens_by_key)
    cached = (
        set()
        if embeddings.reembed
        else cached_text_keys(vector_store, model_key_of_settings(settings), distinct)
    )
    tokens = sum(tally.tokens_by_key[key] for key in distinct if key not in cached)
    texts_to_embed = len(distinct) - len(cached)
    speed = probe.speed
    dispatcher = embeddings.dispatcher(settings)
    if not dispatcher.is_api:
        speed = measure_local_speed(dispatcher, tally.sample if texts_to_embed else [])
    price, price_source = list_price(settings.embedding_engine, settings.embedding_model)
    if args.price_per_million is not None:
        price, price_source = args.price_per_million, "--price-per-million"
    return Estimate(
        files=len(tally.files),
        units=len(tally.written_units),
        collections=len(tally.collections),
        texts=tally.texts,
        texts_cached=tally.texts - texts_to_embed,
        tokens=tokens,
        tokenizer=LABEL,
        engine=settings.embedding_engine,
        model=settings.embedding_model,
        price_per_million=price,
        price_source=price_source,
        speed=speed,
        texts_per_request=max(1, max(embeddings.max_batch_size, settings.embedding_batch_size)),
        # Unset, the dispatcher derives its in-flight limit from latency and budget, up to
        # MAX_IN_FLIGHT: the estimate takes that ceiling (the budget bounds the time anyway).
        requests_in_flight=max(1, embeddings.max_in_flight or MAX_IN_FLIGHT),
    )


def setup_lines(openwebui: OpenWebUIResource, vector_store: PgVectorResource, settings, probe):
    """What the dry run checked, one line each, for the person deciding to run it."""
    from pgvector_migration.store.urls import display_url

    table = vector_store.describe_table()
    uploads = openwebui.resolved_upload_dir()
    target = display_url(vector_store.resolved_url())
    if table.exists:
        column = f"document_chunk.vector is {table.vector_type}"
    else:
        column = (
            "no document_chunk yet: the run creates it with "
            f"{vector_store.resolved_vector_length()} dimensions"
        )
    engine = settings.embedding_engine or "local sentence-transformers"
    return [
        "setup checked (reads only, one probe request at most):",
        f"  source: {openwebui.display_url()}",
        f"  uploads: {uploads}"
        + ("" if uploads.is_dir() else " is missing: files fall back to their stored text"),
        f"  target: {target}; {column}",
        f"  engine: {engine}, model {settings.embedding_model}: "
        f"{probe.dimension}-dimensional vectors, matching the target",
    ]
