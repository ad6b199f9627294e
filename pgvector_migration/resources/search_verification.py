"""`verify`: measure search per knowledge base, propose settings, apply or undo them.

Before: Open WebUI's searches as they run today (its SET LOCAL iterative scan, and whatever
the database or role already sets). Candidates from `tuning_ladder` are tried cheapest first,
set locally, until every collection reaches the recall threshold. With `tune` the chosen
settings are set for the database (or a role) and everything is measured again over a new
connection, which is how Open WebUI's next sessions will see them.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from psycopg import sql

from pgvector_migration.pipeline.retrieval_quality import (
    DEFAULT_K,
    DEFAULT_SAMPLES,
    CollectionQuality,
    Thresholds,
    first_sufficient,
    tuning_ladder,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.search_probe import (
    EmbedQueries,
    OldStore,
    ProbeQuery,
    SearchProbe,
)
from pgvector_migration.resources.search_tuning import (
    SearchIndex,
    TuningScope,
    apply_tuning,
    describe_search_index,
    open_webui_session_settings,
    remove_tuning,
)
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import RagSettings
from pgvector_migration.store.names import DOCUMENT_CHUNK

log = logging.getLogger(__name__)
DEFAULT_THRESHOLDS = Thresholds()
DATABASE_SCOPE = TuningScope()
OTHER_PREFIXES = ("file-", "user-memory-", "web-search-", "knowledge-bases")


@dataclass
class VerifyReport:
    """Everything `verify` found and did, for the CLI, the summary JSON and the chart."""

    index: SearchIndex
    open_webui_settings: dict[str, str]
    k: int
    thresholds: Thresholds
    before: list[CollectionQuality]
    proposal: dict[str, str] = field(default_factory=dict)
    proposal_sufficient: bool = True
    after: list[CollectionQuality] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    applied: bool = False
    table: str = DOCUMENT_CHUNK

    @property
    def passed(self) -> bool:
        final = self.after if self.applied else self.before
        return all(q.passed for q in final)

    def as_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "pgvector_version": self.index.pgvector_version,
            "index_method": self.index.method,
            "ivfflat_lists": self.index.lists,
            "open_webui_session_settings": self.open_webui_settings,
            "k": self.k,
            "min_recall": self.thresholds.min_recall,
            "min_self_retrieval": self.thresholds.min_self_retrieval,
            "before": [q.as_row() for q in self.before],
            "before_summary": figures(self.before),
            "proposed_settings": self.proposal,
            "proposal_reaches_threshold": self.proposal_sufficient,
            "applied": self.applied,
            "statements": self.statements,
            "after": [q.as_row() for q in self.after],
            "after_summary": figures(self.after),
            "passed": self.passed,
        }


def figures(qualities: Sequence[CollectionQuality]) -> dict[str, float | int]:
    """Headline numbers over collections: worst and mean recall, median query latency."""
    if not qualities:
        return {}
    return {
        "collections": len(qualities),
        "failing": sum(1 for q in qualities if not q.passed),
        "min_recall": round(min(q.recall for q in qualities), 4),
        "mean_recall": round(statistics.fmean(q.recall for q in qualities), 4),
        "median_index_ms": round(statistics.median(q.index_ms for q in qualities), 3),
        "median_exact_ms": round(statistics.median(q.exact_ms for q in qualities), 3),
    }


def knowledge_collections(vector_store: PgVectorResource) -> list[str]:
    """The knowledge collections of the resource's chunk table (document_chunk, or a model
    switch's shadow): not file, memory or web-search ones."""
    with vector_store.connect() as connection:
        names = [
            row[0]
            for row in connection.execute(
                sql.SQL("SELECT DISTINCT collection_name FROM {} ORDER BY 1").format(
                    sql.Identifier(vector_store.table_name)
                )
            ).fetchall()
        ]
    return [name for name in names if not name.startswith(OTHER_PREFIXES)]


def verify_search(
    vector_store: PgVectorResource,
    collections: Sequence[str],
    embed: EmbedQueries,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    k: int = DEFAULT_K,
    samples: int = DEFAULT_SAMPLES,
    tune: bool = False,
    scope: TuningScope = DATABASE_SCOPE,
    report: Callable[[str], None] = log.info,
    old_store: OldStore | None = None,
) -> VerifyReport:
    """Measure `collections`; propose settings when one falls short; with `tune` apply them
    and measure again. With `old_store` (the store the vectors were transplanted from), also
    the overlap of its top k with the table's, as Open WebUI searches it now."""
    # A session of its own: it searches with the database's settings as they are now, as a
    # new Open WebUI session would, not those a pooled session started with.
    with vector_store.connect(with_vectors=True, fresh=True) as connection:
        index = describe_search_index(connection, vector_store.table_name)
        session = open_webui_session_settings(index)
        probe = SearchProbe(vector_store, connection, k)
        prepared: dict[str, tuple[int, list[ProbeQuery]]] = {}
        for collection in collections:
            chosen = probe.sample(collection, samples)
            prepared[collection] = (
                probe.collection_rows(collection),
                probe.prepare_queries(collection, chosen, embed, session),
            )

        def measure_all(
            settings: dict[str, str], on: SearchProbe, old: OldStore | None = None
        ) -> list[CollectionQuality]:
            return [
                on.measure(name, rows, queries, settings, thresholds, old)
                for name, (rows, queries) in prepared.items()
            ]

        before = measure_all(session, probe, old_store)
        result = VerifyReport(index, session, k, thresholds, before, table=vector_store.table_name)
        if all(q.recall >= thresholds.min_recall for q in before) or not index.iterative_scans:
            return result
        ladder = tuning_ladder(index.method or "", index.lists)
        tried: list[list[CollectionQuality]] = []
        for candidate in ladder:
            # Open WebUI's SET LOCAL wins over a database setting, so it goes on top.
            tried.append(measure_all({**candidate, **session}, probe))
            report(f"tried {candidate}: worst recall {min(q.recall for q in tried[-1]):.3f}")
            if first_sufficient(ladder, tried, thresholds) is not None:
                break
        position = first_sufficient(ladder, tried, thresholds)
        result.proposal_sufficient = position is not None
        position = len(tried) - 1 if position is None else position
        result.proposal = ladder[position]
        result.after = tried[position]
    if tune:
        with vector_store.connect() as connection:
            result.statements = apply_tuning(connection, result.proposal, scope, report)
        result.applied = True
        with vector_store.connect(with_vectors=True, fresh=True) as fresh:
            # A role's settings reach only that role's sessions: measure them locally then.
            local = {**result.proposal, **session} if scope.role else session
            result.after = measure_all(local, SearchProbe(vector_store, fresh, k))
    return result


def untune_search(
    vector_store: PgVectorResource,
    scope: TuningScope = DATABASE_SCOPE,
    report: Callable[[str], None] = log.info,
) -> list[str]:
    """Undo `verify --tune` for the database or role; the statements run."""
    with vector_store.connect() as connection:
        return remove_tuning(connection, scope, report)


def query_embedder(settings: RagSettings, embeddings: EmbeddingResource) -> EmbedQueries:
    """Embed queries as Open WebUI does: the migration's model, with RAG_EMBEDDING_QUERY_PREFIX
    (Open WebUI reads it from the environment only) in place of the content prefix."""
    query_settings = replace(
        settings, embedding_content_prefix=os.environ.get("RAG_EMBEDDING_QUERY_PREFIX")
    )
    return embeddings.dispatcher(query_settings).embed
