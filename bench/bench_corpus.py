"""The documents of the realistic benchmark deployment: ~1,800 real documents made offline.

Users upload what they have: manuals, web pages, READMEs, licences, source files, spreadsheets,
PDFs and Word files. Every text here is a public document this machine already holds (man pages,
Debian's HTML manuals and text docs, licence texts, package READMEs, Python's own sources,
scikit-learn's dataset descriptions and CSVs, Open WebUI's changelog); every binary format is
made by the real tool that makes such files in the wild (groff's gropdf, pdfTeX through pandoc,
pandoc's docx writer, LibreOffice), with the helpers of fidelity/build_corpus.py.

Selection is deterministic (sorted paths, duplicates by content dropped, an even stride over
each source), so the same machine gives the same corpus, and the recipe's hash changes when
this file does.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fidelity.build_corpus import SOURCE_DATE_EPOCH, libreoffice  # noqa: E402

OPENWEBUI_SITE = "lib/python3.11/site-packages"
# How many documents of each kind: about what one mid-sized team uploads over a year.
QUOTAS = {
    "man_txt": 1150,  # man pages as plain text (groff -Tutf8)
    "man_pdf": 70,  # man pages as PDF (groff gropdf)
    "man_docx": 40,  # man pages as Word files (pandoc)
    "doc_html": 230,  # Debian HTML manuals
    "doc_txt": 80,  # Debian text docs
    "licence_txt": 18,  # /usr/share/common-licenses
    "python_source": 150,  # Python's standard library sources
    "readme_md": 24,  # package READMEs and docs in the venvs
    "html_pdf": 12,  # HTML manuals exported to PDF by LibreOffice Writer
    "html_docx": 12,  # HTML manuals saved as Word files by LibreOffice Writer
    "rst_pdf": 6,  # scikit-learn dataset descriptions, pandoc + pdfTeX
    "rst": 16,  # scikit-learn dataset descriptions
    "csv": 6,  # scikit-learn's data tables
    "xlsx": 3,  # the same tables saved by LibreOffice Calc
    "changelog_md": 1,  # Open WebUI's whole changelog
}


@dataclass(frozen=True)
class Document:
    """One file to upload: its name in the corpus, where its text came from, what made it."""

    name: str
    source: str
    producer: str


def _distinct(paths: list[Path], min_bytes: int) -> list[Path]:
    """Paths sorted, at least `min_bytes` long, one per distinct content."""
    seen, kept = set(), []
    for path in sorted(paths):
        if not path.is_file() or path.stat().st_size < min_bytes:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept


def evenly(items: list, count: int) -> list:
    """`count` items spread evenly over `items` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def _run(command: list[str], stdin: bytes | None = None, timeout: float = 120) -> bytes | None:
    """A tool's stdout, or None when it fails (such a source is skipped, not fatal)."""
    environment = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "TZ": "UTC", "PATH": "/usr/bin:/bin"}
    try:
        result = subprocess.run(
            command, input=stdin, capture_output=True, env=environment, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    return result.stdout if result.returncode == 0 and result.stdout else None


def _safe_name(path: Path, suffix: str) -> str:
    stem = path.name.removesuffix(".gz")
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return f"{cleaned}{suffix}"


def build(out: Path, openwebui_venv: Path) -> list[Document]:
    """Write the corpus into `out` (emptied first); returns its documents."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    site = openwebui_venv / OPENWEBUI_SITE
    sklearn = site / "sklearn/datasets"
    documents: list[Document] = []
    names: set[str] = set()

    def keep(name: str, data: bytes, source: Path | str, producer: str) -> None:
        if name in names:
            name = f"{hashlib.sha256(str(source).encode()).hexdigest()[:6]}-{name}"
        names.add(name)
        (out / name).write_bytes(data)
        documents.append(Document(name, str(source), producer))

    # Man pages: text, PDF and docx from disjoint pages.
    pages = _distinct(list(Path("/usr/share/man").glob("man[1578]/*.gz")), 3000)
    wanted = QUOTAS["man_txt"] + QUOTAS["man_pdf"] + QUOTAS["man_docx"]
    chosen = evenly(pages, wanted + wanted // 5)  # spares for pages a tool cannot render
    as_pdf = set(evenly(chosen, QUOTAS["man_pdf"] * 6 // 5))
    as_docx = set(evenly([p for p in chosen if p not in as_pdf], QUOTAS["man_docx"] * 6 // 5))
    jobs = [("pdf" if p in as_pdf else "docx" if p in as_docx else "txt", p) for p in chosen]

    def render(job: tuple[str, Path]) -> tuple[str, Path, bytes | None]:
        kind, page = job
        source = gzip.decompress(page.read_bytes())
        if kind == "txt":
            return kind, page, _run(["groff", "-t", "-man", "-Tutf8", "-P-cbou"], source)
        if kind == "pdf":
            return kind, page, _run(["groff", "-t", "-man", "-Tpdf"], source)
        return kind, page, _run(["pandoc", "-f", "man", "-t", "docx"], source)

    with ThreadPoolExecutor(max_workers=2) as pool:
        rendered = list(pool.map(render, jobs))
    counts = {"txt": 0, "pdf": 0, "docx": 0}
    limits = {"txt": QUOTAS["man_txt"], "pdf": QUOTAS["man_pdf"], "docx": QUOTAS["man_docx"]}
    producers = {
        "txt": "groff -Tutf8 (man page as text)",
        "pdf": "groff gropdf (man page)",
        "docx": "pandoc docx writer (man page)",
    }
    for kind, page, data in rendered:
        if data is None or counts[kind] >= limits[kind]:
            continue
        counts[kind] += 1
        keep(_safe_name(page, f".{kind}"), data, page, producers[kind])

    # Debian's HTML manuals and text docs, licences.
    html = _distinct(list(Path("/usr/share/doc").rglob("*.html")), 6000)
    html_upload = evenly(html, QUOTAS["doc_html"])
    for path in html_upload:
        keep(_safe_name(path, ""), path.read_bytes(), path, "Debian HTML manual")
    texts = _distinct(list(Path("/usr/share/doc").rglob("*.txt")), 5000)
    for path in evenly(texts, QUOTAS["doc_txt"]):
        keep(_safe_name(path, ""), path.read_bytes(), path, "Debian text doc")
    for path in evenly(_distinct(list(Path("/usr/share/common-licenses").iterdir()), 1), 18):
        keep(f"{_safe_name(path, '')}.txt", path.read_bytes(), path, "Debian common-licenses")

    # Python sources and package docs.
    stdlib = Path(sys.base_prefix, "lib", "python3.11")
    sources = _distinct(
        [p for p in stdlib.rglob("*.py") if "-packages" not in str(p.relative_to(stdlib))], 20000
    )
    for path in evenly(sources, QUOTAS["python_source"]):
        keep(_safe_name(path, ""), path.read_bytes(), path, "Python standard library source")
    readmes = _distinct(
        [p for venv in (site, ROOT / ".venv" / OPENWEBUI_SITE) for p in venv.rglob("*.md")], 5000
    )
    for path in evenly(readmes, QUOTAS["readme_md"]):
        keep(_safe_name(path, ""), path.read_bytes(), path, "package documentation (Markdown)")
    descriptions = _distinct(list((sklearn / "descr").glob("*.rst")), 1)
    for path in evenly(descriptions, QUOTAS["rst"]):
        keep(path.name, path.read_bytes(), path, "scikit-learn docs")
    tables = _distinct(list((sklearn / "data").glob("*.csv")), 1)
    for path in evenly(tables, QUOTAS["csv"]):
        keep(path.name, path.read_bytes(), path, "scikit-learn data")
    changelog = site / "open_webui" / "CHANGELOG.md"
    keep("openwebui_CHANGELOG.md", changelog.read_bytes(), changelog, "Open WebUI CHANGELOG.md")

    # Office and LaTeX producers.
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    profile = work / "lo-profile"
    spare_html = [p for p in html if p not in set(html_upload)] or html
    for kind, target, quota in (
        ("pdf", "pdf:writer_pdf_Export", QUOTAS["html_pdf"]),
        ("docx", "docx:MS Word 2007 XML", QUOTAS["html_docx"]),
    ):
        picked = evenly(spare_html[:: 1 if kind == "pdf" else -1], quota)
        for number, path in enumerate(picked):
            copy = work / f"{kind}{number}_{_safe_name(path, '')}"
            shutil.copyfile(path, copy)
            try:
                produced = libreoffice(copy, target, work, profile, "HTML (StarWriter)")
            except SystemExit:
                continue
            keep(
                _safe_name(copy, f".{kind}").replace(".html", ""),
                produced.read_bytes(),
                path,
                f"LibreOffice Writer {kind}",
            )
    for path in evenly(descriptions, QUOTAS["rst_pdf"]):
        pdf = work / f"{path.stem}.pdf"
        command = ["pandoc", str(path), "-f", "rst", "--pdf-engine=pdflatex", "-o", str(pdf)]
        if _run(command, timeout=300) is not None or pdf.exists():
            keep(f"{path.stem}_pdflatex.pdf", pdf.read_bytes(), path, "pandoc + pdfTeX")
    for path in evenly(tables, QUOTAS["xlsx"]):
        copy = work / path.name
        shutil.copyfile(path, copy)
        try:
            produced = libreoffice(
                copy, "xlsx:Calc MS Excel 2007 XML", work, profile, "CSV:44,34,76,1"
            )
        except SystemExit:
            continue
        keep(f"{path.stem}.xlsx", produced.read_bytes(), path, "LibreOffice Calc xlsx")
    shutil.rmtree(work, ignore_errors=True)
    return documents
