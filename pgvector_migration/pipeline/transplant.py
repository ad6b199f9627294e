"""Reuse the vectors of an old vector store instead of paying to embed the same texts again.

An old store (Chroma today; Qdrant, Milvus or an older pgvector table later) holds, per
collection, chunk texts with their vectors and the `embedding_config` that says which model made
them. A stored vector is worth reusing only when it is the vector the migration would get: same
engine and model, same dimension, and a text the migration actually has to embed. The vectors
then go into the embedding cache keyed like any other, so the normal pipeline finds them and sends
only the rest to the engine; nothing downstream knows where a vector came from.

Trust is checked, not assumed: a few stored chunks per collection are embedded afresh and
compared, and one mismatch refuses the whole store for the partition before any vector of it is
cached.
"""

from __future__ import annotations

import ast
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.pipeline.records import FILE_COLLECTION_PREFIX, document_embedding_input

DEFAULT_SAMPLES_PER_COLLECTION = 3
DEFAULT_MIN_SIMILARITY = 0.99


@dataclass(frozen=True)
class StoredChunk:
    """One row of an old store, without its vector (read separately, only when it is used)."""

    id: str
    text: str
    metadata: Mapping[str, Any]


class StoredVectorSource(Protocol):
    """What the transplant needs from an old vector store, whatever its kind."""

    description: str

    def collection_names(self) -> set[str]: ...

    def chunks(self, collection: str) -> Iterator[StoredChunk]:
        """Every chunk of a collection, texts and metadata only, read in pages."""
        ...

    def vectors(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these chunk ids."""
        ...

    def close(self) -> None: ...


class TransplantRefused(Exception):
    """The store's vectors disagree with fresh embeddings; none of them may be used."""


@dataclass(frozen=True)
class TargetModel:
    """The model the migration embeds with, and the dimension of its vectors."""

    engine: str
    model: str
    dimension: int
    declared_model: str | None = None

    @property
    def label(self) -> str:
        return f"{self.engine or 'local'}: {self.model}"

    def made(self, stored: tuple[str, str] | None) -> bool:
        """Whether a chunk with this stored (engine, model) was made by the target model; a
        chunk without one counts only when the user declared the store's model."""
        if stored is None:
            return self.declared_model is not None and self.declared_model == self.model
        return stored == (self.engine, self.model)


@dataclass
class TransplantReport:
    """What one partition's transplant found and did."""

    store: str
    collections_read: int = 0
    chunks_read: int = 0
    chunks_other_model: int = 0
    chunks_wrong_dimension: int = 0
    chunks_not_needed: int = 0
    vectors_seeded: int = 0
    sampled: int = 0
    similarities: list[float] = field(default_factory=list)
    models_seen: Counter = field(default_factory=Counter)

    @property
    def min_similarity(self) -> float | None:
        return min(self.similarities) if self.similarities else None


def stored_model(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    """(engine, model) from a stored chunk's `embedding_config`.

    Open WebUI 0.12 stores it as `str()` of a dict (its vector clients stringify nested values),
    older versions as a JSON string; a store written by other tools may keep a real mapping.
    """
    config = metadata.get("embedding_config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            try:
                config = ast.literal_eval(config)
            except (ValueError, SyntaxError):
                return None
    if not isinstance(config, Mapping) or "model" not in config:
        return None
    return str(config.get("engine") or ""), str(config["model"])


@dataclass(frozen=True)
class Candidate:
    """A stored chunk whose vector may be transplanted."""

    chunk_id: str
    key: bytes
    text: str


def find_candidates(
    source: StoredVectorSource,
    collections: Iterable[str],
    needed: set[bytes],
    target: TargetModel,
    report: TransplantReport,
) -> dict[str, list[Candidate]]:
    """Per collection, the stored chunks made by the target model whose text the migration
    still has to embed; each text once across collections.

    File collections are read first: a knowledge collection repeats its files' chunks, and
    taking them from the small per-file collections keeps the large one's vector index
    unloaded."""
    available = source.collection_names()
    wanted = needed.copy()
    found: dict[str, list[Candidate]] = {}
    ordered = sorted(collections, key=lambda name: not name.startswith(FILE_COLLECTION_PREFIX))
    for collection in ordered:
        if collection not in available:
            continue
        report.collections_read += 1
        for chunk in source.chunks(collection):
            report.chunks_read += 1
            model = stored_model(chunk.metadata)
            report.models_seen[f"{model[0] or 'local'}: {model[1]}" if model else "(none)"] += 1
            if not target.made(model):
                report.chunks_other_model += 1
                continue
            text = document_embedding_input(chunk.text)
            key = text_key(text)
            if key not in wanted:
                report.chunks_not_needed += 1
                continue
            wanted.discard(key)
            found.setdefault(collection, []).append(Candidate(chunk.id, key, text))
    return found


def spread_sample(candidates: Sequence[Candidate], size: int) -> list[Candidate]:
    """`size` candidates spread evenly over the collection (first, last and between), so the
    sample is the same on every run."""
    if size <= 0 or not candidates:
        return []
    if size >= len(candidates):
        return list(candidates)
    step = (len(candidates) - 1) / max(size - 1, 1)
    return [candidates[round(i * step)] for i in range(size)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm else 0.0


def verify_samples(
    source: StoredVectorSource,
    candidates: Mapping[str, Sequence[Candidate]],
    target: TargetModel,
    samples_per_collection: int,
    min_similarity: float,
    embed: Callable[[list[str]], list[np.ndarray]],
    report: TransplantReport,
) -> dict[bytes, np.ndarray]:
    """Embed a sample of each collection's candidates afresh and compare with the stored
    vectors; returns the fresh vectors (real embeddings, worth caching).

    Raises TransplantRefused on the first sample below `min_similarity`, naming the collection,
    the chunk and both numbers."""
    samples: list[tuple[str, Candidate, np.ndarray]] = []
    for collection, chosen in candidates.items():
        picked = spread_sample(chosen, samples_per_collection)
        stored = source.vectors(collection, [c.chunk_id for c in picked]) if picked else {}
        for candidate in picked:
            vector = stored.get(candidate.chunk_id)
            if vector is not None and len(vector) == target.dimension:
                samples.append((collection, candidate, vector))
    if not samples:
        return {}
    fresh = embed([candidate.text for _, candidate, _ in samples])
    for (collection, candidate, vector), new in zip(samples, fresh, strict=True):
        similarity = cosine(np.asarray(vector, dtype=np.float64), np.asarray(new, np.float64))
        report.sampled += 1
        report.similarities.append(similarity)
        if not math.isfinite(similarity) or similarity < min_similarity:
            raise TransplantRefused(
                f"{source.description}: in collection {collection}, the stored vector of "
                f"chunk {candidate.chunk_id} has cosine similarity {similarity:.4f} with a "
                f"fresh embedding by {target.label}, below the threshold {min_similarity}. "
                "The store's vectors were not made the way this migration embeds (another "
                "model, dimensions or content prefix), so none of them is used. Check "
                "RAG_EMBEDDING_MODEL and RAG_EMBEDDING_CONTENT_PREFIX, or migrate without the "
                "old store to embed every chunk."
            )
    return {candidate.key: new for (_, candidate, _), new in zip(samples, fresh, strict=True)}


def transplanted_vectors(
    source: StoredVectorSource,
    candidates: Mapping[str, Sequence[Candidate]],
    target: TargetModel,
    report: TransplantReport,
    page_size: int = 500,
) -> Iterator[tuple[bytes, np.ndarray]]:
    """(text key, stored vector) for every candidate whose vector has the target dimension,
    read page by page so memory holds one page of vectors."""
    for collection, chosen in candidates.items():
        for start in range(0, len(chosen), page_size):
            page = chosen[start : start + page_size]
            stored = source.vectors(collection, [c.chunk_id for c in page])
            for candidate in page:
                vector = stored.get(candidate.chunk_id)
                if vector is None:
                    continue
                if len(vector) != target.dimension:
                    report.chunks_wrong_dimension += 1
                    continue
                yield candidate.key, np.asarray(vector, dtype=np.float32)
