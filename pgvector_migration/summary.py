"""The end-of-run summary: one outcome per file, merged over partitions, short to read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgvector_migration.pipeline.text_source import fallback_of
from pgvector_migration.redaction import redact_url

PROCESSED = "processed"
WOULD_PROCESS = "would process"
SKIPPED_COMPLETE = "skipped (complete)"
SKIPPED_UNSUPPORTED = "skipped (unsupported)"
FAILED = "failed"

# When a file appears in several partitions, the outcome that says most wins.
PRECEDENCE = [FAILED, PROCESSED, WOULD_PROCESS, SKIPPED_UNSUPPORTED, SKIPPED_COMPLETE]


# Lines PostgreSQL adds after its primary message; a reason shows the primary one.
_POSTGRES_SECTIONS = re.compile(r"^(DETAIL|HINT|CONTEXT|QUERY|LINE \d+):")


def error_reason(message: str) -> str:
    """The line of an error message a person can act on. A PostgreSQL error reads as its
    primary message, with its DETAIL line (never CONTEXT or HINT, which only say where it
    happened); any other error as its last line."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    sections = [i for i, line in enumerate(lines) if _POSTGRES_SECTIONS.match(line)]
    if not sections:
        return lines[-1]
    primary = " ".join(line.strip() for line in lines[: sections[0]])
    detail = next((line for line in lines if line.startswith("DETAIL:")), None)
    return f"{primary} ({detail.removeprefix('DETAIL:').strip()})" if detail else primary


@dataclass(frozen=True)
class FileOutcome:
    file_id: str
    filename: str
    outcome: str
    reason: str = ""


def partition_outcomes(
    completeness_rows: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    dry_run: bool,
) -> list[FileOutcome]:
    """One outcome per file of a partition, from its completeness rows and recorded failures."""
    failed = {row["item_id"]: row for row in failures}
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for row in completeness_rows:
        by_file.setdefault(row["file_id"], []).append(row)
    outcomes = []
    for file_id, rows in by_file.items():
        filename = rows[0]["filename"]
        statuses = {row["status"] for row in rows}
        reason = next((row["reason"] for row in rows if row["reason"]), "")
        note = next((n for row in rows if (n := fallback_of(row["reason"]))), "")
        if file_id in failed:
            outcomes.append(FileOutcome(file_id, filename, FAILED, failed[file_id]["error"]))
        elif "unreadable" in statuses:
            outcomes.append(FileOutcome(file_id, filename, FAILED, reason))
        elif "unsupported" in statuses:
            outcomes.append(FileOutcome(file_id, filename, SKIPPED_UNSUPPORTED, reason))
        elif dry_run and any(row["selected"] for row in rows):
            outcomes.append(FileOutcome(file_id, filename, WOULD_PROCESS, note))
        elif any(row["selected"] and not row["written"] for row in rows):
            unwritten = [
                row["collection_name"] for row in rows if row["selected"] and not row["written"]
            ]
            outcomes.append(
                FileOutcome(
                    file_id,
                    filename,
                    FAILED,
                    f"not written to {', '.join(unwritten)}: "
                    "the run stopped first (see run errors)",
                )
            )
        elif any(row["selected"] for row in rows):
            outcomes.append(FileOutcome(file_id, filename, PROCESSED, note))
        else:
            outcomes.append(FileOutcome(file_id, filename, SKIPPED_COMPLETE, note))
    return outcomes


@dataclass
class KindSummary:
    """The outcome for the knowledge-bases or the memory collections."""

    units: int = 0
    selected: int = 0
    written: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    rows_pruned: int = 0

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], failures: Sequence[Mapping[str, Any]]
    ) -> KindSummary:
        return cls(
            units=metadata["units"],
            selected=metadata["units_selected"],
            written=metadata["collections_written"],
            failed=[{"id": f["item_id"], "error": f["error"]} for f in failures],
            rows_pruned=metadata["rows_pruned"],
        )


KIND_LABELS = {"knowledge-bases": "knowledge-base rows", "memories": "memory collections"}


@dataclass
class TransplantSummary:
    """Vectors reused from an old vector store, over every partition of a run."""

    stores: set[str] = field(default_factory=set)
    vectors_transplanted: int = 0
    samples_compared: int = 0
    min_similarity: float | None = None
    chunks_other_model: int = 0
    chunks_wrong_dimension: int = 0

    def add(self, metadata: dict[str, Any]) -> None:
        self.stores.add(metadata["store"])
        self.vectors_transplanted += metadata.get("vectors_transplanted", 0)
        self.chunks_other_model += metadata.get("chunks_other_model", 0)
        self.chunks_wrong_dimension += metadata.get("chunks_wrong_dimension", 0)
        samples = metadata.get("samples_compared", 0)
        if samples:
            self.samples_compared += samples
            lowest = metadata["min_sample_similarity"]
            if self.min_similarity is None or lowest < self.min_similarity:
                self.min_similarity = lowest

    def as_json(self) -> dict[str, Any]:
        return {
            "stores": sorted(self.stores),
            "vectors_transplanted": self.vectors_transplanted,
            "samples_compared": self.samples_compared,
            "min_sample_similarity": self.min_similarity,
            "chunks_other_model": self.chunks_other_model,
            "chunks_wrong_dimension": self.chunks_wrong_dimension,
        }

    def text(self, chunks_transplanted: int) -> str:
        similarity = (
            f", lowest cosine similarity {self.min_similarity:.5f}"
            if self.min_similarity is not None
            else ""
        )
        return (
            f"chunks written with transplanted vectors: {chunks_transplanted} "
            f"({self.vectors_transplanted} vectors copied from {', '.join(sorted(self.stores))}; "
            f"{self.samples_compared} samples re-embedded and compared{similarity}; "
            f"not used: {self.chunks_other_model} of another model, "
            f"{self.chunks_wrong_dimension} of another dimension)"
        )


@dataclass
class RunSummary:
    """What a migration did, for the terminal and `--summary-json`."""

    outcomes: dict[str, FileOutcome] = field(default_factory=dict)
    chunks_written: int = 0
    texts_embedded: int = 0
    texts_reused: int = 0
    texts_transplanted: int = 0
    tokens_spent: int = 0
    transplant: TransplantSummary | None = None
    run_errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    kinds: dict[str, KindSummary] = field(default_factory=dict)
    rows_pruned: int = 0
    prune_plan: list[str] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)

    def add_notes(self, notes: Iterable[Mapping[str, str]]) -> None:
        """Fold in what a partition's inventory found odd in the source (`{id, note}`)."""
        for note in notes:
            entry = {"id": note["id"], "note": note["note"]}
            if entry not in self.notes:
                self.notes.append(entry)

    def add_transplant(self, metadata: dict[str, Any]) -> None:
        """Fold in one partition's transplanted_embeddings metadata."""
        if self.transplant is None:
            self.transplant = TransplantSummary()
        self.transplant.add(metadata)

    def add(self, outcomes: Iterable[FileOutcome]) -> None:
        for outcome in outcomes:
            known = self.outcomes.get(outcome.file_id)
            if known is None or PRECEDENCE.index(outcome.outcome) < PRECEDENCE.index(known.outcome):
                self.outcomes[outcome.file_id] = outcome

    def _with(self, outcome: str) -> list[FileOutcome]:
        return [o for o in self.outcomes.values() if o.outcome == outcome]

    def _from_stored_text(self) -> list[FileOutcome]:
        """Files built from Open WebUI's stored text because their upload could not be read."""
        return [
            o
            for o in self.outcomes.values()
            if o.outcome in (PROCESSED, WOULD_PROCESS, SKIPPED_COMPLETE) and o.reason
        ]

    @property
    def has_failures(self) -> bool:
        return bool(
            self._with(FAILED)
            or self.run_errors
            or any(kind.failed for kind in self.kinds.values())
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "files_total": len(self.outcomes),
            "files_processed": len(self._with(PROCESSED)),
            "files_to_process": len(self._with(WOULD_PROCESS)),
            "files_skipped_complete": len(self._with(SKIPPED_COMPLETE)),
            "files_skipped_unsupported": len(self._with(SKIPPED_UNSUPPORTED)),
            "files_failed": [{"file_id": o.file_id, "error": o.reason} for o in self._with(FAILED)],
            "unsupported": [
                {"file_id": o.file_id, "reason": o.reason} for o in self._with(SKIPPED_UNSUPPORTED)
            ],
            "files_from_stored_text": [
                {"file_id": o.file_id, "reason": o.reason} for o in self._from_stored_text()
            ],
            "chunks_written": self.chunks_written,
            "texts_embedded": self.texts_embedded,
            "texts_reused": self.texts_reused,
            "texts_transplanted": self.texts_transplanted,
            "tokens_spent": self.tokens_spent,
            "transplant": self.transplant.as_json() if self.transplant else None,
            "rows_pruned": self.rows_pruned,
            **{
                kind.replace("-", "_"): {
                    "total": summary.units,
                    "written": summary.written,
                    "skipped_complete": summary.units - summary.selected,
                    "failed": summary.failed,
                    "rows_pruned": summary.rows_pruned,
                }
                for kind, summary in self.kinds.items()
            },
            "source_notes": self.notes,
            "run_errors": self.run_errors,
            "prune_plan": self.prune_plan,
        }

    def write_json(self, path: Path) -> None:
        """The summary as JSON, every URL in it redacted."""
        path.write_text(redact_url(json.dumps(self.as_json(), indent=2)) + "\n")

    def text(self) -> str:
        """The summary for the terminal, every URL in it redacted."""
        lines = [
            f"files total: {len(self.outcomes)}",
            f"files {'to process' if self.dry_run else 'processed'}: "
            f"{len(self._with(WOULD_PROCESS if self.dry_run else PROCESSED))}",
            f"files skipped (complete): {len(self._with(SKIPPED_COMPLETE))}",
            f"files skipped (unsupported): {len(self._with(SKIPPED_UNSUPPORTED))}",
            f"files failed: {len(self._with(FAILED))}",
            f"chunks written: {self.chunks_written}",
            f"texts embedded: {self.texts_embedded} "
            f"(reused from the cache or another collection: {self.texts_reused})",
            f"tokens spent: {self.tokens_spent}",
        ]
        if self._from_stored_text():
            lines.insert(
                5, f"files from stored text (upload not readable): {len(self._from_stored_text())}"
            )
        if self.transplant:
            lines.append(self.transplant.text(self.texts_transplanted))
        for kind, summary in self.kinds.items():
            lines.append(
                f"{KIND_LABELS[kind]}: {summary.units} total, {summary.written} written, "
                f"{summary.units - summary.selected} skipped (complete), "
                f"{len(summary.failed)} failed, {summary.rows_pruned} rows pruned"
            )
        if self.rows_pruned:
            lines.append(f"file rows pruned: {self.rows_pruned}")
        for outcome in sorted(self._with(FAILED), key=lambda o: o.filename):
            lines.append(f"  failed: {outcome.filename} ({outcome.file_id}): {outcome.reason}")
        for outcome in sorted(self._with(SKIPPED_UNSUPPORTED), key=lambda o: o.filename):
            lines.append(f"  unsupported: {outcome.filename} ({outcome.file_id}): {outcome.reason}")
        for outcome in sorted(self._from_stored_text(), key=lambda o: o.filename):
            lines.append(f"  {outcome.filename} ({outcome.file_id}): {outcome.reason}")
        for kind, summary in self.kinds.items():
            lines.extend(
                f"  failed: {KIND_LABELS[kind]} {f['id']}: {f['error']}" for f in summary.failed
            )
        lines.extend(f"  note: {note['id']}: {note['note']}" for note in self.notes)
        lines.extend(f"  run error: {error}" for error in self.run_errors)
        lines.extend(self.prune_plan)
        return redact_url("\n".join(lines))
