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


def test_a_planning_process_imports_no_model_library_and_leaves_them_importable():
    """The loader workers and the CLI import the splitters and partition office files;
    langchain_text_splitters' package would bring sentence-transformers, torch and spaCy into
    each of them (410 MiB, 6.6 s), and spaCy's thinc torch (180 MiB). They stay out, and
    import as usual afterwards (the office loaders need spaCy, a local engine
    sentence-transformers)."""
    import subprocess
    import sys
    from pathlib import Path

    workbook = Path(__file__).parent / "golden" / "documents" / "aesop_fables.xlsx"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import pgvector_migration.pipeline.planning\n"
        "from pgvector_migration.pipeline.office_loaders import partition_documents\n"
        f"documents = partition_documents(Path({str(workbook)!r}), 'xlsx')\n"
        "assert documents[0].text.strip(), documents\n"
        "heavy = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import torch\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from langchain_text_splitters.character import RecursiveCharacterTextSplitter\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ok"
