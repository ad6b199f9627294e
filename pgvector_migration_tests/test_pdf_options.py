"""Open WebUI's PDF settings: `PDF_LOADER_MODE` (page|single) and `PDF_EXTRACT_IMAGES` (RapidOCR
on the images inside a page), against what Open WebUI 0.12.4's own PDF loader made of the same
PDF (golden/pdf_options/, with the script that recorded it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvector_migration.pipeline.pdf_loader import PdfOptions, load_pdf, with_image_text
from pgvector_migration.pipeline.planning import plan_file
from pgvector_migration.pipeline.records import SourceFile, file_collection_name
from pgvector_migration.settings import SettingsError, resolve_rag_settings

GOLDEN = Path(__file__).parent / "golden" / "pdf_options"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
DOCUMENT = GOLDEN / EXPECTED["document"]


@pytest.mark.parametrize("scenario", sorted(EXPECTED["scenarios"]))
def test_pdf_documents_match_open_webui(scenario):
    expected = EXPECTED["scenarios"][scenario]
    settings = expected["settings"]
    documents = load_pdf(DOCUMENT, PdfOptions(settings["mode"], settings["extract_images"]))
    assert [d.text for d in documents] == [e["text"] for e in expected["documents"]]
    assert [
        {k: "{UPLOAD_PATH}" if v == str(DOCUMENT) else v for k, v in d.metadata.items()}
        for d in documents
    ] == [e["metadata"] for e in expected["documents"]]


def test_golden_image_text_is_really_read_from_the_images():
    """The OCR scenarios hold text that only the images carry, so the test above can fail."""
    with_images = EXPECTED["scenarios"]["page_with_images"]["documents"]
    plain = EXPECTED["scenarios"]["page"]["documents"]
    assert "ARCHIVE COPY" in with_images[0]["text"]
    assert all("ARCHIVE COPY" not in d["text"] for d in plain)


def test_image_text_goes_before_the_last_two_paragraphs():
    assert (
        with_image_text("body\n\nmore\n\nfooter", "[image]") == "body\n\n[image]\n\nmore\n\nfooter"
    )
    assert with_image_text("one paragraph", "[image]") == "one paragraph\n\n[image]"


def settings_with(**environ: str):
    return resolve_rag_settings({}, environ)


def test_pdf_settings_come_from_the_config_table_before_the_environment():
    settings = resolve_rag_settings(
        {"rag.pdf_loader_mode": "single", "rag.pdf_extract_images": True},
        {"PDF_LOADER_MODE": "page", "PDF_EXTRACT_IMAGES": "false"},
    )
    assert (settings.pdf_loader_mode, settings.pdf_extract_images) == ("single", True)
    assert settings_with(RAPIDOCR_PARAMS='{"Global.text_score": 0.6}').rapidocr_params == {
        "Global.text_score": 0.6
    }


def test_an_unknown_pdf_loader_mode_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="PDF_LOADER_MODE"):
        settings_with(PDF_LOADER_MODE="pages").validate()


def test_pdf_settings_change_the_fingerprint_only_where_they_shape_text():
    default = settings_with()
    assert settings_with(PDF_LOADER_MODE="page").splitting_fingerprint(True) == (
        default.splitting_fingerprint(True)
    )
    single = settings_with(PDF_LOADER_MODE="single")
    assert single.splitting_fingerprint(True) != default.splitting_fingerprint(True)
    assert single.splitting_fingerprint(False) == default.splitting_fingerprint(False)
    ocr = settings_with(PDF_EXTRACT_IMAGES="true", RAPIDOCR_PARAMS='{"Global.text_score": 0.6}')
    assert ocr.splitting_fingerprint(True) != settings_with(
        PDF_EXTRACT_IMAGES="true"
    ).splitting_fingerprint(True)


def test_single_mode_reaches_the_chunks():
    file = SourceFile(
        id="pdf-1",
        user_id="user-1",
        filename="notice_with_images.pdf",
        stored_path=None,
        content_type="application/pdf",
        meta={"name": "notice_with_images.pdf", "content_type": "application/pdf"},
        data={},
        content_hash_column=None,
        upload_path=DOCUMENT,
    )
    name = file_collection_name(file.id)
    paged = plan_file(file, settings_with(), [name]).chunks_by_collection[name]
    single = plan_file(file, settings_with(PDF_LOADER_MODE="single"), [name])
    assert {c.metadata["page"] for c in paged} == {0, 1}
    assert all("page" not in c.metadata for c in single.chunks_by_collection[name])
    assert all(c.metadata["total_pages"] == 2 for c in single.chunks_by_collection[name])
