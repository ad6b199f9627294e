"""Build the fidelity corpus: real-world documents of varied producers, made here offline.

Every text comes from a public document that a package installs (Open WebUI's own changelog in
its wheel, scikit-learn's dataset descriptions and CSVs, Debian's HTML manuals, man pages and
licence texts); every binary format is made by the real tool that makes such files in the wild
(pdfTeX through pandoc, LibreOffice, groff, Ghostscript, img2pdf). Nothing is committed but this
script: the same packages give the same texts.

Run with Open WebUI's venv Python (it locates scikit-learn and Open WebUI there):

    $OPENWEBUI_VENV/bin/python fidelity/build_corpus.py --out .fidelity/corpus

Writes the documents and `manifest.json`: each file's producer and the knowledge bases it goes
into (a file in several of them, as users do).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import html
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Fixed dates so that pdfTeX and Ghostscript write the same bytes on every run.
SOURCE_DATE_EPOCH = "1700000000"
CHANGELOG_RELEASES = 3  # releases of Open WebUI's changelog taken into the md/csv/docx/pptx files

TOOLS = {
    "pandoc": "pandoc",
    "pdflatex": "texlive-latex-base texlive-latex-recommended",
    "soffice": "libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui",
    "gropdf": "groff",
    "ps2pdf": "ghostscript",
    "pdftoppm": "poppler-utils",
    "img2pdf": "img2pdf",
    "rst2html": "python3-docutils",
}
DEBIAN_DOCUMENTS = {
    "users-and-groups.html": Path("/usr/share/doc/base-passwd/users-and-groups.html"),
    "Apache-2.0.txt": Path("/usr/share/common-licenses/Apache-2.0"),
    "gs.1": Path("/usr/share/man/man1/gs.1.gz"),
}


def package_folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        sys.exit(
            f"build_corpus: {module} is not installed in {sys.executable}; run it with "
            "Open WebUI's venv Python (fidelity/install_openwebui.sh)"
        )
    return Path(spec.origin).parent


def run(*command: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    environment = {
        **os.environ,
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "FORCE_SOURCE_DATE": "1",
        "TZ": "UTC",
    }
    result = subprocess.run(
        command, cwd=cwd, input=stdin, capture_output=True, env=environment, timeout=300
    )
    if result.returncode != 0:
        sys.exit(
            f"build_corpus: {' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )
    return result.stdout


def libreoffice(
    source: Path, target_format: str, out_dir: Path, profile: Path, input_filter: str | None = None
) -> Path:
    """Convert with LibreOffice in its own profile folder (other LibreOffice processes on the
    machine must not share it)."""
    command = ["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--norestore"]
    if input_filter:
        command.append(f"--infilter={input_filter}")
    run(*command, "--convert-to", target_format, "--outdir", str(out_dir), str(source))
    produced = out_dir / f"{source.stem}.{target_format.split(':')[0]}"
    if not produced.exists():
        sys.exit(f"build_corpus: LibreOffice did not write {produced}")
    return produced


def changelog_releases(changelog: str, count: int) -> list[dict[str, str]]:
    """The newest `count` releases of Open WebUI's CHANGELOG.md: version, date and each
    section's bullet entries (multi-line, with quotes and commas, as written)."""
    releases = []
    for block in re.split(r"^## ", changelog, flags=re.M)[1 : count + 1]:
        header, _, body = block.partition("\n")
        match = re.match(r"\[(?P<version>[^\]]+)\] - (?P<date>\S+)", header)
        if not match:
            continue
        for section in re.split(r"^### ", body, flags=re.M)[1:]:
            title, _, entries = section.partition("\n")
            releases.append(
                {
                    "version": match["version"],
                    "date": match["date"],
                    "section": title.strip(),
                    "entries": entries.strip(),
                }
            )
    return releases


def changelog_excerpt(changelog: str, count: int) -> str:
    """The changelog's preamble and newest `count` releases, cut at a release header."""
    starts = [m.start() for m in re.finditer(r"^## \[", changelog, flags=re.M)]
    return changelog[: starts[count]] if len(starts) > count else changelog


def flat_presentation(releases: list[dict[str, str]]) -> str:
    """A flat ODF presentation (what LibreOffice Impress saves as .fodp): one slide per
    changelog section, the section as title and its entries as an outline."""
    slides = []
    for number, release in enumerate(releases, start=1):
        bullets = "".join(
            f"<text:list-item><text:p>{html.escape(line.lstrip('- ').strip())}</text:p>"
            "</text:list-item>"
            for line in release["entries"].splitlines()
            if line.strip().startswith("- ")
        )
        title = f"{release['version']} ({release['date']}): {release['section']}"
        slides.append(
            f'<draw:page draw:name="Slide{number}" draw:master-page-name="Default">'
            '<draw:frame presentation:class="title" svg:x="1cm" svg:y="0.5cm" svg:width="26cm" '
            f'svg:height="2.5cm"><draw:text-box><text:p>{html.escape(title)}</text:p>'
            "</draw:text-box></draw:frame>"
            '<draw:frame presentation:class="outline" svg:x="1cm" svg:y="3.5cm" '
            'svg:width="26cm" svg:height="14cm"><draw:text-box>'
            f"<text:list>{bullets}</text:list></draw:text-box></draw:frame></draw:page>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
        'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
        'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
        'office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.presentation">'
        '<office:master-styles><style:master-page style:name="Default"/></office:master-styles>'
        f"<office:body><office:presentation>{''.join(slides)}</office:presentation></office:body>"
        "</office:document>\n"
    )


def build(out: Path) -> list[dict]:
    missing = [
        f"{tool} (apt-get install {package})"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None
    ]
    missing += [str(path) for path in DEBIAN_DOCUMENTS.values() if not path.exists()]
    if missing:
        sys.exit("build_corpus: missing " + "; ".join(missing))

    sklearn = package_folder("sklearn")
    changelog = (package_folder("open_webui") / "CHANGELOG.md").read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fidelity-corpus-"))
    profile = work / "lo-profile"
    documents: list[dict] = []

    def add(name: str, producer: str, knowledge: list[str]) -> None:
        documents.append({"name": name, "producer": producer, "knowledge": knowledge})

    # reStructuredText: scikit-learn's dataset descriptions, with Sphinx roles and directives.
    for name in ("iris.rst", "breast_cancer.rst", "california_housing.rst"):
        shutil.copyfile(sklearn / "datasets" / "descr" / name, out / name)
    add("iris.rst", "scikit-learn docs", ["Docs", "Iris"])
    add("breast_cancer.rst", "scikit-learn docs", ["Docs"])
    add("california_housing.rst", "scikit-learn docs", ["Docs"])

    # CSVs: scikit-learn's, and Open WebUI's release notes as one row per section with quotes,
    # commas and newlines inside fields, UTF-8 with a byte-order mark (as Excel writes it).
    shutil.copyfile(sklearn / "datasets" / "data" / "iris.csv", out / "iris.csv")
    shutil.copyfile(sklearn / "datasets" / "data" / "wine_data.csv", out / "wine_data.csv")
    releases = changelog_releases(changelog, CHANGELOG_RELEASES)
    with open(out / "openwebui_releases.csv", "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["version", "date", "section", "entries"])
        writer.writeheader()
        writer.writerows(releases)
    add("iris.csv", "scikit-learn data", ["Data tables", "Iris"])
    add("wine_data.csv", "scikit-learn data", ["Data tables"])
    add(
        "openwebui_releases.csv",
        "Python csv, UTF-8 BOM, quoted multi-line fields",
        ["Data tables", "Release notes"],
    )

    # Markdown with headers and plain text.
    (out / "openwebui_changelog.md").write_text(
        changelog_excerpt(changelog, CHANGELOG_RELEASES), encoding="utf-8"
    )
    add(
        "openwebui_changelog.md",
        "Open WebUI CHANGELOG.md (newest releases)",
        ["Docs", "Release notes"],
    )
    shutil.copyfile(DEBIAN_DOCUMENTS["Apache-2.0.txt"], out / "apache-2.0.txt")
    add("apache-2.0.txt", "Debian common-licenses", ["Docs"])

    # HTML: a Debian manual, and docutils' rendering of an .rst.
    shutil.copyfile(DEBIAN_DOCUMENTS["users-and-groups.html"], out / "users-and-groups.html")
    add("users-and-groups.html", "Debian base-passwd manual (DebianDoc-SGML)", ["Docs", "Office"])
    (out / "wine_data_docutils.html").write_bytes(
        run(
            "rst2html",
            "--quiet",
            "--no-datestamp",
            "--no-generator",
            str(sklearn / "datasets" / "descr" / "wine_data.rst"),
        )
    )
    add("wine_data_docutils.html", "docutils rst2html", ["Docs"])

    # PDFs of several producers.
    run(
        "pandoc",
        str(out / "iris.rst"),
        "-f",
        "rst",
        "--pdf-engine=pdflatex",
        "-o",
        str(out / "iris_pdflatex.pdf"),
    )
    add("iris_pdflatex.pdf", "pandoc + pdfTeX (LaTeX)", ["Manuals (PDF)", "Iris"])
    run(
        "pandoc",
        str(out / "breast_cancer.rst"),
        "-f",
        "rst",
        "--pdf-engine=pdflatex",
        "-V",
        "geometry:a5paper",
        "-o",
        str(out / "breast_cancer_pdflatex.pdf"),
    )
    add("breast_cancer_pdflatex.pdf", "pandoc + pdfTeX (LaTeX), A5", ["Manuals (PDF)"])
    man_page = gzip.decompress(DEBIAN_DOCUMENTS["gs.1"].read_bytes())
    (out / "gs_manual_groff.pdf").write_bytes(run("groff", "-man", "-Tpdf", stdin=man_page))
    add("gs_manual_groff.pdf", "groff gropdf (man page)", ["Manuals (PDF)"])
    postscript = run("groff", "-man", "-Tps", stdin=man_page)
    (work / "gs.ps").write_bytes(postscript)
    run("ps2pdf", str(work / "gs.ps"), str(out / "gs_manual_ghostscript.pdf"))
    add("gs_manual_ghostscript.pdf", "groff PostScript + Ghostscript ps2pdf", ["Manuals (PDF)"])
    html_copy = work / "users_and_groups.html"
    shutil.copyfile(out / "users-and-groups.html", html_copy)
    shutil.copyfile(
        libreoffice(html_copy, "pdf:writer_pdf_Export", work, profile, "HTML (StarWriter)"),
        out / "users_and_groups_libreoffice.pdf",
    )
    add(
        "users_and_groups_libreoffice.pdf",
        "LibreOffice Writer PDF export",
        ["Manuals (PDF)", "Office"],
    )
    # A scan: the first page of the LaTeX PDF as a picture only (no text layer), and a report
    # mixing text and that picture, exported by LibreOffice.
    run(
        "pdftoppm",
        "-r",
        "100",
        "-f",
        "1",
        "-l",
        "1",
        "-png",
        "-singlefile",
        str(out / "iris_pdflatex.pdf"),
        str(work / "scan"),
    )
    run(
        "img2pdf",
        "--producer",
        "img2pdf",
        "--creationdate",
        "2023-11-14T22:13:20Z",
        "--moddate",
        "2023-11-14T22:13:20Z",
        "-o",
        str(out / "scanned_page.pdf"),
        str(work / "scan.png"),
    )
    add("scanned_page.pdf", "pdftoppm + img2pdf (image only, no text layer)", ["Manuals (PDF)"])
    report = work / "report_with_scan.html"
    iris_text = (out / "iris.rst").read_text(encoding="utf-8")
    paragraphs = [p for p in iris_text.split("\n\n") if p.strip()][:6]
    report.write_text(
        "<html><body><h1>Iris data set: scanned page</h1>"
        + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[:3])
        + '<p><img src="scan.png" width="600"></p>'
        + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs[3:])
        + "</body></html>",
        encoding="utf-8",
    )
    shutil.copyfile(
        libreoffice(report, "pdf:writer_pdf_Export", work, profile, "HTML (StarWriter)"),
        out / "report_with_scan_libreoffice.pdf",
    )
    add(
        "report_with_scan_libreoffice.pdf",
        "LibreOffice Writer PDF export, text + image",
        ["Manuals (PDF)", "Iris"],
    )

    # Office files: docx by LibreOffice and by pandoc, xlsx and pptx by LibreOffice.
    shutil.copyfile(
        libreoffice(html_copy, "docx:MS Word 2007 XML", work, profile, "HTML (StarWriter)"),
        out / "users_and_groups.docx",
    )
    add("users_and_groups.docx", "LibreOffice Writer (Word 2007 XML)", ["Office"])
    run(
        "pandoc",
        str(out / "openwebui_changelog.md"),
        "-f",
        "gfm",
        "-o",
        str(out / "openwebui_changelog_pandoc.docx"),
    )
    add("openwebui_changelog_pandoc.docx", "pandoc docx writer", ["Office", "Release notes"])
    wine_csv = work / "wine_data.csv"
    shutil.copyfile(out / "wine_data.csv", wine_csv)
    shutil.copyfile(
        libreoffice(wine_csv, "xlsx:Calc MS Excel 2007 XML", work, profile, "CSV:44,34,76,1"),
        out / "wine_data.xlsx",
    )
    add("wine_data.xlsx", "LibreOffice Calc (Excel 2007 XML)", ["Office", "Data tables"])
    presentation = work / "openwebui_releases.fodp"
    presentation.write_text(flat_presentation(releases[:20]), encoding="utf-8")
    shutil.copyfile(
        libreoffice(presentation, "pptx:Impress MS PowerPoint 2007 XML", work, profile),
        out / "openwebui_releases.pptx",
    )
    add(
        "openwebui_releases.pptx",
        "LibreOffice Impress (PowerPoint 2007 XML)",
        ["Office", "Release notes"],
    )

    shutil.rmtree(work, ignore_errors=True)
    return documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    documents = build(args.out)
    for document in documents:
        document["bytes"] = (args.out / document["name"]).stat().st_size
    manifest = io.StringIO()
    json.dump({"documents": documents}, manifest, indent=2)
    (args.out / "manifest.json").write_text(manifest.getvalue() + "\n", encoding="utf-8")
    print(f"build_corpus: {len(documents)} documents in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
