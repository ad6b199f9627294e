"""retrieval_quality: does Open WebUI's search find what it should in this knowledge base?

Measured after the index is built, per knowledge partition, with the checks computed in the
same step (recall@k against exact search; chunks found by their own text). Tuning changes the
whole database, so it is an operator's decision: `pgvector-migrate verify --tune`.
"""

import base64
import os
import tempfile
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pgvector_migration.assets.common import effective_settings, markdown_table
from pgvector_migration.assets.embedding import embedded_collections
from pgvector_migration.assets.index import vector_index
from pgvector_migration.partitions import STANDALONE_PARTITION_KEY, knowledge_partitions
from pgvector_migration.pipeline.retrieval_quality import (
    DEFAULT_MIN_RECALL,
    DEFAULT_MIN_SELF_RETRIEVAL,
    DEFAULT_SAMPLES,
    Thresholds,
)
from pgvector_migration.resources.embeddings import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.search_verification import query_embedder, verify_search
from pgvector_migration.resources.vector_store import PgVectorResource

RECALL_CHECK = "recall_at_k_meets_threshold"
SELF_RETRIEVAL_CHECK = "chunks_find_themselves"


class RetrievalQualityConfig(Config):
    samples: int = Field(
        default=DEFAULT_SAMPLES,
        description="Chunks of the knowledge base used as queries (each whole and shortened).",
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


@asset(
    partitions_def=knowledge_partitions,
    group_name="verification",
    deps=[embedded_collections, vector_index],
    check_specs=[
        AssetCheckSpec(RECALL_CHECK, asset="retrieval_quality"),
        AssetCheckSpec(SELF_RETRIEVAL_CHECK, asset="retrieval_quality"),
    ],
    description="Open WebUI's own query (collection filter, cosine distance, LIMIT k) on this "
    "knowledge base, under the index and exactly: recall@k, self-retrieval, latency, and the "
    "pgvector settings that would bring recall up to the threshold.",
)
def retrieval_quality(
    context: AssetExecutionContext,
    config: RetrievalQualityConfig,
    openwebui: OpenWebUIResource,
    vector_store: PgVectorResource,
    embeddings: EmbeddingResource,
) -> MaterializeResult:
    key = context.partition_key
    thresholds = Thresholds(config.min_recall, config.min_self_retrieval)
    if key == STANDALONE_PARTITION_KEY:
        skipped = {"skipped": MetadataValue.text("files in no knowledge base: no collection")}
        return MaterializeResult(
            metadata=skipped,
            check_results=[
                AssetCheckResult(check_name=name, passed=True, metadata=skipped)
                for name in (RECALL_CHECK, SELF_RETRIEVAL_CHECK)
            ],
        )
    embed = query_embedder(effective_settings(openwebui, embeddings), embeddings)
    report = verify_search(
        vector_store, [key], embed, thresholds, samples=config.samples, report=context.log.info
    )
    quality = report.before[0]
    from pgvector_migration.retrieval_chart import write_recall_chart

    home = Path(os.environ.get("DAGSTER_HOME") or tempfile.gettempdir())
    chart = write_recall_chart(
        home / "retrieval_quality" / f"{key}.png",
        report.before,
        report.after,
        thresholds.min_recall,
        report.k,
        after_label="with proposed settings",
    )
    figures = {
        "recall_at_k": MetadataValue.float(round(quality.recall, 4)),
        "worst_query_recall": MetadataValue.float(round(quality.worst_recall, 4)),
        "self_retrieval": MetadataValue.float(round(quality.self_retrieval, 4)),
        "short_query_self_retrieval": MetadataValue.float(round(quality.short_self_retrieval, 4)),
        "median_query_ms": MetadataValue.float(round(quality.index_ms, 3)),
        "median_exact_query_ms": MetadataValue.float(round(quality.exact_ms, 3)),
    }
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
            **figures,
            "rows": MetadataValue.int(quality.rows),
            "k": MetadataValue.int(report.k),
            "index": MetadataValue.text(
                f"pgvector {report.index.pgvector_version}, {report.index.method or 'no index'}"
            ),
            "open_webui_session_settings": MetadataValue.json(report.open_webui_settings),
            "proposed_settings": MetadataValue.md(proposal),
            "measurements": markdown_table(rows, list(rows[0])),
            "chart": chart_markdown(chart),
            "chart_path": MetadataValue.path(str(chart)),
        },
        check_results=[
            AssetCheckResult(
                check_name=RECALL_CHECK,
                passed=quality.recall >= thresholds.min_recall,
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "recall_at_k": figures["recall_at_k"],
                    "min_recall": MetadataValue.float(thresholds.min_recall),
                    "proposed_settings": MetadataValue.md(proposal),
                },
            ),
            AssetCheckResult(
                check_name=SELF_RETRIEVAL_CHECK,
                passed=quality.self_retrieval >= thresholds.min_self_retrieval,
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "self_retrieval": figures["self_retrieval"],
                    "min_self_retrieval": MetadataValue.float(thresholds.min_self_retrieval),
                },
            ),
        ],
    )
