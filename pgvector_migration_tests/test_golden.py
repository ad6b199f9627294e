"""Our chunk plan against the golden corpus: what Open WebUI 0.12.4's own code stores in
pgvector for each sample document (see golden/README.md; regenerate with
golden/generate_golden.py).

Chunk ids are ours (Open WebUI uses random uuid4), so only texts, order and metadata are compared.
A known difference is an `xfail(strict=True)` naming it, so fixing it turns the case red until the
mark is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

import pgvector_migration.sample_data as sample_data
from pgvector_migration.pipeline.loaders import LoaderError, UnsupportedFileType, load_documents
from pgvector_migration.pipeline.metadata import stored_form
from pgvector_migration.pipeline.planning import plan_file, source_documents
from pgvector_migration.pipeline.records import SourceFile, file_collection_name
from pgvector_migration.pipeline.text_source import TextSource
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.settings import RagSettings, resolve_rag_settings
from pgvector_migration_tests.golden.generate_golden import (
    GOLDEN_CONTENT_TYPES,
    UPLOAD_DIR_PLACEHOLDER,
    UPLOAD_MTIME,
)

GOLDEN_DIR = Path(__file__).parent / "golden" / "expected"
# Golden-only documents (not in the demo deployment): the types Open WebUI gives `unstructured`.
GOLDEN_DOCUMENTS_DIR = Path(__file__).parent / "golden" / "documents"
GOLDENS = {
    path.name.removesuffix(".json"): json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(GOLDEN_DIR.glob("*.json"))
}
OPEN_WEBUI_VERSION = "0.12.4"

EXTRACTED_DOCUMENTS = sorted(d for d, g in GOLDENS.items() if "error" not in g)
SAMPLE_DOCUMENTS = sorted(d for d in GOLDENS if (sample_data.DOCUMENTS_DIR / d).exists())
GOLDEN_ONLY_DOCUMENTS = sorted(set(GOLDENS) - set(SAMPLE_DOCUMENTS))

COLLECTION_NAME_OF_REINDEX = (
    "metadata key 'collection_name': Open WebUI's chunks here have it, ours do not. This "
    "scenario is Open WebUI re-indexing a file that has neither chunks nor stored text: it reads "
    "the upload with file.meta as it is by then, holding the collection_name index_file set "
    "after the upload. The migration reproduces the rows the upload itself wrote, split before "
    "collection_name existed (the fresh_upload scenario, equal in every key). Texts and every "
    "other key are equal."
)

# (document, scenario, collection) -> why our chunks differ from Open WebUI's.
KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    (document, scenario, collection): COLLECTION_NAME_OF_REINDEX
    for document in EXTRACTED_DOCUMENTS
    if "collection_name" in GOLDENS[document]["file"]["meta"]
    for scenario in GOLDENS[document].get("scenarios", {})
    if scenario.split(":")[0] == "upload"
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


@pytest.fixture(scope="module")
def golden_uploads(tmp_path_factory) -> Path:
    """The golden-only documents under their stored names (`{id}_{name}`) with the mtime the
    generator gave them: unstructured's element ids hash the name, `last_modified` is the mtime."""
    uploads = tmp_path_factory.mktemp("uploads")
    for document in GOLDEN_ONLY_DOCUMENTS:
        stored = uploads / f"{GOLDENS[document]['file']['id']}_{document}"
        shutil.copyfile(GOLDEN_DOCUMENTS_DIR / document, stored)
        os.utime(stored, (UPLOAD_MTIME, UPLOAD_MTIME))
    return uploads


@pytest.fixture(autouse=True)
def utc_local_time(monkeypatch):
    """unstructured writes `last_modified` in local time; the golden run was in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def upload_path_for(document: str, uploads: Path) -> Path:
    if document in GOLDEN_ONLY_DOCUMENTS:
        return uploads / f"{GOLDENS[document]['file']['id']}_{document}"
    return sample_data.DOCUMENTS_DIR / document


def expected_rows(document: str, scenario: str, collection: str) -> list[dict]:
    """The recorded rows, with the generator's upload-folder placeholder replaced by the folder
    Open WebUI's container keeps uploads in (where the file row's `path` points)."""
    rows = GOLDENS[document]["scenarios"][scenario][collection]
    text = json.dumps(rows).replace(UPLOAD_DIR_PLACEHOLDER, sample_data.CONTAINER_UPLOAD_DIR)
    return json.loads(text)


def source_file_for(
    document: str, scenario: str, uploads: Path | None = None
) -> tuple[SourceFile, bool]:
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
    text_source = TextSource.UPLOAD_ONLY
    if scenario == "stored_content":
        data = {"status": "completed", "content": golden["scenarios"][scenario]["file_content"]}
        text_source = TextSource.STORED
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
        upload_path=upload_path_for(document, uploads or GOLDEN_DOCUMENTS_DIR),
    )
    return file, text_source


def test_golden_corpus_covers_every_sample_and_golden_document():
    documents = {
        path.name
        for path in sample_data.DOCUMENTS_DIR.iterdir()
        if path.suffix.lstrip(".") in sample_data.CONTENT_TYPES and path.name != "SOURCES.md"
    }
    golden_only = {
        path.name
        for path in GOLDEN_DOCUMENTS_DIR.iterdir()
        if path.suffix.lstrip(".") in GOLDEN_CONTENT_TYPES
    }
    assert set(SAMPLE_DOCUMENTS) == documents
    assert set(GOLDEN_ONLY_DOCUMENTS) == golden_only
    assert {path.rsplit(".", 1)[-1] for path in golden_only} == set(GOLDEN_CONTENT_TYPES)
    assert {g["open_webui_version"] for g in GOLDENS.values()} == {OPEN_WEBUI_VERSION}


@pytest.mark.parametrize("document", GOLDEN_ONLY_DOCUMENTS)
def test_golden_only_file_record_describes_the_document(document):
    """The generator's file row for a golden-only document: sample_data's id scheme and meta."""
    source = GOLDEN_DOCUMENTS_DIR / document
    record = GOLDENS[document]["file"]
    file_id = sample_data.sample_file_id(document)
    assert (record["id"], record["user_id"], record["filename"]) == (
        file_id,
        sample_data.USER_ID,
        document,
    )
    assert record["meta"] == {
        "name": document,
        "content_type": GOLDEN_CONTENT_TYPES[source.suffix.lstrip(".")],
        "size": source.stat().st_size,
        "data": {},
        "collection_name": f"file-{file_id}",
        "file_hash": hashlib.sha256(source.read_bytes()).hexdigest(),
    }


@pytest.mark.parametrize("document", SAMPLE_DOCUMENTS)
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
def test_chunks_match_open_webui(document, scenario, collection, golden_uploads):
    golden = GOLDENS[document]
    expected = expected_rows(document, scenario, collection)
    file, text_source = source_file_for(document, scenario, golden_uploads)
    settings = settings_for(golden["scenarios"][scenario]["settings"])
    assert settings.embedding_engine == ""
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL
    own = file_collection_name(file.id)
    knowledge = golden["knowledge_collection_name"]
    plan = plan_file(file, settings, [own, knowledge], text_source)
    chunks = plan.chunks_by_collection[own if collection == "file_collection" else knowledge]

    assert [c.text for c in chunks] == [e["text"] for e in expected]
    assert [c.metadata for c in chunks] == [e["metadata"] for e in expected]
    assert [c.position for c in chunks] == list(range(len(expected)))


@pytest.mark.parametrize(("document", "scenario"), list(scenario_cases()))
def test_extracted_text_and_hash_match_open_webui(document, scenario, golden_uploads):
    """`file.data.content` (pages joined by a space) and its sha256, the chunks' `hash`."""
    expected = GOLDENS[document]["scenarios"][scenario]
    file, text_source = source_file_for(document, scenario, golden_uploads)
    text = source_documents(file, text_source).text
    settings = settings_for(expected["settings"])
    plan = plan_file(file, settings, [file_collection_name(file.id)], text_source)
    assert text == expected["file_content"]
    assert plan.content_hash == expected["file_hash"]


@pytest.mark.parametrize("document", sorted(d for d, g in GOLDENS.items() if "error" in g))
def test_files_open_webui_refuses_are_refused(document):
    file, _ = source_file_for(document, "upload")
    with pytest.raises((UnsupportedFileType, LoaderError)):
        plan_file(
            file,
            resolve_rag_settings({}, {}),
            [file_collection_name(file.id)],
            TextSource.UPLOAD_ONLY,
        )


def file_row_cases():
    for document in SAMPLE_DOCUMENTS:
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
    for document in sorted(set(EXTRACTED_DOCUMENTS) & set(SAMPLE_DOCUMENTS)):
        yield _param((document,), document, None)


@pytest.mark.parametrize("document", list(file_meta_cases()))
def test_sample_file_meta_matches_open_webui(document):
    """The sample deployment's `file.meta` is the one Open WebUI 0.12.4 keeps after uploading
    the file on its own (upload_file_handler's meta plus the `collection_name` index_file sets)."""
    expected = GOLDENS[document]["scenarios"]["fresh_upload"]["file_row_after_upload"]["meta"]
    assert GOLDENS[document]["file"]["meta"] == expected


def test_rst_elements_name_the_stored_folder(golden_uploads):
    """Given the file row's path, the .rst element documents carry exactly the element metadata
    Open WebUI's loader gave them (the file collection's chunks hold it besides the split keys)."""
    document = "gettysburg_and_inaugural.rst"
    file, _ = source_file_for(document, "upload", golden_uploads)
    documents = load_documents(file.upload_path, file.filename, file.content_type, file.stored_path)
    recorded = {
        row["metadata"]["element_id"]: row["metadata"]
        for row in expected_rows(document, "upload", "file_collection")
    }
    assert [d.metadata["element_id"] for d in documents] == list(recorded)
    for loaded in documents:
        metadata = stored_form(loaded.metadata)
        expected = recorded[metadata["element_id"]]
        assert {k: v for k, v in metadata.items() if k != "source"} == {
            k: expected[k] for k in metadata if k != "source"
        }
        assert metadata["file_directory"] == sample_data.CONTAINER_UPLOAD_DIR
