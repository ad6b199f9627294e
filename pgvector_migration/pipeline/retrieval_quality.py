"""Whether search finds what it should after a migration: the arithmetic, without a database.

A migration can finish and still leave Open WebUI answering from nothing: vectors from the wrong
model, or a filtered ANN search that walks the index past a small knowledge base's rows. Each
collection is probed with its own chunks as queries (their whole text, and a shortened form
closer to a question) in Open WebUI's query shape, and judged by:

- recall@k of the index search against the exact search under the same collection filter;
- self-retrieval: the sampled chunk (or its file) among the top k of its own text;
- overlap with the old store's top k, when the vectors were transplanted from one.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_K = 10
DEFAULT_SAMPLES = 20
DEFAULT_MIN_RECALL = 0.95
DEFAULT_MIN_SELF_RETRIEVAL = 0.9
# About the length of a question someone types; enough words to carry the chunk's topic.
SHORT_QUERY_WORDS = 12


@dataclass(frozen=True)
class Thresholds:
    """What a collection must reach to pass; the checks and the cutover enforce these."""

    min_recall: float = DEFAULT_MIN_RECALL
    min_self_retrieval: float = DEFAULT_MIN_SELF_RETRIEVAL


@dataclass(frozen=True)
class SampledChunk:
    """A chunk used as a query: its id, its file and the texts it is queried with."""

    chunk_id: str
    file_id: str | None
    text: str

    @property
    def short_text(self) -> str:
        return shortened_query(self.text)


@dataclass(frozen=True)
class Hit:
    """One search result: the chunk, the file it came from and the md5 of its text (how rows
    of an old store, under other ids, are recognised)."""

    chunk_id: str
    file_id: str | None
    text_md5: str = ""


@dataclass(frozen=True)
class QueryMeasure:
    """One query's outcome: index search against exact search, and where the sample landed."""

    chunk_id: str
    short: bool
    recall: float
    self_retrieved: bool
    index_ms: float
    exact_ms: float
    old_store_overlap: float | None = None


@dataclass(frozen=True)
class CollectionQuality:
    """A collection's verdict figures, over all its sampled queries."""

    collection: str
    rows: int
    queries: int
    recall: float
    worst_recall: float
    self_retrieval: float
    short_self_retrieval: float
    index_ms: float
    exact_ms: float
    old_store_overlap: float | None = None
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_row(self) -> dict[str, object]:
        """One row of the per-knowledge-base table (UI, CLI, summary JSON)."""
        return {
            "collection": self.collection,
            "rows": self.rows,
            "queries": self.queries,
            "recall": round(self.recall, 4),
            "worst_recall": round(self.worst_recall, 4),
            "self_retrieval": round(self.self_retrieval, 4),
            "short_self_retrieval": round(self.short_self_retrieval, 4),
            "old_store_overlap": None
            if self.old_store_overlap is None
            else round(self.old_store_overlap, 4),
            "index_ms": round(self.index_ms, 3),
            "exact_ms": round(self.exact_ms, 3),
            "passed": self.passed,
            "failures": "; ".join(self.failures),
        }


def text_md5(text: str) -> str:
    """The md5 of a chunk text, as PostgreSQL's md5() computes it."""
    return hashlib.md5(text.encode()).hexdigest()


def shortened_query(text: str, words: int = SHORT_QUERY_WORDS) -> str:
    """The first words of a chunk, as a stand-in for a question about it."""
    return " ".join(text.split()[:words])


def recall_at_k(index_ids: Sequence[str], exact_ids: Sequence[str], k: int) -> float:
    """The share of the exact top k that the index search returned; an empty collection
    (no exact result) has nothing to miss."""
    truth = list(exact_ids)[:k]
    if not truth:
        return 1.0
    return len(set(index_ids[:k]) & set(truth)) / len(truth)


def self_retrieved(sample: SampledChunk, hits: Sequence[Hit], k: int) -> bool:
    """The sampled chunk, or another chunk of its file, among the top k."""
    top = list(hits)[:k]
    if any(hit.chunk_id == sample.chunk_id for hit in top):
        return True
    return sample.file_id is not None and any(hit.file_id == sample.file_id for hit in top)


def overlap(ours: Sequence[str], theirs: Sequence[str], k: int) -> float:
    """The share of the old store's top k that the new table's top k holds too."""
    reference = list(theirs)[:k]
    if not reference:
        return 1.0
    return len(set(ours[:k]) & set(reference)) / len(reference)


def summarize(
    collection: str, rows: int, measures: Sequence[QueryMeasure], thresholds: Thresholds
) -> CollectionQuality:
    """A collection's figures and, against the thresholds, the reasons it fails (if any); the
    old store's overlap is reported, not judged (the old store's own index is approximate)."""
    if not measures:
        return CollectionQuality(collection, rows, 0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, None)
    full = [m for m in measures if not m.short] or list(measures)
    short = [m for m in measures if m.short]
    recall = statistics.fmean(m.recall for m in measures)
    self_share = statistics.fmean(1.0 if m.self_retrieved else 0.0 for m in full)
    failures = []
    if recall < thresholds.min_recall:
        failures.append(
            f"recall@k {recall:.3f} below {thresholds.min_recall}: the index search misses "
            "neighbours the exact search finds (run `pgvector-migrate verify --tune`)"
        )
    if self_share < thresholds.min_self_retrieval:
        failures.append(
            f"self-retrieval {self_share:.3f} below {thresholds.min_self_retrieval}: chunks are "
            "not found by their own text (vectors of another model, or stale vectors?)"
        )
    overlaps = [m.old_store_overlap for m in measures if m.old_store_overlap is not None]
    return CollectionQuality(
        collection=collection,
        rows=rows,
        queries=len(measures),
        recall=recall,
        worst_recall=min(m.recall for m in measures),
        self_retrieval=self_share,
        short_self_retrieval=statistics.fmean(1.0 if m.self_retrieved else 0.0 for m in short)
        if short
        else 1.0,
        index_ms=statistics.median(m.index_ms for m in measures),
        exact_ms=statistics.median(m.exact_ms for m in measures),
        old_store_overlap=statistics.fmean(overlaps) if overlaps else None,
        failures=tuple(failures),
    )


def tuning_ladder(method: str, lists: int | None = None) -> list[dict[str, str]]:
    """Search settings to try, cheapest first, for an index `method` (pgvector >= 0.8).

    Iterative scans let a filtered search keep walking the index until it has k rows of the
    collection; a wider search (ef_search, probes) makes those rows the right ones. Open WebUI
    0.12.4 already sets the iterative scan per query (PGVECTOR_ITERATIVE_SCAN); setting it at
    database level too covers deployments that turned that off."""
    if method == "hnsw":
        return [
            {
                "hnsw.iterative_scan": "relaxed_order",
                "hnsw.ef_search": str(ef),
                "hnsw.max_scan_tuples": str(tuples),
            }
            for ef, tuples in ((100, 20000), (200, 40000), (400, 80000), (800, 160000))
        ]
    if method == "ivfflat":
        total = max(1, lists or 100)
        steps = sorted({max(2, round(total * share)) for share in (0.05, 0.1, 0.2, 0.4)})
        return [
            {"ivfflat.iterative_scan": "relaxed_order", "ivfflat.probes": str(min(p, total))}
            for p in steps
        ]
    return []


def first_sufficient(
    candidates: Sequence[dict[str, str]],
    qualities: Sequence[Sequence[CollectionQuality]],
    thresholds: Thresholds,
) -> int | None:
    """The index of the first candidate under which every collection reaches the recall
    threshold, or None when none does."""
    for position, measured in enumerate(qualities[: len(candidates)]):
        if all(q.recall >= thresholds.min_recall for q in measured):
            return position
    return None


def quality_verdicts(
    judged: Mapping[str, Mapping[str, Any] | None],
    figure: str,
    threshold: str,
    columns: Sequence[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per judged partition with its figures and verdict, and the partitions that
    fail: one never measured (None), or whose `figure` is below its `threshold`; a partition
    without a collection (`skipped`) is left out."""
    rows, failing = [], []
    for key, figures in judged.items():
        if figures is not None and "skipped" in figures:
            continue
        row = {"partition": key, **{c: (figures or {}).get(c) for c in columns}}
        if figures is None:
            row["verdict"] = "never measured: materialize retrieval_quality for it"
        else:
            row["verdict"] = "ok" if figures[figure] >= figures[threshold] else "below"
        if row["verdict"] != "ok":
            failing.append(key)
        rows.append(row)
    return rows, failing
