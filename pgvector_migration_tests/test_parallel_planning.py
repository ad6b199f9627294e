"""Planning files on several processes gives the same chunks as one, in the same order but for
the files `unstructured` partitions, which come last; and never more processes than asked."""

from __future__ import annotations

from pathlib import Path

from pgvector_migration.pipeline.planning import plan_files
from pgvector_migration.pipeline.records import SourceFile
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.sample_data import DOCUMENTS_DIR
from pgvector_migration.settings import resolve_rag_settings
from pgvector_migration_tests.fresh_interpreter import last_line_printed

GOLDEN = Path(__file__).parent / "golden" / "documents"


def planning_script(paths: list[Path]) -> str:
    """The start of a script for a fresh interpreter: `settings`, `plan_files`, `TextSource`
    and `files`, one to plan for each of `paths` (in its own file collection)."""
    return (
        "from pathlib import Path\n"
        "from pgvector_migration.pipeline.planning import plan_files\n"
        "from pgvector_migration.pipeline.records import SourceFile\n"
        "from pgvector_migration.pipeline.text_source import TextSource\n"
        "from pgvector_migration.settings import resolve_rag_settings\n"
        "settings = resolve_rag_settings({}, {})\n"
        f"paths = [Path(p) for p in {[str(p) for p in paths]!r}]\n"
        "files = [(SourceFile(f'f{i}', 'u', p.name, None, None, {}, {}, None, upload_path=p),\n"
        "          [f'file-f{i}']) for i, p in enumerate(paths)]\n"
    )


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
    each of them (410 MiB, 6.6 s), spaCy's thinc torch (180 MiB) and the splitters' base
    transformers (21 MiB). They stay out, and import as usual afterwards (the office loaders
    need spaCy, a local engine sentence-transformers)."""
    workbook = GOLDEN / "aesop_fables.xlsx"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import pgvector_migration.pipeline.planning\n"
        "from pgvector_migration.pipeline.office_loaders import partition_documents\n"
        f"documents = partition_documents(Path({str(workbook)!r}), 'xlsx')\n"
        "assert documents[0].text.strip(), documents\n"
        "kept_out = ('torch', 'sentence_transformers', 'transformers')\n"
        "heavy = [m for m in kept_out if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import torch\n"
        "from transformers.tokenization_utils_base import PreTrainedTokenizerBase\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from langchain_text_splitters.character import RecursiveCharacterTextSplitter\n"
        "print('ok')\n"
    )
    assert last_line_printed(script) == "ok"


def test_the_planning_process_reads_only_plain_text_itself():
    """While the workers start, the run's own process plans the files read as plain text and
    no other: a PDF's or a spreadsheet's reader (and `unstructured`'s spaCy, langdetect and
    word lists, ~220 MiB) would stay in its memory for the whole run. The plans are the same
    as one process makes; the files `unstructured` partitions come after the others."""
    paths = [
        GOLDEN / "gettysburg_and_inaugural.rst",
        DOCUMENTS_DIR / "federalist_10.txt",
        DOCUMENTS_DIR / "constitution.pdf",
        GOLDEN / "aesop_fables.xlsx",
        DOCUMENTS_DIR / "notes.py",
        GOLDEN / "aesop_fables.xml",
        DOCUMENTS_DIR / "alice_chapter_one.md",
    ] * 3
    script = (
        planning_script(paths) + "import sys\n"
        "two = list(plan_files(iter(files), settings, TextSource.UPLOAD_ONLY, workers=2))\n"
        "heavy = ('unstructured', 'spacy', 'langdetect', 'pypdf')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "one = list(plan_files(iter(files), settings, TextSource.UPLOAD_ONLY, workers=1))\n"
        "assert {f.id: p for f, p, _ in two} == {f.id: p for f, p, _ in one}\n"
        "partitioned = ('.rst', '.xlsx', '.xml')\n"
        "rest = [f.id for f, _, _ in one if not f.filename.endswith(partitioned)]\n"
        "last = [f.id for f, _, _ in one if f.filename.endswith(partitioned)]\n"
        "assert [f.id for f, _, _ in two] == rest + last\n"
        "errors = [e for _, _, e in two if e]\n"
        "assert not errors, errors\n"
        "print('ok')\n"
    )
    assert last_line_printed(script, timeout=600) == "ok"


def test_no_more_processes_plan_than_workers_and_one_of_them_holds_unstructured():
    """Two workers on a mix of partitioned, parsed and plain files: at no moment do more than
    two processes plan (the machine's cores, not one more for `unstructured`), spaCy, which
    `unstructured` loads, is in one of them only, and no other process plans beside it."""
    paths = [
        GOLDEN / "gettysburg_and_inaugural.rst",
        DOCUMENTS_DIR / "constitution.pdf",
        GOLDEN / "aesop_fables.xlsx",
        DOCUMENTS_DIR / "walden.html",
        GOLDEN / "aesop_fables.xml",
        DOCUMENTS_DIR / "federalist_10.txt",
    ] * 4
    script = (
        planning_script(paths) + "import psutil\n"
        "me = psutil.Process()\n"
        "def planners():\n"
        "    server = [c for c in me.children() if 'forkserver' in ' '.join(c.cmdline())]\n"
        "    return [w for s in server for w in s.children()]\n"
        "most, with_spacy, beside, errors = 0, set(), 0, []\n"
        "for _, plan, error in plan_files(iter(files), settings, TextSource.UPLOAD_ONLY, 2):\n"
        "    errors += [error] if error else []\n"
        "    workers = planners()\n"
        "    most = max(most, len(workers))\n"
        "    for w in workers:\n"
        "        if any('/spacy/' in m.path for m in w.memory_maps()):\n"
        "            with_spacy.add(w.pid)\n"
        "    if with_spacy & {w.pid for w in workers}:\n"
        "        beside = max(beside, len(workers) - 1)\n"
        "assert not errors, errors\n"
        "print(most, len(with_spacy), beside)\n"
    )
    assert last_line_printed(script, timeout=600) == "2 1 0"


def test_files_unstructured_partitions_wait_for_the_others_up_to_a_limit(monkeypatch):
    from pgvector_migration.pipeline import planning

    paths = [
        GOLDEN / "gettysburg_and_inaugural.rst",
        DOCUMENTS_DIR / "federalist_10.txt",
        GOLDEN / "aesop_fables.xlsx",
        DOCUMENTS_DIR / "constitution.pdf",
        GOLDEN / "aesop_fables.xml",
        DOCUMENTS_DIR / "notes.py",
    ]
    files = [
        (SourceFile(f"f{i}", "u", p.name, None, None, {}, {}, None, upload_path=p), [f"file-f{i}"])
        for i, p in enumerate(paths)
    ]
    monkeypatch.setattr(planning, "POSTPONED_FILES", 2)
    outcomes = list(plan_files(iter(files), resolve_rag_settings({}, {}), TextSource.UPLOAD, 2))
    # The .rst and .xlsx fill the limit: they are planned after the .txt before them and
    # before the files after them; the .xml waits for the end.
    assert [f.id for f, _, _ in outcomes] == ["f1", "f0", "f2", "f3", "f5", "f4"]
    assert all(plan is not None for _, plan, _ in outcomes), outcomes


def test_each_loader_has_the_weight_planning_routes_it_by():
    from pgvector_migration.pipeline.extraction_engines import reading_weight
    from pgvector_migration.pipeline.loaders import LoaderWeight

    default = resolve_rag_settings({}, {})
    tika = resolve_rag_settings({}, {"CONTENT_EXTRACTION_ENGINE": "tika"})
    expected = {
        ("notes.txt", "text/plain"): LoaderWeight.TEXT,
        ("README.md", None): LoaderWeight.TEXT,
        ("table.csv", "text/csv"): LoaderWeight.TEXT,
        ("photo.png", "image/png"): LoaderWeight.TEXT,  # refused: nothing is read
        ("paper.pdf", "application/pdf"): LoaderWeight.PARSER,
        ("page.html", "text/html"): LoaderWeight.PARSER,
        ("letter.docx", None): LoaderWeight.PARSER,
        ("guide.rst", None): LoaderWeight.PARTITION,
        ("sheet.xlsx", None): LoaderWeight.PARTITION,
        ("book", "application/epub+zip"): LoaderWeight.PARTITION,
        ("mail.msg", None): LoaderWeight.PARTITION,
    }
    for (name, content_type), weight in expected.items():
        assert reading_weight(name, content_type, default) is weight, name
    assert reading_weight("guide.rst", None, tika) is LoaderWeight.PARSER
    assert reading_weight("script.py", "text/x-python", tika) is LoaderWeight.TEXT
