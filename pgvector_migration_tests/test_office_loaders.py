"""The unstructured-based loaders' guards: missing tools and oversized archives fail with a reason
that says what to do. (Their output is checked against Open WebUI's in test_golden.py.)"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pgvector_migration.pipeline import office_loaders
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType, load_documents

DOCUMENTS = Path(__file__).parent / "golden" / "documents"


def test_legacy_office_file_without_soffice_names_the_missing_tool(monkeypatch):
    monkeypatch.setattr(office_loaders.shutil, "which", lambda name: None)
    with pytest.raises(LoaderError, match="converting .doc needs LibreOffice's soffice on PATH"):
        load_documents(DOCUMENTS / "pride_and_prejudice.doc", "report.doc", "application/msword")


def test_missing_spacy_model_is_a_loader_error(monkeypatch):
    monkeypatch.setattr(office_loaders, "SPACY_MODELS", ("no_such_spacy_model",))
    with pytest.raises(LoaderError, match="en_core_web_sm"):
        load_documents(DOCUMENTS / "aesop_fables.xml", "fables.xml", "application/xml")


def test_archive_that_unpacks_too_large_is_refused(tmp_path):
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (11 * 1024 * 1024))
    with pytest.raises(LoaderError, match="too large after decompression"):
        load_documents(bomb, "bomb.docx", None)


def test_epub_is_recognised_by_content_type_only(tmp_path):
    """Open WebUI sends an .epub to unstructured only when its content type says epub; otherwise
    the zip falls through to the text loader, which refuses binary data."""
    (document,) = load_documents(
        DOCUMENTS / "alice_chapter_one.epub", "alice.epub", "application/epub+zip"
    )
    assert "Down the Rabbit-Hole" in document.text
    with pytest.raises(UnsupportedFileType, match="binary data"):
        load_documents(DOCUMENTS / "alice_chapter_one.epub", "alice.epub", "application/zip")
