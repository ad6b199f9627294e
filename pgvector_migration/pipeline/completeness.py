"""How complete one (file, collection) is in `document_chunk`, and why."""

from __future__ import annotations

import ast
import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass


class UnitStatus(enum.StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    STALE = "stale"
    MISSING = "missing"
    UNSUPPORTED = "unsupported"
    UNREADABLE = "unreadable"

    @property
    def needs_work(self) -> bool:
        """Whether a normal (not `--overwrite`) run rewrites this unit."""
        return self in (UnitStatus.PARTIAL, UnitStatus.STALE, UnitStatus.MISSING)


@dataclass(frozen=True)
class PresentRows:
    """What `document_chunk` holds for one (file, collection) now."""

    count: int
    content_hashes: frozenset[str | None]
    embedding_models: frozenset[str | None]


NO_ROWS = PresentRows(0, frozenset(), frozenset())


@dataclass(frozen=True)
class WrittenRecord:
    """What we wrote for one (file, collection) last time, from our own state table."""

    content_hash: str
    settings_fingerprint: str
    embedding_model: str
    chunk_count: int


@dataclass(frozen=True)
class Assessment:
    status: UnitStatus
    expected_chunks: int | None
    present_chunks: int
    reason: str


def model_from_embedding_config(stored: str | None) -> str | None:
    """The model named in a stored `embedding_config`, which Open WebUI keeps as a dict's
    Python `str()` (or, from other writers, as JSON)."""
    if not stored:
        return None
    try:
        parsed = ast.literal_eval(stored)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            parsed = json.loads(stored)
        except ValueError:
            return None
    return parsed.get("model") if isinstance(parsed, dict) else None


def models_of(embedding_configs: Iterable[str | None]) -> frozenset[str | None]:
    return frozenset(model_from_embedding_config(config) for config in embedding_configs)


SourceIdentity = Callable[[], tuple[str, str]]
"""The content hash and settings fingerprint of a unit's source now; called only when a
record must be checked, since knowing them may mean reading the upload."""


def _outdated_record(
    present_count: int,
    record: WrittenRecord | None,
    identity: SourceIdentity,
    embedding_model: str,
) -> Assessment | None:
    """The assessment of a unit whose record no longer matches the source or settings."""
    if record is None:
        return None
    content_hash, settings_fingerprint = identity()
    if record.content_hash == content_hash and record.settings_fingerprint == settings_fingerprint:
        return None
    if record.content_hash != content_hash:
        reason = "the source content changed since it was written"
    elif record.embedding_model != embedding_model:
        reason = f"written with model {record.embedding_model}, now {embedding_model}"
    else:
        reason = "splitter, embedding or text-source settings changed since it was written"
    status = UnitStatus.STALE if present_count else UnitStatus.MISSING
    return Assessment(status, None, present_count, reason)


def assess_recorded(
    present_count: int,
    record: WrittenRecord | None,
    content_hash: str,
    settings_fingerprint: str,
    embedding_model: str,
    expected_count: int,
) -> Assessment:
    """Classify a unit whose rows carry no model or content hash (knowledge-base and memory
    rows): only our own record can vouch for them, so rows without one are rewritten once."""
    outdated = _outdated_record(
        present_count, record, lambda: (content_hash, settings_fingerprint), embedding_model
    )
    if outdated:
        return outdated
    if present_count == 0:
        return Assessment(UnitStatus.MISSING, expected_count, 0, "no rows in document_chunk")
    if record is None:
        return Assessment(
            UnitStatus.STALE,
            expected_count,
            present_count,
            "rows not written by pgvector-migration: their model is unknown",
        )
    if present_count != expected_count:
        return Assessment(
            UnitStatus.PARTIAL,
            expected_count,
            present_count,
            f"{present_count} of {expected_count} rows present",
        )
    return Assessment(UnitStatus.COMPLETE, expected_count, present_count, "")


def assess(
    present: PresentRows,
    record: WrittenRecord | None,
    identity: SourceIdentity,
    embedding_model: str,
    planned_count: Callable[[], int],
) -> Assessment:
    """Classify one (file, collection).

    Rows of another embedding model are stale whoever wrote them. Our own record says how many
    chunks a complete write has. Rows we did not write (Open WebUI's own, or an older tool's)
    carry their content hash in metadata; when it matches, the count the pipeline would produce
    now decides between complete and partial.
    """
    outdated = _outdated_record(present.count, record, identity, embedding_model)
    if outdated:
        return outdated
    if present.count == 0:
        expected = record.chunk_count if record else None
        return Assessment(UnitStatus.MISSING, expected, 0, "no rows in document_chunk")
    foreign_models = present.embedding_models - {embedding_model}
    if foreign_models:
        names = ", ".join(sorted(str(m) for m in foreign_models))
        return Assessment(
            UnitStatus.STALE, None, present.count, f"embedded with {names}, now {embedding_model}"
        )
    if record is not None:
        if present.count == record.chunk_count:
            return Assessment(UnitStatus.COMPLETE, record.chunk_count, present.count, "")
        return Assessment(
            UnitStatus.PARTIAL,
            record.chunk_count,
            present.count,
            f"{present.count} of {record.chunk_count} chunks present",
        )
    if present.content_hashes != {identity()[0]}:
        return Assessment(
            UnitStatus.STALE, None, present.count, "rows were made from different content"
        )
    expected = planned_count()
    if expected == present.count:
        return Assessment(UnitStatus.COMPLETE, expected, present.count, "")
    return Assessment(
        UnitStatus.PARTIAL,
        expected,
        present.count,
        f"{present.count} of {expected} chunks present",
    )
