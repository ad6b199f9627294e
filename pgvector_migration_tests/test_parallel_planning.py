"""Planning files on several processes gives the same chunks, in the same order, as one."""

from __future__ import annotations

from pgvector_migration.pipeline.planning import plan_files
from pgvector_migration.pipeline.records import SourceFile
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.sample_data import DOCUMENTS_DIR
from pgvector_migration.settings import resolve_rag_settings


def test_two_processes_plan_exactly_what_one_does():
    settings = resolve_rag_settings({}, {})
    names = ["constitution.pdf", "walden.html", "broken_report.pdf", "aesop_fables.csv"] * 3
    files = [
        (
            SourceFile(
                f"f{i}", "u", name, None, None, {}, {}, None, upload_path=DOCUMENTS_DIR / name
            ),
            [f"file-f{i}", "kb"],
        )
        for i, name in enumerate(names)
    ]
    one = list(plan_files(iter(files), settings, text_source=TextSource.UPLOAD_ONLY, workers=1))
    two = list(plan_files(iter(files), settings, text_source=TextSource.UPLOAD_ONLY, workers=2))
    assert [f.id for f, _, _ in two] == [f.id for f, _, _ in one]
    assert [p for _, p, _ in two] == [p for _, p, _ in one]
    errors = [error for _, _, error in two if error]
    assert len(errors) == 3 and all("PdfStreamError" in error for error in errors)
