"""The streamed .docx reader gives docx2txt's text (Open WebUI's loader) character for
character, on Word files with everything docx2txt treats specially."""

import shutil
import zipfile
from pathlib import Path

import docx
import docx2txt
import pytest

from pgvector_migration.pipeline.docx_text import docx_text
from pgvector_migration.pipeline.loaders import load_documents
from pgvector_migration.sample_data import DOCUMENTS_DIR


def _word_file(path: Path) -> Path:
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "Running head\twith a tab"
    section.different_first_page_header_footer = True
    section.first_page_header.paragraphs[0].text = "First page head"
    section.footer.paragraphs[0].text = "Page foot"
    document.add_heading("A title", level=1)
    paragraph = document.add_paragraph("Before a tab")
    run = paragraph.add_run()
    run.add_tab()
    run.add_text("after it, then a line break")
    run.add_break()
    run.add_text("and the next line.")
    document.add_paragraph("")  # an empty paragraph still adds its blank line
    table = document.add_table(rows=2, cols=2)
    for row, cells in enumerate(table.rows):
        for column, cell in enumerate(cells.cells):
            cell.text = f"cell {row},{column} « ünïcode » & <markup>"
    document.add_paragraph("   trailing spaces are stripped only at the very end   ")
    document.save(path)
    return path


def _with_carriage_return_and_empty_text(path: Path) -> Path:
    """w:cr and an empty w:t, which python-docx does not write, patched into the body."""
    patched = path.with_name("patched.docx")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(patched, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(
                    b"<w:t>A title</w:t>", b"<w:t>A</w:t><w:cr/><w:t/><w:t>title</w:t>", 1
                )
                assert b"<w:cr/>" in data
            target.writestr(item, data)
    return patched


def test_the_streamed_text_is_docx2txts(tmp_path):
    made = _word_file(tmp_path / "made.docx")
    patched = _with_carriage_return_and_empty_text(made)
    samples = sorted(DOCUMENTS_DIR.glob("*.docx"))
    assert samples, "the sample deployment carries a Word file"
    for path in [made, patched, *samples]:
        expected = docx2txt.process(str(path))
        assert docx_text(path) == expected, path.name
    assert "Running head\twith a tab" in docx_text(made)
    assert "A\ntitle" in docx_text(patched)


def test_the_docx_loader_reads_with_the_streamed_reader(tmp_path):
    path = _word_file(tmp_path / "made.docx")
    [document] = load_documents(path, "made.docx", None)
    assert document.text == docx2txt.process(str(path))


def test_a_word_file_without_a_body_fails_as_it_does_in_docx2txt(tmp_path):
    made = _word_file(tmp_path / "made.docx")
    hollow = tmp_path / "hollow.docx"
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(hollow, "w") as target:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                target.writestr(item, source.read(item.filename))
    with pytest.raises(KeyError):
        docx2txt.process(str(hollow))
    with pytest.raises(KeyError):
        docx_text(hollow)
    not_a_zip = tmp_path / "plain.docx"
    shutil.copyfile(Path(__file__), not_a_zip)
    with pytest.raises(zipfile.BadZipFile):
        docx_text(not_a_zip)
