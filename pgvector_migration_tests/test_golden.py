"""Our chunk plan against the golden corpus: what Open WebUI 0.12.4's own code stores in
pgvector for each sample document (see golden/README.md; regenerate with
golden/generate_golden.py).

Chunk ids are ours (Open WebUI uses random uuid4), so only texts, order and metadata are compared.
A known difference is an `xfail(strict=True)` naming it, so fixing it turns the case red until the
mark is removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pgvector_migration.sample_data as sample_data
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType
from pgvector_migration.pipeline.planning import plan_file, source_documents
from pgvector_migration.pipeline.records import SourceFile, file_collection_name
from pgvector_migration.settings import DEFAULT_EMBEDDING_MODEL, RagSettings, resolve_rag_settings

GOLDEN_DIR = Path(__file__).parent / "golden" / "expected"
GOLDENS = {
    path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(GOLDEN_DIR.glob("*.json"))
}
OPEN_WEBUI_VERSION = "0.12.4"

EXTRACTED_DOCUMENTS = sorted(d for d, g in GOLDENS.items() if "error" not in g)

COLLECTION_NAME_FROM_LATER_META = (
    "metadata key 'collection_name': ours has 'knowledge-golden', Open WebUI's chunks have no "
    "such key. Open WebUI 0.12.4 splits an upload before index_file sets file.meta.collection_name "
    "(to file-{id} after the upload, then to the knowledge id after the knowledge add), and the "
    "knowledge chunks inherit the file chunks' metadata; we build chunk metadata from the "
    "file.meta the migration reads afterwards, which has collection_name. Texts and every other "
    "key are equal (with the meta of upload time the chunks are identical)."
)

# (document, scenario, collection) -> why our chunks differ from Open WebUI's.
KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    (document, "fresh_upload", collection): COLLECTION_NAME_FROM_LATER_META
    for document in EXTRACTED_DOCUMENTS
    for collection in ("file_collection", "knowledge_collection")
}


def _param(values: tuple, case_id: str, reason: str | None):
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*values, id=case_id, marks=marks)


def chunk_cases():
    for document, golden in GOLDENS.items():
        for scenario in golden.get("scenarios", {}):
            for collection in ("file_collection", "knowledge_collection"):
                key = (document, scenario, collection)
                yield _param(key, "-".join(key), KNOWN_DIFFERENCES.get(key))


def scenario_cases():
    for document, golden in GOLDENS.items():
        for scenario in golden.get("scenarios", {}):
            yield pytest.param(document, scenario, id=f"{document}-{scenario}")


def settings_for(recorded: dict) -> RagSettings:
    """Our settings for the Open WebUI config values the golden run used."""
    assert recorded["rag.pdf_loader_mode"] == "page", "we only reproduce page mode"
    return resolve_rag_settings({}, {}).with_overrides(
        embedding_engine=recorded["rag.embedding_engine"],
        embedding_model=recorded["rag.embedding_model"],
        text_splitter=recorded["rag.text_splitter"],
        chunk_size=recorded["rag.chunk_size"],
        chunk_overlap=recorded["rag.chunk_overlap"],
        chunk_min_size_target=recorded["rag.chunk_min_size_target"],
        enable_markdown_header_text_splitter=recorded["rag.enable_markdown_header_text_splitter"],
        content_extraction_engine=recorded["rag.content_extraction_engine"],
        pdf_extract_images=recorded["rag.pdf_extract_images"],
    )


def source_file_for(document: str, scenario: str) -> tuple[SourceFile, bool]:
    """The SourceFile the migration would read for this scenario, and whether to re-extract.

    `upload*`: the sample deployment's row, text re-read from the upload. `stored_content`: the
    same row with `file.data.content` as Open WebUI stored it. `fresh_upload`: the row Open WebUI
    0.12.4 itself left after the upload and the knowledge add (its `meta` then has `file_hash`
    and `collection_name`), text re-read from the upload.
    """
    golden = GOLDENS[document]
    record = golden["file"]
    meta = record["meta"]
    data: dict = {"status": "completed"}
    reextract = True
    if scenario == "stored_content":
        data = {"status": "completed", "content": golden["scenarios"][scenario]["file_content"]}
        reextract = False
    elif scenario == "fresh_upload":
        meta = golden["scenarios"][scenario]["file_row_after_knowledge_add"]["meta"]
    file = SourceFile(
        id=record["id"],
        user_id=record["user_id"],
        filename=record["filename"],
        stored_path=f"{sample_data.CONTAINER_UPLOAD_DIR}/{record['id']}_{record['filename']}",
        content_type=meta["content_type"],
        meta=meta,
        data=data,
        content_hash_column=None,
        upload_path=sample_data.DOCUMENTS_DIR / document,
    )
    return file, reextract


def test_golden_corpus_covers_every_sample_document():
    documents = {
        path.name
        for path in sample_data.DOCUMENTS_DIR.iterdir()
        if path.suffix.lstrip(".") in sample_data.CONTENT_TYPES and path.name != "SOURCES.md"
    }
    assert set(GOLDENS) == documents
    assert {g["open_webui_version"] for g in GOLDENS.values()} == {OPEN_WEBUI_VERSION}


@pytest.mark.parametrize("document", sorted(GOLDENS))
def test_golden_file_record_is_the_sample_deployments(document):
    """The generator mirrors sample_data's ids and meta; they must not drift apart."""
    source = sample_data.DOCUMENTS_DIR / document
    row = sample_data._file_row(source, f"{sample_data.sample_file_id(document)}_{document}", 0)
    record = GOLDENS[document]["file"]
    assert (record["id"], record["user_id"], record["filename"]) == (row[0], row[1], row[3])
    assert record["meta"] == json.loads(row[6])
    assert GOLDENS[document].get("knowledge_collection_name", "knowledge-golden") == (
        "knowledge-golden"
    )


@pytest.mark.parametrize(("document", "scenario", "collection"), list(chunk_cases()))
def test_chunks_match_open_webui(document, scenario, collection):
    golden = GOLDENS[document]
    expected = golden["scenarios"][scenario][collection]
    file, reextract = source_file_for(document, scenario)
    settings = settings_for(golden["scenarios"][scenario]["settings"])
    assert settings.embedding_engine == ""
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL
    own = file_collection_name(file.id)
    knowledge = golden["knowledge_collection_name"]
    plan = plan_file(file, settings, [own, knowledge], reextract=reextract)
    chunks = plan.chunks_by_collection[own if collection == "file_collection" else knowledge]

    assert [c.text for c in chunks] == [e["text"] for e in expected]
    assert [c.metadata for c in chunks] == [e["metadata"] for e in expected]
    assert [c.position for c in chunks] == list(range(len(expected)))


@pytest.mark.parametrize(("document", "scenario"), list(scenario_cases()))
def test_extracted_text_and_hash_match_open_webui(document, scenario):
    """`file.data.content` (pages joined by a space) and its sha256, the chunks' `hash`."""
    expected = GOLDENS[document]["scenarios"][scenario]
    file, reextract = source_file_for(document, scenario)
    _, text = source_documents(file, reextract)
    plan = plan_file(file, settings_for(expected["settings"]), [file_collection_name(file.id)])
    assert text == expected["file_content"]
    assert plan.content_hash == expected["file_hash"]


@pytest.mark.parametrize("document", sorted(d for d, g in GOLDENS.items() if "error" in g))
def test_files_open_webui_refuses_are_refused(document):
    file, _ = source_file_for(document, "upload")
    with pytest.raises((UnsupportedFileType, LoaderError)):
        plan_file(file, resolve_rag_settings({}, {}), [file_collection_name(file.id)], True)


def file_row_cases():
    for document in sorted(GOLDENS):
        yield _param((document,), document, None)


@pytest.mark.parametrize("document", list(file_row_cases()))
def test_sample_file_row_matches_open_webui(document):
    """The sample deployment's `file.data` status/error/content and `file.hash` are what
    Open WebUI keeps after the upload (`error: None` counts as absent)."""
    golden = GOLDENS[document]
    source = sample_data.DOCUMENTS_DIR / document
    row = sample_data._file_row(source, f"{golden['file']['id']}_{document}", 0)
    content_hash, data = row[2], json.loads(row[5])
    if "error" in golden:
        expected_data = golden["error"]["file_data"]
        assert {k: v for k, v in data.items() if v is not None} == expected_data
        assert content_hash is None
        return
    upload = golden["scenarios"]["upload"]
    expected = {k: v for k, v in upload["file_row_after_upload"]["data"].items() if v is not None}
    if document not in sample_data.WITHOUT_STORED_CONTENT:
        expected["content"] = upload["file_content"]
    assert data == expected
    assert content_hash == upload["file_hash"]


def file_meta_cases():
    for document in EXTRACTED_DOCUMENTS:
        yield _param((document,), document, None)


@pytest.mark.parametrize("document", list(file_meta_cases()))
def test_sample_file_meta_matches_open_webui(document):
    """The sample deployment's `file.meta` is the one Open WebUI 0.12.4 keeps after uploading
    the file on its own (upload_file_handler's meta plus the `collection_name` index_file sets)."""
    expected = GOLDENS[document]["scenarios"]["fresh_upload"]["file_row_after_upload"]["meta"]
    assert GOLDENS[document]["file"]["meta"] == expected
