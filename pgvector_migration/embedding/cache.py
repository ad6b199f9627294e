"""The embedding cache's client: texts embedded wave after wave through the cache, with several
waves under way at once. The cache itself (its table and SQL) is the state store's; this module
only calls the lookup and store it is given.

A wave's requests are sent while earlier waves are still in flight, so the provider never
waits for this process between waves: the next wave is looked up and sent while the previous
one's last answers arrive. Each distinct text costs one embedding, ever: it is looked up in the
cache, and a text an earlier wave still under way has asked for is not asked for again. New
vectors are stored in the cache before they are used, and only vectors (never an error) are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pgvector_migration.embedding.dispatch import PendingEmbeddings, Result
from pgvector_migration.embedding.errors import EmbeddingError
from pgvector_migration.pipeline.ids import text_key


class CachedVectors(Protocol):
    """What a cache lookup returns (the state store's `CacheHits`): vectors by text hash, and
    which of them were transplanted from an old vector store."""

    @property
    def vectors(self) -> Mapping[bytes, np.ndarray]: ...

    @property
    def transplanted(self) -> Set[bytes]: ...


@dataclass
class EmbeddingStats:
    """What embedding cost: texts asked for, texts reused (from the cache, or a duplicate in the
    same wave, e.g. a knowledge chunk equal to its file chunk), of those the ones whose cached
    vector was transplanted from an old vector store, and texts sent to the engine."""

    texts: int = 0
    reused: int = 0
    transplanted: int = 0
    embedded: int = 0


@dataclass
class WaveUnderWay:
    """One wave's texts on their way: cached vectors, the texts it asked for, and the texts an
    earlier wave under way asked for."""

    keys: list[bytes]
    found: dict[bytes, Result]
    asked: list[bytes]
    pending: PendingEmbeddings | None
    borrowed: dict[bytes, WaveUnderWay]
    fresh: dict[bytes, Result] = field(default_factory=dict)

    @property
    def texts_in_flight(self) -> int:
        return 0 if self.pending is None or self.pending.done() else len(self.asked)


class CachedEmbedding:
    """Starts and finishes waves, in order, against one engine and one cache."""

    def __init__(
        self,
        submit: Callable[[list[str]], PendingEmbeddings],
        lookup: Callable[[list[bytes]], CachedVectors],
        store: Callable[[dict[bytes, np.ndarray]], None],
        stats: EmbeddingStats,
    ) -> None:
        self._submit = submit
        self._lookup = lookup
        self._store = store
        self._stats = stats
        self._under_way: dict[bytes, WaveUnderWay] = {}

    def start(self, texts: Sequence[str]) -> WaveUnderWay:
        """Look the texts up and send the ones neither the cache nor an earlier wave still
        under way has."""
        keys = [text_key(text) for text in texts]
        hits = self._lookup(sorted(set(keys)))
        found, transplanted = hits.vectors, hits.transplanted
        missing: dict[bytes, str] = {}
        borrowed: dict[bytes, WaveUnderWay] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in missing or key in borrowed:
                continue
            if key in self._under_way:
                borrowed[key] = self._under_way[key]
            else:
                missing[key] = text
        pending = self._submit(list(missing.values())) if missing else None
        wave = WaveUnderWay(keys, dict(found), list(missing), pending, borrowed)
        for key in missing:
            self._under_way[key] = wave
        self._stats.texts += len(keys)
        self._stats.embedded += len(missing)
        self._stats.reused += len(keys) - len(missing)
        self._stats.transplanted += sum(1 for key in keys if key in transplanted)
        return wave

    def finish(self, wave: WaveUnderWay) -> list[Result]:
        """For each text of the wave, in order, its vector or the error it got; waves are
        finished in the order they were started."""
        if wave.pending is not None:
            wave.fresh = dict(zip(wave.asked, wave.pending.result(), strict=True))
            vectors = {k: v for k, v in wave.fresh.items() if not isinstance(v, EmbeddingError)}
            if vectors:
                self._store(vectors)
            for key in wave.asked:
                if self._under_way.get(key) is wave:
                    del self._under_way[key]
        found = wave.found
        found.update(wave.fresh)
        for key, earlier in wave.borrowed.items():
            found[key] = earlier.fresh[key]
        results = [found[key] for key in wave.keys]
        # A finished wave keeps only its fresh vectors, for a later wave that borrows them:
        # holding on to the waves it borrowed from made every wave since the first reachable
        # from the newest, so a run's vectors stayed in memory to its end (1.1 GiB at 143k
        # chunks, growing with the run).
        wave.found, wave.borrowed = {}, {}
        return results
