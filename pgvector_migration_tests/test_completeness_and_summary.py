"""Unit tests for classifying (file, collection) units and for the end-of-run summary."""

from __future__ import annotations

import json

import pytest

from pgvector_migration.pipeline.completeness import (
    NO_ROWS,
    PresentRows,
    UnitStatus,
    WrittenRecord,
    assess,
    model_from_embedding_config,
    models_of,
)
from pgvector_migration.settings import resolve_rag_settings
from pgvector_migration.summary import (
    FAILED,
    PROCESSED,
    SKIPPED_COMPLETE,
    SKIPPED_UNSUPPORTED,
    WOULD_PROCESS,
    FileOutcome,
    RunSummary,
    partition_outcomes,
)

HASH = "a" * 64
OTHER_HASH = "b" * 64
MODEL = "model-now"
OLD_MODEL = "model-before"
SETTINGS = resolve_rag_settings({}, {}).with_overrides(embedding_model=MODEL)
FINGERPRINT = SETTINGS.splitting_fingerprint()
OLD_MODEL_FINGERPRINT = SETTINGS.with_overrides(embedding_model=OLD_MODEL).splitting_fingerprint()
OTHER_SPLIT_FINGERPRINT = SETTINGS.with_overrides(chunk_size=500).splitting_fingerprint()


class PlannedCount:
    """A planned-count callback that records whether it was asked."""

    def __init__(self, value: int):
        self.value = value
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.value


def rows(count: int, hashes=(HASH,), models=(MODEL,)) -> PresentRows:
    return PresentRows(count, frozenset(hashes), frozenset(models))


def record(content_hash=HASH, fingerprint=FINGERPRINT, model=MODEL, count=5) -> WrittenRecord:
    return WrittenRecord(content_hash, fingerprint, model, count)


class Identity:
    """A source-identity callback that records whether it was asked (asking may mean reading
    the upload)."""

    def __init__(self, content_hash: str = HASH, fingerprint: str = FINGERPRINT):
        self.value = (content_hash, fingerprint)
        self.calls = 0

    def __call__(self) -> tuple[str, str]:
        self.calls += 1
        return self.value


def run_assess(present, written, planned=None, identity=None):
    planned = planned or PlannedCount(5)
    identity = identity or Identity()
    return assess(present, written, identity, MODEL, planned), planned


# --- assess -------------------------------------------------------------------------------


def test_a_fresh_unit_needs_neither_its_source_read_nor_planned():
    identity = Identity()
    assessment, planned = run_assess(NO_ROWS, None, identity=identity)
    assert assessment.status is UnitStatus.MISSING
    assert identity.calls == 0 and planned.calls == 0


def test_missing_without_rows_or_record():
    assessment, planned = run_assess(NO_ROWS, None)
    assert assessment.status is UnitStatus.MISSING
    assert assessment.expected_chunks is None
    assert assessment.present_chunks == 0
    assert assessment.status.needs_work


def test_missing_with_current_record_but_no_rows_expects_recorded_count():
    assessment, planned = run_assess(NO_ROWS, record(count=7))
    assert assessment.status is UnitStatus.MISSING
    assert assessment.expected_chunks == 7
    assert planned.calls == 0


def test_complete_via_record():
    assessment, planned = run_assess(rows(5), record(count=5))
    assert assessment.status is UnitStatus.COMPLETE
    assert assessment.expected_chunks == 5
    assert assessment.present_chunks == 5
    assert assessment.reason == ""
    assert not assessment.status.needs_work
    assert planned.calls == 0


def test_rows_of_another_model_are_stale_even_with_a_current_record():
    assessment, planned = run_assess(rows(5, models=(OLD_MODEL,)), record(count=5))
    assert assessment.status is UnitStatus.STALE
    assert OLD_MODEL in assessment.reason and MODEL in assessment.reason
    assert planned.calls == 0


def test_partial_via_record():
    assessment, planned = run_assess(rows(3), record(count=5))
    assert assessment.status is UnitStatus.PARTIAL
    assert assessment.expected_chunks == 5
    assert assessment.present_chunks == 3
    assert assessment.reason == "3 of 5 chunks present"
    assert planned.calls == 0


def test_stale_when_content_hash_changed():
    assessment, planned = run_assess(rows(5), record(content_hash=OTHER_HASH))
    assert assessment.status is UnitStatus.STALE
    assert assessment.expected_chunks is None
    assert assessment.present_chunks == 5
    assert "content changed" in assessment.reason
    assert planned.calls == 0


def test_changed_content_without_rows_is_missing():
    assessment, _ = run_assess(NO_ROWS, record(content_hash=OTHER_HASH))
    assert assessment.status is UnitStatus.MISSING
    assert "content changed" in assessment.reason


def test_stale_when_model_changed_names_both_models():
    written = record(fingerprint=OLD_MODEL_FINGERPRINT, model=OLD_MODEL)
    assessment, planned = run_assess(rows(5), written)
    assert assessment.status is UnitStatus.STALE
    assert OLD_MODEL in assessment.reason
    assert MODEL in assessment.reason
    assert assessment.reason == f"written with model {OLD_MODEL}, now {MODEL}"
    assert planned.calls == 0


def test_stale_when_splitter_settings_changed():
    assessment, planned = run_assess(rows(5), record(fingerprint=OTHER_SPLIT_FINGERPRINT))
    assert assessment.status is UnitStatus.STALE
    assert "settings changed" in assessment.reason
    assert planned.calls == 0


def test_foreign_rows_with_another_model_are_stale():
    assessment, planned = run_assess(rows(5, models=(OLD_MODEL,)), None)
    assert assessment.status is UnitStatus.STALE
    assert OLD_MODEL in assessment.reason
    assert MODEL in assessment.reason
    assert planned.calls == 0


def test_foreign_rows_mixing_models_are_stale():
    assessment, _ = run_assess(rows(5, models=(MODEL, None)), None)
    assert assessment.status is UnitStatus.STALE


def test_foreign_rows_from_different_content_are_stale():
    assessment, planned = run_assess(rows(5, hashes=(HASH, OTHER_HASH)), None)
    assert assessment.status is UnitStatus.STALE
    assert "different content" in assessment.reason
    assert planned.calls == 0


def test_matching_foreign_rows_complete_when_planned_count_matches():
    assessment, planned = run_assess(rows(5), None, PlannedCount(5))
    assert assessment.status is UnitStatus.COMPLETE
    assert assessment.expected_chunks == 5
    assert planned.calls == 1


def test_matching_foreign_rows_partial_when_planned_count_differs():
    assessment, planned = run_assess(rows(4), None, PlannedCount(6))
    assert assessment.status is UnitStatus.PARTIAL
    assert assessment.expected_chunks == 6
    assert assessment.present_chunks == 4
    assert assessment.reason == "4 of 6 chunks present"
    assert planned.calls == 1


def test_needs_work_statuses():
    assert {s for s in UnitStatus if s.needs_work} == {
        UnitStatus.PARTIAL,
        UnitStatus.STALE,
        UnitStatus.MISSING,
    }


# --- embedding_config parsing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "model"),
    [
        (str({"engine": "", "model": "m"}), "m"),
        ("{'engine': 'openai', 'model': 'text-embedding-3-small'}", "text-embedding-3-small"),
        (json.dumps({"engine": "openai", "model": "j"}), "j"),
        ('{"engine": "openai", "model": "j2", "dims": null, "ok": true}', "j2"),
        ("{'engine': ''}", None),
        ("['not', 'a', 'dict']", None),
        ("not parseable {", None),
        ("{[]: 1}", None),
        ("", None),
        (None, None),
    ],
)
def test_model_from_embedding_config(stored, model):
    assert model_from_embedding_config(stored) == model


def test_models_of_collects_distinct_models():
    assert models_of(
        [str({"engine": "", "model": "a"}), json.dumps({"model": "a"}), None, "{'model': 'b'}"]
    ) == frozenset({"a", "b", None})


# --- partition_outcomes -------------------------------------------------------------------


def row(file_id, status="complete", selected=False, written=False, collection="kb", reason=""):
    return {
        "file_id": file_id,
        "filename": f"{file_id}.txt",
        "collection_name": collection,
        "status": status,
        "selected": selected,
        "written": written,
        "reason": reason,
    }


def by_id(outcomes):
    return {o.file_id: o for o in outcomes}


def test_partition_outcomes_covers_every_branch():
    completeness = [
        row("done", "complete"),
        row("done", "complete", collection="file-done"),
        row("new", "missing", selected=True, written=True),
        row("new", "complete", collection="file-new"),
        row("boom", "missing", selected=True),
        row("img", "unsupported", reason="image/png is not supported"),
        row("bad", "unreadable", reason="cannot read"),
        row("stopped", "partial", selected=True, written=False, collection="kb"),
        row("stopped", "missing", selected=True, written=True, collection="file-stopped"),
    ]
    failures = [{"item_id": "boom", "error": "embedding server said no"}]
    outcomes = by_id(partition_outcomes(completeness, failures, dry_run=False))

    assert outcomes["done"].outcome == SKIPPED_COMPLETE
    assert outcomes["new"].outcome == PROCESSED
    assert outcomes["boom"] == FileOutcome("boom", "boom.txt", FAILED, "embedding server said no")
    assert outcomes["img"].outcome == SKIPPED_UNSUPPORTED
    assert outcomes["img"].reason == "image/png is not supported"
    assert outcomes["bad"].outcome == FAILED
    assert outcomes["bad"].reason == "cannot read"
    assert outcomes["stopped"].outcome == FAILED
    assert "not written to kb" in outcomes["stopped"].reason
    assert "file-stopped" not in outcomes["stopped"].reason
    assert len(outcomes) == 6


def test_partition_outcomes_dry_run_reports_would_process():
    completeness = [row("new", "missing", selected=True), row("done", "complete")]
    outcomes = by_id(partition_outcomes(completeness, [], dry_run=True))
    assert outcomes["new"].outcome == WOULD_PROCESS
    assert outcomes["done"].outcome == SKIPPED_COMPLETE


def test_recorded_failure_beats_unsupported_status():
    completeness = [row("x", "unsupported", reason="no OCR")]
    outcomes = partition_outcomes(completeness, [{"item_id": "x", "error": "e"}], dry_run=False)
    assert outcomes == [FileOutcome("x", "x.txt", FAILED, "e")]


# --- RunSummary ---------------------------------------------------------------------------


def outcome(file_id, kind, reason=""):
    return FileOutcome(file_id, f"{file_id}.txt", kind, reason)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (SKIPPED_COMPLETE, PROCESSED, PROCESSED),
        (PROCESSED, SKIPPED_COMPLETE, PROCESSED),
        (PROCESSED, FAILED, FAILED),
        (FAILED, PROCESSED, FAILED),
        (SKIPPED_COMPLETE, SKIPPED_UNSUPPORTED, SKIPPED_UNSUPPORTED),
        (WOULD_PROCESS, SKIPPED_COMPLETE, WOULD_PROCESS),
        (SKIPPED_UNSUPPORTED, WOULD_PROCESS, WOULD_PROCESS),
    ],
)
def test_summary_keeps_the_outcome_that_says_most(first, second, winner):
    summary = RunSummary()
    summary.add([outcome("f", first, "one")])
    summary.add([outcome("f", second, "two")])
    assert summary.outcomes["f"].outcome == winner
    assert len(summary.outcomes) == 1


def test_equal_precedence_keeps_the_first_reason():
    summary = RunSummary()
    summary.add([outcome("f", FAILED, "first error")])
    summary.add([outcome("f", FAILED, "second error")])
    assert summary.outcomes["f"].reason == "first error"


def make_summary(dry_run=False) -> RunSummary:
    summary = RunSummary(chunks_written=42, texts_embedded=30, texts_reused=12, dry_run=dry_run)
    summary.add(
        [
            outcome("p1", PROCESSED),
            outcome("p2", PROCESSED),
            outcome("c1", SKIPPED_COMPLETE),
            outcome("u1", SKIPPED_UNSUPPORTED, "image/png"),
            outcome("f1", FAILED, "boom"),
        ]
    )
    summary.add([outcome("p1", SKIPPED_COMPLETE), outcome("c1", SKIPPED_COMPLETE)])
    return summary


def test_as_json():
    data = make_summary().as_json()
    assert data["files_total"] == 5
    assert data["files_processed"] == 2
    assert data["files_to_process"] == 0
    assert data["files_skipped_complete"] == 1
    assert data["files_skipped_unsupported"] == 1
    assert data["files_failed"] == [{"file_id": "f1", "error": "boom"}]
    assert data["unsupported"] == [{"file_id": "u1", "reason": "image/png"}]
    assert data["chunks_written"] == 42
    assert data["texts_embedded"] == 30
    assert data["texts_reused"] == 12
    assert data["run_errors"] == []
    assert data["dry_run"] is False
    json.dumps(data)


def test_write_json_round_trips(tmp_path):
    summary = make_summary()
    path = tmp_path / "summary.json"
    summary.write_json(path)
    assert json.loads(path.read_text()) == summary.as_json()


def test_text_lines():
    lines = make_summary().text().splitlines()
    assert lines[:7] == [
        "files total: 5",
        "files processed: 2",
        "files skipped (complete): 1",
        "files skipped (unsupported): 1",
        "files failed: 1",
        "chunks written: 42",
        "texts embedded: 30 (reused from the cache or another collection: 12)",
    ]
    assert "  failed: f1.txt (f1): boom" in lines
    assert "  unsupported: u1.txt (u1): image/png" in lines


def test_text_in_dry_run_says_to_process():
    summary = RunSummary(dry_run=True)
    summary.add([outcome("a", WOULD_PROCESS), outcome("b", WOULD_PROCESS)])
    text = summary.text()
    assert "files to process: 2" in text.splitlines()
    assert "files processed" not in text
    assert summary.as_json()["files_to_process"] == 2


def test_has_failures():
    assert not RunSummary().has_failures
    assert make_summary().has_failures
    clean = RunSummary(run_errors=["database went away"])
    assert clean.has_failures
    assert "  run error: database went away" in clean.text().splitlines()
