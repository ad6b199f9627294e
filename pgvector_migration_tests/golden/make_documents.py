"""Build the golden-only documents in `documents/` (the formats Open WebUI hands to `unstructured`).

The prose is the public-domain text of the sample deployment's documents (see
`documents/SOURCES.md`), laid out in each format by the tools that write it. Run once, by hand;
the committed files are the corpus, so rebuilding is only needed to add a document:

    /tmp/owui-venv/bin/pip install pypandoc_binary python-docx python-pptx openpyxl
    /tmp/msgtool-venv/bin/pip install msgforge      # Outlook .msg writer, only for the .msg file
    /tmp/owui-venv/bin/python pgvector_migration_tests/golden/make_documents.py \
        --msg-python /tmp/msgtool-venv/bin/python

LibreOffice's `soffice` (Debian: libreoffice-writer, -calc, -impress) converts the .docx, .xlsx
and .pptx into the legacy .doc, .xls and .ppt.
"""

from __future__ import annotations

import argparse
import csv
import html
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "documents"
SAMPLES = HERE.parents[1] / "pgvector_migration" / "sample_data" / "documents"

BIXBY_LETTER = [
    "Executive Mansion, Washington, Nov. 21, 1864.",
    "Dear Madam,",
    "I have been shown in the files of the War Department a statement of the Adjutant General "
    "of Massachusetts that you are the mother of five sons who have died gloriously on the field "
    "of battle.",
    "I feel how weak and fruitless must be any word of mine which should attempt to beguile you "
    "from the grief of a loss so overwhelming. But I cannot refrain from tendering you the "
    "consolation that may be found in the thanks of the Republic they died to save.",
    "I pray that our Heavenly Father may assuage the anguish of your bereavement, and leave you "
    "only the cherished memory of the loved and lost, and the solemn pride that must be yours, "
    "to have laid so costly a sacrifice upon the altar of Freedom.",
    "Yours, very sincerely and respectfully,",
    "A. Lincoln.",
]


def lincoln_speeches() -> list[tuple[str, list[str], list[str]]]:
    """(title, byline lines, paragraphs) of the two speeches in the sample .txt."""
    text = (SAMPLES / "gettysburg_and_inaugural.txt").read_text(encoding="utf-8")
    speeches = []
    for block in text.strip().split("\n\n\n"):
        head, *paragraphs = block.strip().split("\n\n")
        title, *byline = head.split("\n")
        speeches.append((title, byline, paragraphs))
    return speeches


def fables() -> list[dict[str, str]]:
    with (SAMPLES / "aesop_fables.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rst(path: Path) -> None:
    parts = []
    for title, byline, paragraphs in lincoln_speeches():
        parts += [title, "=" * len(title), "", *(f"*{line}*" for line in byline[:1])]
        parts += ["", *byline[1:], ""]
        for paragraph in paragraphs:
            parts += [paragraph, ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def write_xml(path: Path) -> None:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<fables source="Aesop">']
    for fable in fables()[:6]:
        lines += [
            "  <fable>",
            f"    <title>{html.escape(fable['title'])}</title>",
            f"    <text>{html.escape(fable['text'])}</text>",
            f"    <moral>{html.escape(fable['moral'])}</moral>",
            "  </fable>",
        ]
    lines.append("</fables>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_epub(path: Path) -> None:
    import pypandoc

    pypandoc.convert_file(
        str(SAMPLES / "alice_chapter_one.md"),
        "epub",
        outputfile=str(path),
        extra_args=["--metadata=title:Alice's Adventures in Wonderland", "--metadata=lang:en"],
    )


def write_odt(path: Path) -> None:
    import pypandoc

    pypandoc.convert_file(str(SAMPLES / "walden.html"), "odt", outputfile=str(path))


def write_xlsx(path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheets = {"Fables": fables()[:6], "More fables": fables()[6:]}
    for index, (name, rows) in enumerate(sheets.items()):
        sheet = book.active if index == 0 else book.create_sheet()
        sheet.title = name
        sheet.append(["Title", "Moral", "Text"])
        for row in rows:
            sheet.append([row["title"], row["moral"], row["text"]])
    book.save(path)


def write_pptx(path: Path) -> None:
    from pptx import Presentation

    deck = Presentation()
    title_slide = deck.slides.add_slide(deck.slide_layouts[0])
    title_slide.shapes.title.text = "Abraham Lincoln"
    title_slide.placeholders[1].text = "Two speeches, 1863 and 1865"
    for title, byline, paragraphs in lincoln_speeches():
        for number, paragraph in enumerate(paragraphs, 1):
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text = f"{title} ({number}/{len(paragraphs)})"
            body = slide.placeholders[1].text_frame
            body.text = byline[0]
            body.add_paragraph().text = paragraph
    deck.save(path)


def write_docx_for_doc(path: Path) -> None:
    shutil.copyfile(SAMPLES / "pride_and_prejudice.docx", path)


def write_msg(path: Path, msg_python: str) -> None:
    body = "".join(f"<p>{html.escape(line)}</p>" for line in BIXBY_LETTER)
    script = (
        "import datetime, sys\n"
        "from msgforge import Message\n"
        "Message(subject='Letter to Mrs. Lydia Bixby', html_body=sys.argv[2],\n"
        "        sender=('president@example.invalid', 'A. Lincoln'),\n"
        "        to=[('lydia.bixby@example.invalid', 'Mrs. Lydia Bixby')],\n"
        "        sent=datetime.datetime(1864, 11, 21, 12, 0, tzinfo=datetime.timezone.utc),\n"
        ").save(sys.argv[1])\n"
    )
    subprocess.run([msg_python, "-c", script, str(path), body], check=True)


def soffice_convert(source: Path, extension: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["soffice", "--headless", "--convert-to", extension, "--outdir", out, str(source)],
            check=True,
            capture_output=True,
        )
        shutil.move(Path(out) / f"{source.stem}.{extension}", target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msg-python", help="a Python with msgforge installed")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    write_rst(OUT / "gettysburg_and_inaugural.rst")
    write_xml(OUT / "aesop_fables.xml")
    write_epub(OUT / "alice_chapter_one.epub")
    write_odt(OUT / "walden_economy.odt")
    write_xlsx(OUT / "aesop_fables.xlsx")
    write_pptx(OUT / "lincoln_speeches.pptx")
    with tempfile.TemporaryDirectory() as scratch:
        docx = Path(scratch) / "pride_and_prejudice.docx"
        write_docx_for_doc(docx)
        soffice_convert(docx, "doc", OUT / "pride_and_prejudice.doc")
    soffice_convert(OUT / "aesop_fables.xlsx", "xls", OUT / "aesop_fables.xls")
    soffice_convert(OUT / "lincoln_speeches.pptx", "ppt", OUT / "lincoln_speeches.ppt")
    if args.msg_python:
        write_msg(OUT / "lincoln_bixby_letter.msg", args.msg_python)
    else:
        print("no --msg-python: the .msg file was not rebuilt", file=sys.stderr)


if __name__ == "__main__":
    main()
