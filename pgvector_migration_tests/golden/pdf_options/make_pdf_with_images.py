"""Build `notice_with_images.pdf`: a LibreOffice PDF with a text layer and two embedded images
whose text only OCR can read (a scanned stamp and a scanned table), for Open WebUI's
`PDF_EXTRACT_IMAGES`. Run once, by hand; the committed PDF is the fixture:

    /work/main/.venv/bin/python pgvector_migration_tests/golden/pdf_options/make_pdf_with_images.py

Needs Pillow and LibreOffice's `soffice` (Debian: libreoffice-writer). The prose is the
Gettysburg Address (public domain); the image text is made up.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
OUT = HERE / "notice_with_images.pdf"


def text_image(lines: list[str], size: tuple[int, int]) -> bytes:
    """A PNG of black text on white, large enough for OCR."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)
    for row, line in enumerate(lines):
        draw.text((30, 30 + row * 70), line, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def main() -> None:
    stamp = text_image(["RECEIVED 19 NOV 1863", "ARCHIVE COPY"], (760, 200))
    table = text_image(["Item  Count", "Copies  5", "Drafts  2"], (620, 260))
    html = f"""<html><head><meta charset="utf-8"><title>Notice</title></head><body>
<h1>Address Delivered at Gettysburg</h1>
<p>Four score and seven years ago our fathers brought forth on this continent, a new nation,
conceived in Liberty, and dedicated to the proposition that all men are created equal.</p>

<p>Now we are engaged in a great civil war, testing whether that nation, or any nation so
conceived and so dedicated, can long endure.</p>
<p><img src="{data_uri(stamp)}" width="380" height="100"></p>
<p>We are met on a great battle-field of that war.</p>
<p>Page footer: Abraham Lincoln, November 19, 1863.</p>
<p style="page-break-before: always">The world will little note, nor long remember what we say
here, but it can never forget what they did here.</p>
<p><img src="{data_uri(table)}" width="310" height="130"></p>
</body></html>"""
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "notice_with_images.html"
        source.write_text(html, encoding="utf-8")
        soffice = shutil.which("soffice") or shutil.which("libreoffice")
        subprocess.run(
            [
                soffice,
                "--headless",
                "--convert-to",
                "pdf:writer_web_pdf_Export",
                "--outdir",
                work,
                str(source),
            ],
            check=True,
            capture_output=True,
        )
        shutil.copyfile(Path(work) / "notice_with_images.pdf", OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
