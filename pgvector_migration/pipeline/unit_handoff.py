"""Units handed from the loading thread to the embedding thread of one step, as each file's
chunks are staged, so embedding starts with the first file instead of after the last."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from pgvector_migration.pipeline.records import WriteUnit


class HandoffAbandoned(RuntimeError):
    """The embedding side stopped (its error is the step's): loading more is pointless."""


class UnitHandoff:
    """A bounded queue of files' units between one producer and one consumer.

    The producer blocks while `max_files` files, or files of `max_chunks` chunks in all, wait
    (a file larger than that is still taken when the queue is empty), so memory holds a few
    files' chunks, not the run's: loading slows to the pace of embedding, which the
    provider's budget sets anyway. `close` says no more files will come; `abandon` (either
    side, on an error) stops both: the producer's next `put` raises, the consumer takes
    nothing more. Files not taken stay staged for the next run."""

    def __init__(self, max_files: int, max_chunks: int | None = None) -> None:
        self._files: deque[list[WriteUnit]] = deque()
        self._max_files = max_files
        self._max_chunks = max_chunks
        self._chunks_waiting = 0
        self._closed = False
        self.abandoned = False
        self._changed = threading.Condition()
        self.handed_over: set[tuple[str, str]] = set()

    def put(self, units: list[WriteUnit]) -> None:
        """Hand over one file's units; waits while the queue is full."""
        with self._changed:
            while self._full() and not self.abandoned:
                self._changed.wait()
            if self.abandoned:
                raise HandoffAbandoned("the embedding side of the step stopped")
            self._files.append(units)
            self._chunks_waiting += _chunk_count(units)
            self._changed.notify_all()

    def _full(self) -> bool:
        if len(self._files) >= self._max_files:
            return True
        return (
            self._max_chunks is not None
            and bool(self._files)
            and self._chunks_waiting >= self._max_chunks
        )

    def close(self) -> None:
        """No more files will come."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def abandon(self) -> None:
        """Stop the handoff both ways; harmless once both sides are done."""
        with self._changed:
            self.abandoned = True
            self._changed.notify_all()

    def units(self) -> Iterator[WriteUnit]:
        """Every unit handed over, in order, until the handoff is closed and empty, or
        abandoned; each (collection, file) taken is remembered in `handed_over`."""
        while True:
            with self._changed:
                while not self._files and not self._closed and not self.abandoned:
                    self._changed.wait()
                if self.abandoned or not self._files:
                    return
                units = self._files.popleft()
                self._chunks_waiting -= _chunk_count(units)
                self._changed.notify_all()
            for unit in units:
                self.handed_over.add((unit.collection_name, unit.source_id))
                yield unit


def _chunk_count(units: list[WriteUnit]) -> int:
    return sum(len(unit.chunks) for unit in units)
