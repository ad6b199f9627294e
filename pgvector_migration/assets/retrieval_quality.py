"""retrieval_quality: does Open WebUI's search find what it should in each knowledge base?

Measured after the index is built, for every knowledge partition of the run (one or a range):
the run's knowledge bases are searched over one connection, and the settings proposed are the
first that bring all of them up to the threshold. Each partition gets its own figures; the run's
table, proposal and chart go on every partition of the run. Tuning changes the whole database,
so it is an operator's decision: `pgvector-migrate verify --tune`.

The checks are not partitioned: Dagster evaluates a partitioned check without its partition in
a run over a range of partitions. They judge the latest materialization of every partition the
run covered (a check run on its own: of every partition ever measured).
"""

import base64
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from pgvector_migration.assets.common import (
    effective_settings,
    markdown_table,
    migration_backfill_policy,
)
from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.assets.index import vector_index
from pgvector_migration.partitions import STANDALONE_PARTITION_KEY, knowledge_partitions
from pgvector_migration.pipeline.retrieval_quality import (
    DEFAULT_MIN_RECALL,
    DEFAULT_MIN_SELF_RETRIEVAL,
    DEFAULT_SAMPLES,
    CollectionQuality,
    Thresholds,
    quality_verdicts,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.search_verification import query_embedder, verify_search
from pgvector_migration.resources.vector_store import PgVectorResource

ASSET_KEY = AssetKey("retrieval_quality")
NO_COLLECTION = "files in no knowledge base: no collection of their own"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class RetrievalQualityConfig(Config):
    samples: int = Field(
        default=DEFAULT_SAMPLES,
        description="Chunks of each knowledge base used as queries (each whole and shortened).",
    )
    min_recall: float = Field(
        default=DEFAULT_MIN_RECALL,
        description="recall@10 of the index search against exact search that must be reached.",
    )
    min_self_retrieval: float = Field(
        default=DEFAULT_MIN_SELF_RETRIEVAL,
        description="Share of sampled chunks (or their files) found in the top 10 of their own "
        "text.",
    )


def chart_markdown(path: Path) -> MetadataValue:
    """The chart inline, so the UI shows it without access to the file system."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return MetadataValue.md(f"![recall per knowledge base](data:image/png;base64,{encoded})")


def partition_metadata(
    quality: CollectionQuality, proposed: CollectionQuality | None, thresholds: Thresholds
) -> dict[str, MetadataValue]:
    """One knowledge base's figures, with the thresholds the checks hold them to."""
    figures = {
        "rows": MetadataValue.int(quality.rows),
        "queries": MetadataValue.int(quality.queries),
        "recall_at_k": MetadataValue.float(round(quality.recall, 4)),
        "worst_query_recall": MetadataValue.float(round(quality.worst_recall, 4)),
        "self_retrieval": MetadataValue.float(round(quality.self_retrieval, 4)),
        "short_query_self_retrieval": MetadataValue.float(round(quality.short_self_retrieval, 4)),
        "median_query_ms": MetadataValue.float(round(quality.index_ms, 3)),
        "median_exact_query_ms": MetadataValue.float(round(quality.exact_ms, 3)),
        "min_recall": MetadataValue.float(thresholds.min_recall),
        "min_self_retrieval": MetadataValue.float(thresholds.min_self_retrieval),
        "failures": MetadataValue.text("; ".join(quality.failures) or "none"),
    }
    if proposed is not None:
        figures["recall_at_k_with_proposal"] = MetadataValue.float(round(proposed.recall, 4))
        figures["median_query_ms_with_proposal"] = MetadataValue.float(round(proposed.index_ms, 3))
    return figures


@asset(
    partitions_def=knowledge_partitions,
    backfill_policy=migration_backfill_policy(),
    group_name="verification",
    deps=[embedded_collections, vector_index],
    description="Open WebUI's own query (collection filter, cosine distance, LIMIT k) on each "
    "knowledge base of the run, under the index and exactly: recall@k, self-retrieval, "
    "latency, and the pgvector settings that would bring recall up to the threshold.",
)
def retrieval_quality(
    context: AssetExecutionContext,
    config: RetrievalQualityConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    keys = context.partition_keys
    collections = [key for key in keys if key != STANDALONE_PARTITION_KEY]
    if STANDALONE_PARTITION_KEY in keys:
        context.add_asset_metadata(
            {"skipped": MetadataValue.text(NO_COLLECTION)}, partition_key=STANDALONE_PARTITION_KEY
        )
    if not collections:
        return MaterializeResult(metadata={"partitions_in_run": MetadataValue.int(len(keys))})
    thresholds = Thresholds(config.min_recall, config.min_self_retrieval)
    embed = query_embedder(effective_settings(openwebui, embeddings), embeddings)
    report = verify_search(
        vector_store,
        collections,
        embed,
        thresholds,
        samples=config.samples,
        report=context.log.info,
    )
    proposed = {q.collection: q for q in report.after}
    for quality in report.before:
        context.add_asset_metadata(
            partition_metadata(quality, proposed.get(quality.collection), thresholds),
            partition_key=quality.collection,
        )
    from pgvector_migration.retrieval_chart import write_recall_chart

    home = Path(os.environ.get("DAGSTER_HOME") or tempfile.gettempdir())
    chart = write_recall_chart(
        home / "retrieval_quality" / f"{context.run.run_id}.png",
        report.before,
        report.after,
        thresholds.min_recall,
        report.k,
        after_label="with proposed settings",
    )
    proposal = (
        f"`pgvector-migrate verify --tune` would set {report.proposal}"
        if report.proposal
        else "none needed"
    )
    rows = [q.as_row() for q in report.before] + [
        {**q.as_row(), "collection": f"{q.collection} (proposed settings)"} for q in report.after
    ]
    return MaterializeResult(
        metadata={
            "partitions_in_run": MetadataValue.int(len(keys)),
            "k": MetadataValue.int(report.k),
            "index": MetadataValue.text(
                f"pgvector {report.index.pgvector_version}, {report.index.method or 'no index'}"
            ),
            "open_webui_session_settings": MetadataValue.json(report.open_webui_settings),
            "proposed_settings": MetadataValue.md(proposal),
            "measurements": markdown_table(rows, list(rows[0])),
            "chart": chart_markdown(chart),
            "chart_path": MetadataValue.path(str(chart)),
        }
    )


def run_partition_keys(context: AssetCheckExecutionContext) -> list[str] | None:
    """The knowledge partitions the check's run covers, from the run's tags (one key, or a
    range in the order the partitions were added); None for a run without partitions. Read from
    the tags because the check's own step is not partitioned: in a run of the checks alone,
    Dagster refuses to give such a step the run's partition keys."""
    tags = context.run.tags
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    if RANGE_START_TAG not in tags:
        return None
    keys = context.instance.get_dynamic_partitions(knowledge_partitions.name)
    start, end = keys.index(tags[RANGE_START_TAG]), keys.index(tags[RANGE_END_TAG])
    return keys[start : end + 1]


def judged_partitions(context: AssetCheckExecutionContext) -> dict[str, dict | None]:
    """The latest retrieval_quality metadata of every partition the check's run covered (None:
    never measured); in a run without partitions, of every partition measured so far."""
    keys = run_partition_keys(context)
    if keys is None:
        keys = sorted(context.instance.get_materialized_partitions(ASSET_KEY))
    latest: dict[str, dict | None] = {}
    for key in keys:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=ASSET_KEY, asset_partitions=[key]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        latest[key] = (
            {name: value.value for name, value in materialization.metadata.items()}
            if materialization is not None
            else None
        )
    return latest


def judge(
    context: AssetCheckExecutionContext, figure: str, threshold: str, columns: Sequence[str]
) -> AssetCheckResult:
    """Pass when every judged partition reaches its threshold; a partition never measured
    fails (materialize retrieval_quality for it first), one without a collection passes."""
    judged = judged_partitions(context)
    rows, failing = quality_verdicts(judged, figure, threshold, columns)
    return AssetCheckResult(
        passed=bool(judged) and not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "partitions_judged": MetadataValue.int(len(judged)),
            "partitions_failing": MetadataValue.json(failing),
            "knowledge_bases": markdown_table(rows, ["partition", *columns, "verdict"]),
        },
    )


@asset_check(
    asset=retrieval_quality,
    description="Every knowledge base of the run reaches recall@k min_recall against exact "
    "search (each partition's figures name the settings that would reach it).",
)
def recall_at_k_meets_threshold(context: AssetCheckExecutionContext) -> AssetCheckResult:
    return judge(
        context,
        "recall_at_k",
        "min_recall",
        ["rows", "recall_at_k", "min_recall", "recall_at_k_with_proposal"],
    )


@asset_check(
    asset=retrieval_quality,
    description="In every knowledge base of the run, sampled chunks (or their files) are in "
    "the top k of their own text: the vectors answer to the model queries are embedded with.",
)
def chunks_find_themselves(context: AssetCheckExecutionContext) -> AssetCheckResult:
    return judge(
        context,
        "self_retrieval",
        "min_self_retrieval",
        ["rows", "self_retrieval", "min_self_retrieval"],
    )


RETRIEVAL_CHECKS = [recall_at_k_meets_threshold, chunks_find_themselves]
