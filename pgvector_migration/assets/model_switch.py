"""A model switch in Dagster: `model_switch_shadow` builds (or brings up to date) the new
model's table beside the live one, its blocking checks judge it, and `model_switch_cutover`
puts it in place only when every check passed.

The checks are the cutover's gate: every collection at least as complete as in the live table,
no chunk stored twice, every vector of the declared dimension, and Open WebUI's own search on
the shadow recalling what exact search finds. A failing check stops the run before the
cutover, and the live table is not touched. The cutover itself is the CLI's (`switch --cutover`):
`model_switch_cutover.cut_over`, with a delta pass first and again whenever Open WebUI changed
its data before the swap took its lock.

The checks and the cutover read what the switch declared (model, engine, dimension, thresholds)
from `model_switch_shadow`'s materialization in their own run, so the run config names them
once, on `model_switch_shadow`.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from pgvector_migration.assets.common import markdown_table
from pgvector_migration.assets.model_switch_build import build_pass, shadow_resource_config
from pgvector_migration.model_switch_cutover import (
    DEFAULT_ATTEMPTS,
    SwitchRefused,
    cut_over,
    live_problems,
    settings_lines,
    shadow_store,
    shadow_view,
)
from pgvector_migration.pipeline.retrieval_quality import (
    DEFAULT_MIN_RECALL,
    DEFAULT_MIN_SELF_RETRIEVAL,
    DEFAULT_SAMPLES,
    Thresholds,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.search_verification import (
    figures,
    knowledge_collections,
    query_embedder,
    verify_search,
)
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.names import DOCUMENT_CHUNK
from pgvector_migration.store.table_swap import SwapRefused, previous_table
from pgvector_migration.switch_openwebui_settings import SettingsNotWritten, write_change

SHADOW_KEY = AssetKey("model_switch_shadow")
GROUP = "model_switch"


class ModelSwitchConfig(Config):
    model: str = Field(
        description="The new embedding model, as RAG_EMBEDDING_MODEL will name it (for "
        "azure_openai: the deployment name)."
    )
    engine: str | None = Field(
        default=None,
        description="The new embedding engine ('' local, openai, ollama, azure_openai). "
        "Empty: Open WebUI's current one.",
    )
    dimension: int | None = Field(
        default=None,
        description="The new model's vector dimension. Empty: the existing shadow's, else the "
        "model's own (one probe request).",
    )
    build: bool = Field(
        default=True,
        description="Run a pass of the shadow build first (the whole build the first time, "
        "then only what changed). Off: judge the shadow as it is.",
    )
    min_recall: float = Field(
        default=DEFAULT_MIN_RECALL,
        description="recall@10 of the shadow's index search against exact search that every "
        "knowledge base must reach before the cutover.",
    )
    min_self_retrieval: float = Field(
        default=DEFAULT_MIN_SELF_RETRIEVAL,
        description="Share of sampled chunks found in the top 10 of their own text.",
    )
    samples: int = Field(
        default=DEFAULT_SAMPLES, description="Chunks of each knowledge base used as queries."
    )
    cutover_attempts: int = Field(
        default=DEFAULT_ATTEMPTS,
        description="Delta passes the cutover makes while Open WebUI keeps changing its data "
        "before the swap; then it refuses, naming what changed.",
    )
    write_openwebui_settings: bool = Field(
        default=False,
        description="After the swap, write Open WebUI's embedding engine and model to its "
        "config table (the values replaced are recorded with the switch, so `pgvector-migrate "
        "switch --rollback --write-openwebui-settings` puts them back). Off: the cutover's "
        "metadata lists the settings to change.",
    )


def switch_embeddings(
    embeddings: EmbeddingResource, openwebui: OpenWebUIResource, model: str, engine: str | None
) -> tuple[EmbeddingResource, RagSettings]:
    """The embedding resource overridden to the new model (and engine), with its settings."""
    fields = embeddings.model_dump(exclude_unset=True)
    fields["model"] = model
    if engine is not None:
        fields["engine"] = engine
    switched = EmbeddingResource(**fields)
    return switched, switched.effective_settings(openwebui.rag_settings())


@asset(
    group_name=GROUP,
    description="document_chunk_shadow: the new model's table beside the live one, built (or "
    "brought up to date) by the ordinary jobs aimed at it, while Open WebUI keeps searching "
    "document_chunk. Its blocking checks gate model_switch_cutover.",
)
def model_switch_shadow(
    context: AssetExecutionContext,
    config: ModelSwitchConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    switched, settings = switch_embeddings(embeddings, openwebui, config.model, config.engine)
    try:
        shadow = shadow_store(vector_store, switched, settings, config.dimension)
    except SwitchRefused as refusal:
        raise Failure(description=str(refusal)) from None
    try:
        failed = []
        if config.build:
            resources = shadow_resource_config(shadow, config.engine, config.model)
            failed = build_pass(context, openwebui, resources)
        table = shadow.describe_table()
        kinds = shadow.rows_by_kind() if table.exists else {}
    finally:
        shadow.close()
    return MaterializeResult(
        metadata={
            "table": MetadataValue.text(shadow.table_name),
            "model": MetadataValue.text(settings.embedding_model),
            "engine": MetadataValue.text(settings.embedding_engine or ""),
            "engine_asked": MetadataValue.json(config.engine),
            "declared_dimension": MetadataValue.int(shadow.resolved_vector_length()),
            "column_dimension": MetadataValue.int(table.dimension or 0),
            "rows": MetadataValue.int(sum(kinds.values())),
            "by_kind": markdown_table(
                [{"kind": kind, "rows": rows} for kind, rows in sorted(kinds.items())],
                ["kind", "rows"],
            ),
            "build_runs_failed": MetadataValue.json(failed),
            "min_recall": MetadataValue.float(config.min_recall),
            "min_self_retrieval": MetadataValue.float(config.min_self_retrieval),
            "samples": MetadataValue.int(config.samples),
            "cutover_attempts": MetadataValue.int(config.cutover_attempts),
            "write_openwebui_settings": MetadataValue.bool(config.write_openwebui_settings),
        }
    )


def declared(context, run_only: bool) -> dict[str, object] | None:
    """What `model_switch_shadow` declared in its latest materialization (None: never
    materialized, or, with `run_only`, not in this run)."""
    event = context.instance.get_latest_materialization_event(SHADOW_KEY)
    if event is None or (run_only and event.run_id != context.run.run_id):
        return None
    metadata = event.asset_materialization.metadata
    return {name: value.value for name, value in metadata.items()}


def _not_built() -> AssetCheckResult:
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.ERROR,
        metadata={"reason": MetadataValue.text("model_switch_shadow was not materialized")},
    )


@asset_check(
    asset=model_switch_shadow,
    blocking=True,
    description="Every collection of the shadow is at least as complete as in the live table: "
    "no unit left unwritten, no file failed in the shadow build only.",
)
def shadow_is_complete(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    if declared(context, run_only=False) is None:
        return _not_built()
    shadow = shadow_view(vector_store)
    try:
        problems = live_problems(vector_store, shadow, None)
    finally:
        shadow.close()
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "problems": MetadataValue.int(len(problems)),
            "details": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )


@asset_check(
    asset=model_switch_shadow,
    blocking=True,
    description="No chunk of the shadow is stored twice (as no_duplicate_chunks judges it).",
)
def shadow_has_no_duplicate_chunks(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    if declared(context, run_only=False) is None:
        return _not_built()
    shadow = shadow_view(vector_store)
    try:
        duplicates = shadow.duplicate_chunks(None)
    finally:
        shadow.close()
    rows = [
        {"collection": c, "file_id": f, "copies": n, "rows": p, "rows_written": e}
        for c, f, n, p, e in duplicates
    ]
    return AssetCheckResult(
        passed=not duplicates,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "duplicate_groups": MetadataValue.int(len(duplicates)),
            "duplicates": markdown_table(rows, ["collection", "file_id", "copies", "rows"]),
        },
    )


@asset_check(
    asset=model_switch_shadow,
    blocking=True,
    description="The shadow's column has the declared dimension, and every vector has it.",
)
def shadow_has_declared_dimension(
    context: AssetCheckExecutionContext, vector_store: PgVectorResource
) -> AssetCheckResult:
    switch = declared(context, run_only=False)
    if switch is None:
        return _not_built()
    shadow = shadow_view(vector_store)
    try:
        column, mismatches = shadow.dimension_mismatches(None)
    finally:
        shadow.close()
    wanted = switch["declared_dimension"]
    return AssetCheckResult(
        passed=column == wanted and not mismatches,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "declared_dimension": MetadataValue.int(wanted),
            "column_dimension": MetadataValue.int(column or 0),
            "rows_with_other_dimensions": MetadataValue.int(sum(n for _, _, n in mismatches)),
        },
    )


@asset_check(
    asset=model_switch_shadow,
    blocking=True,
    description="Open WebUI's own query on each knowledge base of the shadow, embedded with "
    "the new model: recall@10 against exact search and self-retrieval reach the thresholds "
    "(the retrieval_quality checks, on the shadow).",
)
def shadow_recall_meets_threshold(
    context: AssetCheckExecutionContext,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> AssetCheckResult:
    switch = declared(context, run_only=False)
    if switch is None:
        return _not_built()
    switched, settings = switch_embeddings(
        embeddings, openwebui, str(switch["model"]), switch["engine_asked"]
    )
    thresholds = Thresholds(switch["min_recall"], switch["min_self_retrieval"])
    shadow = shadow_view(vector_store)
    try:
        collections = knowledge_collections(shadow)
        report = verify_search(
            shadow,
            collections,
            query_embedder(settings, switched),
            thresholds,
            samples=switch["samples"],
            report=context.log.info,
        )
    finally:
        shadow.close()
    rows = [q.as_row() for q in report.before]
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "knowledge_bases": MetadataValue.int(len(collections)),
            "failing": MetadataValue.json([q.collection for q in report.before if not q.passed]),
            "summary": MetadataValue.json(figures(report.before)),
            "measurements": markdown_table(rows, list(rows[0]) if rows else ["collection"]),
        },
    )


@asset(
    group_name=GROUP,
    deps=[model_switch_shadow],
    description="The cutover: a last delta pass, then document_chunk_shadow becomes "
    "document_chunk (the live table is kept as document_chunk_previous for a rollback) in one "
    "transaction, passing again if Open WebUI changed its data meanwhile. Runs only after "
    "every blocking check of model_switch_shadow passed in the same run.",
)
def model_switch_cutover(
    context: AssetExecutionContext,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    switch = declared(context, run_only=True)
    if switch is None:
        raise Failure(
            description="model_switch_cutover runs only with model_switch_shadow in the same "
            "run (the switch_embedding_model job): its blocking checks gate the cutover"
        )
    engine, model = switch["engine_asked"], str(switch["model"])
    switched, settings = switch_embeddings(embeddings, openwebui, model, engine)
    dimension = int(switch["declared_dimension"])
    try:
        shadow = shadow_store(vector_store, switched, settings, dimension)
        resources = shadow_resource_config(shadow, engine, model)

        def delta_pass() -> list[str]:
            return build_pass(context, openwebui, resources)

        try:
            done = cut_over(
                vector_store,
                shadow,
                openwebui,
                settings,
                dimension,
                delta_pass,
                write_settings=bool(switch.get("write_openwebui_settings", False)),
                attempts=int(switch["cutover_attempts"]),
                report=context.log.warning,
            )
        finally:
            shadow.close()
    except (SwitchRefused, SwapRefused) as refusal:
        raise Failure(description=f"cutover refused: {refusal}") from None
    lines = settings_lines(done.before, done.after)
    settings_figures = {"open_webui_settings": MetadataValue.md("\n".join(lines))}
    if done.openwebui_change is not None:
        try:
            written = write_change(openwebui, done.openwebui_change, done.before, done.after, lines)
        except SettingsNotWritten as failure:
            # The swap committed: the step fails so the run says the settings are left to do.
            raise Failure(description=str(failure)) from None
        if written.warning:
            context.log.warning(written.warning)
        settings_figures = {
            "open_webui_settings_written": MetadataValue.text(written.summary),
            "open_webui_settings": MetadataValue.md("\n".join(written.still_to_do)),
        }
    return MaterializeResult(
        metadata={
            "swap_ms": MetadataValue.float(round(done.swap.seconds * 1000, 1)),
            "before": MetadataValue.text(done.before.describe()),
            "after": MetadataValue.text(done.after.describe()),
            "kept_as": MetadataValue.text(previous_table(DOCUMENT_CHUNK)),
            "delta_passes": MetadataValue.int(done.attempts),
            "changes_caught_before_the_swap": MetadataValue.json(list(done.changes_caught)),
            **settings_figures,
        }
    )


SWITCH_ASSETS = [model_switch_shadow, model_switch_cutover]
SWITCH_CHECKS = [
    shadow_is_complete,
    shadow_has_no_duplicate_chunks,
    shadow_has_declared_dimension,
    shadow_recall_meets_threshold,
]
