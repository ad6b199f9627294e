"""The text of a Word (.docx) file as Open WebUI's default loader reads it, without holding the
document's XML tree.

Open WebUI 0.12.4 reads .docx with langchain's `Docx2txtLoader`, that is `docx2txt.process`
0.9: the headers (`word/header*.xml`, in the archive's order), the body (`word/document.xml`)
and the footers, each walked element by element in document order, where a `w:t` adds its
text, a `w:tab` a tab, a `w:br` or `w:cr` a newline and the start of a `w:p` a blank line;
the whole is stripped. docx2txt builds each part's complete element tree first: a 1.8 MB
.docx of 3 MB of text needed 380 MiB while it was read (measured on the benchmark corpus's
largest Word file), in every loader worker that met one. Here each part is parsed as a stream
and every element is dropped once it has ended, so memory follows the text, not the markup.
The output is docx2txt's, character for character (tests compare the two).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree.ElementTree import Element, iterparse

WORD_NAMESPACE = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
TEXT = WORD_NAMESPACE + "t"
PARAGRAPH = WORD_NAMESPACE + "p"
# What an element adds when it starts (a w:t adds its text, known only when it ends).
ADDED_AT_START = {
    WORD_NAMESPACE + "tab": "\t",
    WORD_NAMESPACE + "br": "\n",
    WORD_NAMESPACE + "cr": "\n",
    PARAGRAPH: "\n\n",
}
# Which archive members docx2txt reads, matched from the start of the name as it does.
HEADER = re.compile(r"word/header[0-9]*.xml")
BODY = "word/document.xml"
FOOTER = re.compile(r"word/footer[0-9]*.xml")


def _part_text(archive: zipfile.ZipFile, name: str) -> list[str]:
    pieces: list[str] = []
    # The elements open at this point, each with the place of its text when it is a w:t; one
    # that has ended is detached from its parent (whose last child it is then).
    open_elements: list[tuple[Element, int | None]] = []
    with archive.open(name) as stream:
        for event, element in iterparse(stream, events=("start", "end")):
            if event == "start":
                place = None
                if element.tag == TEXT:
                    place = len(pieces)
                    pieces.append("")  # filled at its end, when its text is known
                elif element.tag in ADDED_AT_START:
                    pieces.append(ADDED_AT_START[element.tag])
                open_elements.append((element, place))
                continue
            _, place = open_elements.pop()
            if place is not None and element.text is not None:
                pieces[place] = element.text
            if open_elements:
                del open_elements[-1][0][-1]
    return pieces


def docx_text(path: Path) -> str:
    """The text `docx2txt.process` returns for the file."""
    pieces: list[str] = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        for name in names:
            if HEADER.match(name):
                pieces += _part_text(archive, name)
        pieces += _part_text(archive, BODY)
        for name in names:
            if FOOTER.match(name):
                pieces += _part_text(archive, name)
    return "".join(pieces).strip()
