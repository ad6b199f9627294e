"""Unit tests for the pure pipeline: ids, metadata, loaders, splitting and per-file planning."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter

import pgvector_migration.sample_data as sample_data
from pgvector_migration.pipeline.ids import chunk_id_for, text_sha256
from pgvector_migration.pipeline.loaders import (
    LoaderError,
    UnsupportedFileType,
    detect_text_encoding,
    load_documents,
    loader_for,
)
from pgvector_migration.pipeline.metadata import (
    file_meta_fields,
    sanitize_text,
    source_document_metadata,
    stored_form,
)
from pgvector_migration.pipeline.planning import plan_file
from pgvector_migration.pipeline.records import (
    STANDALONE_PARTITION_KEY,
    Chunk,
    SourceFile,
    TextDocument,
)
from pgvector_migration.pipeline.splitting import (
    EmptyContentError,
    merge_to_target_size,
    split_documents,
)
from pgvector_migration.pipeline.text_source import TextOrigin, TextSource
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL
from pgvector_migration.settings import resolve_rag_settings

DOCUMENTS = Path(sample_data.__file__).parent / "documents"


def default_settings(**overrides):
    return resolve_rag_settings({}, {}).with_overrides(**overrides)


def source_file(content: str | None = None, **fields) -> SourceFile:
    values = {
        "id": "file-id-1",
        "user_id": "user-1",
        "filename": "notes.txt",
        "stored_path": None,
        "content_type": "text/plain",
        "meta": {"name": "notes.txt", "content_type": "text/plain", "size": 42},
        "data": {} if content is None else {"content": content},
        "content_hash_column": None,
    }
    values.update(fields)
    return SourceFile(**values)


def lines_without_blank_lines(count: int = 60) -> str:
    """Text the markdown header pass leaves untouched: no headers, blank lines or padding."""
    return "\n".join(
        f"Line {i}: the quick brown fox jumps over the lazy dog near the river bank."
        for i in range(count)
    )


# --- ids ----------------------------------------------------------------------------------


def test_chunk_id_is_deterministic_uuid5():
    first = chunk_id_for("file-a", "a", 0, "hello")
    assert first == chunk_id_for("file-a", "a", 0, "hello")
    assert uuid.UUID(first).version == 5


@pytest.mark.parametrize(
    "other",
    [
        ("knowledge-1", "a", 0, "hello"),
        ("file-a", "b", 0, "hello"),
        ("file-a", "a", 1, "hello"),
        ("file-a", "a", 0, "hello!"),
    ],
)
def test_chunk_id_differs_by_collection_file_position_and_text(other):
    assert chunk_id_for("file-a", "a", 0, "hello") != chunk_id_for(*other)


def test_text_sha256_is_sha256_of_utf8():
    assert text_sha256("héllo") == hashlib.sha256("héllo".encode()).hexdigest()


# --- records ------------------------------------------------------------------------------


def test_collection_names_for_standalone_and_knowledge_partitions():
    file = source_file("x")
    assert file.collection_names(STANDALONE_PARTITION_KEY) == ["file-file-id-1"]
    assert file.collection_names("kb-7") == ["file-file-id-1", "kb-7"]


def test_stored_content_only_accepts_strings():
    assert source_file("text").stored_content == "text"
    assert source_file(data={"content": None}).stored_content is None
    assert source_file(data={}).stored_content is None


def test_embedding_input_replaces_newlines_with_spaces():
    chunk = Chunk("id", "c", "f", 0, "a\nb\n\nc", {})
    assert chunk.embedding_input == "a b  c"


# --- metadata -----------------------------------------------------------------------------


def test_file_meta_fields_flattens_form_data_under_top_level_keys():
    meta = {
        "name": "top.txt",
        "size": 3,
        "content": "dropped",
        "data": {"name": "form.txt", "tags": ["x"], "pages": [1, 2], "origin": "upload"},
    }
    assert file_meta_fields(meta) == {
        "name": "top.txt",
        "size": 3,
        "tags": ["x"],
        "origin": "upload",
    }


def test_file_meta_fields_handles_missing_or_non_mapping_data():
    assert file_meta_fields(None) == {}
    assert file_meta_fields({"name": "a", "data": "not a mapping"}) == {"name": "a"}


def test_source_document_metadata_identity_fields_win_over_loader_fields():
    file = source_file("x", meta={"name": "meta-name", "collection_name": "old"})
    metadata = source_document_metadata(
        file, {"source": "/tmp/upload/path.txt", "page": 2, "documents": ["big"]}
    )
    assert metadata == {
        "name": "notes.txt",
        "collection_name": "old",
        "page": 2,
        "created_by": "user-1",
        "file_id": "file-id-1",
        "source": "notes.txt",
    }


def test_stored_form_drops_none_and_excluded_and_stringifies_containers():
    stored = stored_form(
        {
            "embedding_config": {"engine": "", "model": "m"},
            "tags": ["a", "b"],
            "created": dt.datetime(2024, 1, 2, 3, 4, 5),
            "page": 3,
            "flag": True,
            "nothing": None,
            "content": "excluded",
            "tables": [1],
            "title": "a\x00b",
        }
    )
    assert stored == {
        "embedding_config": "{'engine': '', 'model': 'm'}",
        "tags": "['a', 'b']",
        "created": "2024-01-02 03:04:05",
        "page": 3,
        "flag": True,
        "title": "ab",
    }


def test_sanitize_text_removes_nul_and_lone_surrogates():
    assert sanitize_text("a\x00b") == "ab"
    assert sanitize_text("x\ud800y\udfffz") == "xyz"
    assert sanitize_text("\x00\ud83d") == ""


def test_sanitize_text_keeps_ordinary_and_astral_text():
    text = "naïve — “quoted” 😀 中文"
    assert sanitize_text(text) == text


# --- loaders ------------------------------------------------------------------------------


def test_pdf_loader_gives_one_document_per_page():
    documents = load_documents(DOCUMENTS / "constitution.pdf", "constitution.pdf", None)
    assert len(documents) == 4
    assert [d.metadata["page"] for d in documents] == [0, 1, 2, 3]
    assert [d.metadata["page_label"] for d in documents] == ["1", "2", "3", "4"]
    assert all(d.metadata["total_pages"] == 4 for d in documents)
    assert all(d.text.strip() for d in documents)
    assert "We the People" in documents[0].text
    assert documents[0].metadata["creationdate"] == "2024-01-01T00:00:00+00:00"


def test_csv_loader_gives_one_document_per_row():
    documents = load_documents(DOCUMENTS / "aesop_fables.csv", "aesop_fables.csv", "text/csv")
    assert len(documents) == 12
    assert [d.metadata["row"] for d in documents] == list(range(12))
    first_lines = documents[0].text.split("\n")
    assert first_lines[0] == "title: The Fox and the Grapes"
    assert first_lines[1] == "moral: It is easy to despise what you cannot get."
    assert first_lines[2].startswith("text: A hungry Fox")
    for document in documents:
        keys = [line.split(": ", 1)[0] for line in document.text.split("\n")]
        assert keys == ["title", "moral", "text"]


def test_cp1252_text_decodes_with_curly_quotes_intact():
    raw = (DOCUMENTS / "federalist_10.txt").read_bytes()
    assert detect_text_encoding(raw).lower().replace("-", "") in ("windows1252", "cp1252")
    (document,) = load_documents(DOCUMENTS / "federalist_10.txt", "federalist_10.txt", None)
    assert "“Publius”" in document.text
    assert "THE FEDERALIST No. 10 — The Same Subject" in document.text
    assert "\r" not in document.text
    assert "â€" not in document.text


def test_utf8_detection():
    assert detect_text_encoding("naïve".encode()) == "utf-8"
    assert detect_text_encoding(b"") == "utf-8"


def test_html_loader_has_title_and_text():
    (document,) = load_documents(DOCUMENTS / "walden.html", "walden.html", "text/html")
    assert document.metadata["title"] == "Walden; or, Life in the Woods — Economy (opening)"
    assert "quiet desperation" in document.text
    assert "<p>" not in document.text


def test_docx_loader_reads_paragraphs():
    (document,) = load_documents(
        DOCUMENTS / "pride_and_prejudice.docx", "pride_and_prejudice.docx", None
    )
    assert "It is a truth universally acknowledged" in document.text


def test_broken_pdf_raises_loader_error_naming_the_file():
    with pytest.raises(LoaderError, match="broken_report.pdf"):
        load_documents(DOCUMENTS / "broken_report.pdf", "broken_report.pdf", "application/pdf")


def test_loader_for_refuses_images_and_videos_but_not_unstructured_types():
    with pytest.raises(UnsupportedFileType, match="image/png"):
        loader_for("moon_photo.png", "image/png")
    with pytest.raises(UnsupportedFileType, match="video/mp4"):
        loader_for("clip.mp4", "video/mp4")
    assert loader_for("sheet.xlsx", None) is not None


def test_source_code_is_read_as_text():
    (document,) = load_documents(DOCUMENTS / "notes.py", "notes.py", "text/x-python")
    assert document.text == (DOCUMENTS / "notes.py").read_text(encoding="utf-8")


# --- splitting ----------------------------------------------------------------------------


def test_start_index_is_offset_in_source_text_without_markdown_pass():
    text = (DOCUMENTS / "gettysburg_and_inaugural.txt").read_text(encoding="utf-8")
    settings = default_settings(enable_markdown_header_text_splitter=False)
    chunks = split_documents([TextDocument(text, {"source": "g.txt"})], settings)
    assert len(chunks) > 3
    starts = [c.metadata["start_index"] for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert text[start : start + len(chunk.text)] == chunk.text
        assert len(chunk.text) <= settings.chunk_size
        assert chunk.metadata["source"] == "g.txt"


def test_start_index_is_offset_in_source_text_with_default_settings():
    text = lines_without_blank_lines()
    settings = default_settings()
    chunks = split_documents([TextDocument(text, {"source": "lines.txt"})], settings)
    assert len(chunks) >= 3
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert text[start : start + len(chunk.text)] == chunk.text
        assert len(chunk.text) <= 1000
    # consecutive chunks overlap (CHUNK_OVERLAP=100)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.metadata["start_index"] < before.metadata["start_index"] + len(before.text)


def test_start_index_with_markdown_pass_is_relative_to_the_header_section():
    """Open WebUI runs the header pass first, so offsets are within each header section."""
    text = (DOCUMENTS / "alice_chapter_one.md").read_text(encoding="utf-8")
    chunks = split_documents([TextDocument(text, {"source": "alice.md"})], default_settings())
    sections = [
        piece.page_content
        for piece in MarkdownHeaderTextSplitter(
            headers_to_split_on=[("#" * n, f"Header {n}") for n in range(1, 7)],
            strip_headers=False,
        ).split_text(text)
    ]
    for chunk in chunks:
        start = chunk.metadata["start_index"]
        assert any(s[start : start + len(chunk.text)] == chunk.text for s in sections)
        assert len(chunk.text) <= 1000
        if chunk.text.startswith("#"):
            assert start == 0


def test_chunks_respect_a_small_chunk_size():
    text = (DOCUMENTS / "gettysburg_and_inaugural.txt").read_text(encoding="utf-8")
    settings = default_settings(chunk_size=200, chunk_overlap=20)
    chunks = split_documents([TextDocument(text, {})], settings)
    assert len(chunks) > 20
    assert max(len(c.text) for c in chunks) <= 200


def test_markdown_pass_splits_at_headers_and_keeps_header_lines():
    text = "# Title\nintro line\n## Part A\nalpha text\n## Part B\nbeta text"
    chunks = split_documents([TextDocument(text, {"source": "m.md"})], default_settings())
    assert [c.text for c in chunks] == [
        "# Title\nintro line",
        "## Part A\nalpha text",
        "## Part B\nbeta text",
    ]
    assert all(c.metadata == {"source": "m.md", "start_index": 0} for c in chunks)


def test_without_markdown_pass_headers_do_not_split():
    text = "# Title\nintro line\n## Part A\nalpha text\n## Part B\nbeta text"
    settings = default_settings(enable_markdown_header_text_splitter=False)
    chunks = split_documents([TextDocument(text, {})], settings)
    assert [c.text for c in chunks] == [text]


def test_min_size_target_merges_small_header_sections():
    text = "# Title\nintro line\n## Part A\nalpha text\n## Part B\nbeta text"
    settings = default_settings(chunk_min_size_target=200)
    chunks = split_documents([TextDocument(text, {"source": "m.md"})], settings)
    assert [c.text for c in chunks] == [
        "# Title\nintro line\n\n## Part A\nalpha text\n\n## Part B\nbeta text"
    ]


def test_split_documents_keeps_documents_apart():
    documents = [
        TextDocument("page one text", {"page": 0}),
        TextDocument("page two text", {"page": 1}),
    ]
    chunks = split_documents(documents, default_settings())
    assert [(c.text, c.metadata["page"]) for c in chunks] == [
        ("page one text", 0),
        ("page two text", 1),
    ]


# --- merge_to_target_size -----------------------------------------------------------------


def doc(text: str, **metadata) -> Document:
    return Document(page_content=text, metadata={"source": "s", **metadata})


def test_merge_joins_small_neighbours_with_blank_line():
    merged = merge_to_target_size([doc("aaaa"), doc("bbbb"), doc("cccc")], 20, 100, len)
    assert [d.page_content for d in merged] == ["aaaa\n\nbbbb\n\ncccc"]


def test_merge_disabled_when_min_size_is_zero():
    documents = [doc("a"), doc("b")]
    assert merge_to_target_size(documents, 0, 100, len) is documents


def test_merge_never_exceeds_max_size():
    merged = merge_to_target_size([doc("a" * 8), doc("b" * 8), doc("c" * 8)], 20, 18, len)
    assert [d.page_content for d in merged] == ["a" * 8 + "\n\n" + "b" * 8, "c" * 8]
    assert all(len(d.page_content) <= 18 for d in merged)


def test_merge_stops_growing_once_min_size_is_reached():
    merged = merge_to_target_size([doc("a" * 10), doc("b" * 10), doc("c" * 10)], 10, 100, len)
    assert [d.page_content for d in merged] == ["a" * 10, "b" * 10, "c" * 10]


def test_merge_backward_for_a_trailing_small_chunk():
    merged = merge_to_target_size([doc("a" * 30), doc("b")], 10, 100, len)
    assert [d.page_content for d in merged] == ["a" * 30 + "\n\nb"]


def test_merge_never_crosses_file_ids():
    merged = merge_to_target_size(
        [doc("aa", file_id="1"), doc("bb", file_id="2"), doc("cc", file_id="2")], 20, 100, len
    )
    assert [(d.page_content, d.metadata["file_id"]) for d in merged] == [
        ("aa", "1"),
        ("bb\n\ncc", "2"),
    ]


def test_merge_never_crosses_sources():
    merged = merge_to_target_size(
        [
            Document(page_content="aa", metadata={"source": "x"}),
            Document(page_content="bb", metadata={"source": "y"}),
        ],
        20,
        100,
        len,
    )
    assert [d.page_content for d in merged] == ["aa", "bb"]


def test_merge_allowed_when_one_side_has_no_file_id():
    merged = merge_to_target_size([doc("aa", file_id="1"), doc("bb")], 20, 100, len)
    assert [d.page_content for d in merged] == ["aa\n\nbb"]
    assert merged[0].metadata["file_id"] == "1"


def test_merge_does_not_mutate_its_input():
    documents = [doc("aa"), doc("bb")]
    merge_to_target_size(documents, 20, 100, len)
    assert [d.page_content for d in documents] == ["aa", "bb"]


# --- planning -----------------------------------------------------------------------------


def test_plan_file_fills_file_and_knowledge_collections():
    content = lines_without_blank_lines()
    file = source_file(content)
    plan = plan_file(file, default_settings(), ["file-file-id-1", "kb-1"])

    assert set(plan.chunks_by_collection) == {"file-file-id-1", "kb-1"}
    assert plan.file_id == "file-id-1"
    assert plan.content_hash == hashlib.sha256(content.encode("utf-8")).hexdigest()
    file_chunks = plan.chunks_by_collection["file-file-id-1"]
    knowledge_chunks = plan.chunks_by_collection["kb-1"]
    assert len(file_chunks) >= 3
    assert plan.chunk_count == len(file_chunks) + len(knowledge_chunks)

    for name, chunks in plan.chunks_by_collection.items():
        assert [c.position for c in chunks] == list(range(len(chunks)))
        assert all(c.collection_name == name and c.file_id == "file-id-1" for c in chunks)
        for chunk in chunks:
            metadata = chunk.metadata
            assert metadata["file_id"] == "file-id-1"
            assert metadata["name"] == "notes.txt"
            assert metadata["source"] == "notes.txt"
            assert metadata["created_by"] == "user-1"
            assert metadata["hash"] == plan.content_hash
            assert metadata["embedding_config"] == str(
                {"engine": "", "model": DEFAULT_EMBEDDING_MODEL}
            )
            assert metadata["size"] == 42

    all_ids = [c.id for chunks in plan.chunks_by_collection.values() for c in chunks]
    assert len(set(all_ids)) == len(all_ids)

    # The file collection's offsets are in the content.
    for chunk in file_chunks:
        start = chunk.metadata["start_index"]
        assert content[start : start + len(chunk.text)] == chunk.text
    assert any(c.metadata["start_index"] > 0 for c in file_chunks)

    # Knowledge chunks are re-split from the file chunks: offsets are within the file chunk.
    assert len(knowledge_chunks) == len(file_chunks)
    for file_chunk, knowledge_chunk in zip(file_chunks, knowledge_chunks, strict=True):
        start = knowledge_chunk.metadata["start_index"]
        assert start == 0
        assert file_chunk.text[start : start + len(knowledge_chunk.text)] == knowledge_chunk.text


def test_plan_file_is_deterministic():
    file = source_file(lines_without_blank_lines())
    first = plan_file(file, default_settings(), ["file-file-id-1", "kb-1"])
    second = plan_file(file, default_settings(), ["file-file-id-1", "kb-1"])
    assert first == second


def test_plan_file_flattens_meta_data_into_chunk_metadata():
    file = source_file(
        "short text",
        meta={"name": "notes.txt", "data": {"tags": ["t1"], "content": "not stored"}},
    )
    (chunk,) = plan_file(file, default_settings(), ["file-file-id-1"]).chunks_by_collection[
        "file-file-id-1"
    ]
    assert chunk.metadata["tags"] == "['t1']"
    assert "content" not in chunk.metadata
    assert "data" not in chunk.metadata


def test_plan_file_sanitizes_chunk_text_but_hashes_the_content():
    content = "before\x00after"
    plan = plan_file(source_file(content), default_settings(), ["file-file-id-1"])
    (chunk,) = plan.chunks_by_collection["file-file-id-1"]
    assert chunk.text == "beforeafter"
    assert chunk.metadata["hash"] == hashlib.sha256(content.encode()).hexdigest()


@pytest.mark.parametrize("content", ["", "   \n\n  "])
def test_plan_file_refuses_empty_content(content):
    with pytest.raises(EmptyContentError, match="file-id-1"):
        plan_file(source_file(content), default_settings(), ["file-file-id-1"])


def test_plan_file_without_content_or_upload_raises_loader_error():
    file = source_file(None, upload_problem="upload uploads/x.txt is missing")
    with pytest.raises(LoaderError, match="upload uploads/x.txt is missing"):
        plan_file(file, default_settings(), ["file-file-id-1"])
    with pytest.raises(LoaderError, match="no extracted content"):
        plan_file(source_file(None), default_settings(), ["file-file-id-1"])


def test_plan_file_refuses_an_image_without_content():
    file = source_file(
        None,
        filename="moon_photo.png",
        content_type="image/png",
        upload_path=DOCUMENTS / "moon_photo.png",
    )
    with pytest.raises(UnsupportedFileType, match="image/png"):
        plan_file(file, default_settings(), ["file-file-id-1"])


def test_plan_file_reads_the_upload_when_no_content_was_stored():
    file = source_file(
        None,
        filename="federalist_10.txt",
        upload_path=DOCUMENTS / "federalist_10.txt",
    )
    plan = plan_file(file, default_settings(), ["file-file-id-1"])
    (loaded,) = load_documents(DOCUMENTS / "federalist_10.txt", "federalist_10.txt", None)
    assert plan.content_hash == hashlib.sha256(loaded.text.encode()).hexdigest()
    chunks = plan.chunks_by_collection["file-file-id-1"]
    assert chunks
    assert all(c.metadata["source"] == "federalist_10.txt" for c in chunks)
    assert any("“Publius”" in c.text for c in chunks)


def test_plan_file_reads_the_upload_before_the_stored_text_unless_asked():
    file = source_file(
        "stored text",
        filename="federalist_10.txt",
        upload_path=DOCUMENTS / "federalist_10.txt",
    )
    plan = plan_file(file, default_settings(), ["file-file-id-1"])
    assert plan.origin is TextOrigin.UPLOAD and plan.fallback_reason is None
    assert len(plan.chunks_by_collection["file-file-id-1"]) > 1
    stored = plan_file(file, default_settings(), ["file-file-id-1"], TextSource.STORED)
    assert [c.text for c in stored.chunks_by_collection["file-file-id-1"]] == ["stored text"]
    assert stored.origin is TextOrigin.STORED
    assert stored.settings_fingerprint != plan.settings_fingerprint


def test_plan_file_falls_back_to_the_stored_text_and_says_why(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    file = source_file(
        "what Open WebUI stored",
        filename="broken.pdf",
        content_type="application/pdf",
        upload_path=broken,
    )
    plan = plan_file(file, default_settings(), ["file-file-id-1"])
    assert plan.origin is TextOrigin.STORED
    assert "broken.pdf" in plan.fallback_reason
    chunks = plan.chunks_by_collection["file-file-id-1"]
    assert [c.text for c in chunks] == ["what Open WebUI stored"]
    with pytest.raises(LoaderError, match="re-extraction needs the upload"):
        plan_file(file, default_settings(), ["file-file-id-1"], TextSource.UPLOAD_ONLY)
    missing = source_file("stored", filename="gone.txt", upload_path=None)
    assert plan_file(missing, default_settings(), ["file-file-id-1"]).fallback_reason


def test_a_file_open_webui_refused_as_empty_stays_refused(tmp_path):
    """Open WebUI keeps `data.content` empty for an upload without text (a scanned page)."""
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n  ")
    file = source_file("", filename="blank.txt", upload_path=blank)
    for text_source in TextSource:
        with pytest.raises(EmptyContentError):
            plan_file(file, default_settings(), ["file-file-id-1"], text_source)


def test_upload_fingerprint_follows_the_upload_bytes(tmp_path):
    upload = tmp_path / "notes.txt"
    upload.write_text("first version of the notes")
    file = source_file(None, filename="notes.txt", upload_path=upload)
    before = plan_file(file, default_settings(), ["file-file-id-1"]).settings_fingerprint
    upload.write_text("second version of the notes")
    after = plan_file(file, default_settings(), ["file-file-id-1"]).settings_fingerprint
    assert before != after


def test_plan_file_pdf_upload_hash_is_of_pages_joined_by_space():
    file = source_file(
        None,
        filename="constitution.pdf",
        content_type="application/pdf",
        upload_path=DOCUMENTS / "constitution.pdf",
    )
    plan = plan_file(file, default_settings(), ["file-file-id-1"])
    pages = load_documents(DOCUMENTS / "constitution.pdf", "constitution.pdf", None)
    joined = " ".join(p.text for p in pages)
    assert plan.content_hash == hashlib.sha256(joined.encode()).hexdigest()
    chunk_pages = {c.metadata["page"] for c in plan.chunks_by_collection["file-file-id-1"]}
    assert chunk_pages == {0, 1, 2, 3}
