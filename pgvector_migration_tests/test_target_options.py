"""Open WebUI's target options on the real (embedded) PostgreSQL + pgvector: halfvec columns
(PGVECTOR_USE_HALFVEC) and pgcrypto-encrypted text and metadata (PGVECTOR_PGCRYPTO with
PGVECTOR_PGCRYPTO_KEY), written, read back, indexed and refused when they do not match."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from pgvector_migration.pipeline.completeness import WrittenRecord
from pgvector_migration.pipeline.records import Chunk, WriteUnit
from pgvector_migration.resources.vector_index import index_options, rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError

KEY = "s3cret-pgcrypto-key-Ω"
WRONG_KEY = "not-the-key-0f-this-table"
EMBEDDING_CONFIG = str({"engine": "openai", "model": "text-embedding-3-large"})


@pytest.fixture(autouse=True)
def no_openwebui_settings(monkeypatch):
    """Only what a test sets: no PGVECTOR_* from the environment running the tests."""
    for name in (
        "PGVECTOR_DB_URL",
        "DATABASE_URL",
        "PGVECTOR_USE_HALFVEC",
        "PGVECTOR_PGCRYPTO",
        "PGVECTOR_PGCRYPTO_KEY",
        "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH",
        "PGVECTOR_INDEX_METHOD",
        "PGVECTOR_IVFFLAT_LISTS",
        "PGVECTOR_HNSW_M",
        "PGVECTOR_HNSW_EF_CONSTRUCTION",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pgcrypto_database(fresh_database) -> str:
    url = fresh_database("crypto")
    with psycopg.connect(url) as connection:
        available = connection.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'"
        ).fetchone()
    # A failure, not a skip: the wheel ships no pgcrypto, `make install` builds it, and a run
    # that quietly skipped these tests would claim PGVECTOR_PGCRYPTO support it never checked.
    if not available:
        pytest.fail(
            "the embedded PostgreSQL has no pgcrypto extension: run "
            "`scripts/build_pgcrypto.sh .venv/bin/python` (`make install` runs it)"
        )
    return url


def store(url: str, **fields) -> PgVectorResource:
    return PgVectorResource(database_url=url, build_index_concurrently=False, **fields)


def make_unit(collection: str, file_id: str, texts: list[str], **extra_metadata) -> WriteUnit:
    chunks = [
        Chunk(
            id=f"{collection}:{file_id}:{position}",
            collection_name=collection,
            file_id=file_id,
            position=position,
            text=text,
            metadata={
                "name": "Grüße.md",
                "source": "Grüße.md",
                "file_id": file_id,
                "hash": f"hash-{file_id}",
                "start_index": position * 100,
                "embedding_config": EMBEDDING_CONFIG,
                **extra_metadata,
            },
        )
        for position, text in enumerate(texts)
    ]
    return WriteUnit(collection, file_id, file_id, f"hash-{file_id}", "settings", chunks)


def random_vectors(count: int, dimension: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    return list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def write(vector_store: PgVectorResource, unit: WriteUnit, vectors) -> None:
    record = WrittenRecord(unit.content_hash, "settings", "text-embedding-3-large", len(vectors))
    with vector_store.connect(with_vectors=True) as connection:
        vector_store.replace_unit(connection, unit, vectors, record)


def index_definitions(url: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        return dict(
            connection.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'document_chunk'"
            ).fetchall()
        )


def messages_of(error: BaseException) -> str:
    """Every message an error and its causes carry, server details included."""
    parts = []
    while error is not None:
        parts.append(str(error))
        if isinstance(error, psycopg.Error):
            diag = error.diag
            parts += [diag.message_detail or "", diag.message_hint or "", diag.context or ""]
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


# --- duplicates ----------------------------------------------------------------------------


def test_equal_chunks_open_webui_writes_are_no_duplicates_but_a_second_copy_is(fresh_database):
    """Two equal file chunks re-split into a knowledge collection give two rows with the same
    text and metadata (start_index 0 both); Open WebUI writes them so, and so do we."""
    url = fresh_database()
    vector_store = store(url, vector_length=8)
    vector_store.ensure_table(8)
    vector_store.state()
    unit = make_unit("knowledge-1", "file-a", ["Chapter 1", "Chapter 1", "other"])
    equal = [replace(chunk, metadata={**chunk.metadata, "start_index": 0}) for chunk in unit.chunks]
    write(vector_store, replace(unit, chunks=equal), random_vectors(3, 8))
    assert vector_store.duplicate_chunks() == []

    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO document_chunk SELECT 'copy', vector, collection_name, text, "
            'vmetadata || \'{"embedding_config": "other"}\' FROM document_chunk '
            "WHERE id = %s",
            (equal[2].id,),
        )
    assert vector_store.duplicate_chunks() == [("knowledge-1", "file-a", 2, 4, 3)]


# --- halfvec -------------------------------------------------------------------------------


def test_halfvec_table_written_read_back_and_indexed(fresh_database):
    url = fresh_database()
    vector_store = store(url, use_halfvec=True, vector_length=2048)
    vector_store.ensure_table(2048)
    table = vector_store.describe_table()
    assert (table.vector_type, table.dimension) == ("halfvec", 2048)
    assert (table.text_type, table.metadata_type) == ("text", "jsonb")
    vector_store.state()

    unit = make_unit("knowledge-1", "file-a", ["one", "two", "three"])
    vectors = random_vectors(3, 2048)
    write(vector_store, unit, vectors)

    with psycopg.connect(url) as connection:
        register_vector(connection)
        stored = connection.execute(
            "SELECT id, vector, vector::text FROM document_chunk ORDER BY id"
        ).fetchall()
        # What PostgreSQL itself makes of the float values Open WebUI sends as text.
        from_text = [
            connection.execute(
                "SELECT %s::halfvec(2048)", ("[" + ",".join(map(repr, map(float, v))) + "]",)
            ).fetchone()[0]
            for v in vectors
        ]
    assert [row[0] for row in stored] == [chunk.id for chunk in unit.chunks]
    for (_, halfvec, _), vector, server_rounded in zip(stored, vectors, from_text, strict=True):
        assert isinstance(halfvec, HalfVector)
        assert halfvec == server_rounded
        assert np.array_equal(halfvec.to_numpy(), vector.astype(np.float16))
        assert np.allclose(halfvec.to_numpy().astype(np.float32), vector, atol=1e-3, rtol=1e-3)

    assert vector_store.check_compatible(2048).vector_type == "halfvec"
    assert vector_store.dimension_mismatches() == (2048, [])
    present = vector_store.present_rows(["knowledge-1"])
    assert present[("knowledge-1", "file-a")].count == 3
    assert present[("knowledge-1", "file-a")].embedding_models == {"text-embedding-3-large"}

    build = rebuild_vector_index(vector_store)
    assert build.method == "hnsw" and build.rows == 3
    assert build.options == "WITH (m = 16, ef_construction = 64)"
    indexes = index_definitions(url)
    assert "USING hnsw (vector halfvec_cosine_ops)" in indexes["idx_document_chunk_vector"]
    assert "idx_document_chunk_text_search" in indexes

    with psycopg.connect(url) as connection:
        register_vector(connection)
        nearest = connection.execute(
            "SELECT id FROM document_chunk ORDER BY vector <=> %s LIMIT 1",
            (HalfVector(vectors[1]),),
        ).fetchone()[0]
    assert nearest == unit.chunks[1].id


def test_halfvec_index_method_follows_open_webui(monkeypatch):
    vector_store = PgVectorResource()
    assert index_options(vector_store, 0, halfvec=True)[0] == "hnsw"
    assert index_options(vector_store, 5000, halfvec=False) == ("ivfflat", "WITH (lists = 5)")
    monkeypatch.setenv("PGVECTOR_USE_HALFVEC", "True")
    assert vector_store.resolved_use_halfvec()
    assert index_options(vector_store, 0)[0] == "hnsw"
    monkeypatch.setenv("PGVECTOR_INDEX_METHOD", "ivfflat")
    assert index_options(vector_store, 0, halfvec=True) == ("ivfflat", "WITH (lists = 1)")
    monkeypatch.setenv("PGVECTOR_USE_HALFVEC", "1")  # Open WebUI only takes "true"
    assert not vector_store.resolved_use_halfvec()


def test_vector_columns_above_2000_dimensions_need_halfvec(fresh_database, monkeypatch):
    url = fresh_database()
    with pytest.raises(TargetConfigurationError) as refused:
        store(url, vector_length=2048).check_compatible(2048)
    message = str(refused.value)
    assert "2048" in message and "2000" in message and "PGVECTOR_USE_HALFVEC" in message

    # The same from Open WebUI's environment, and before the length mismatch is reported.
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "1536")
    with pytest.raises(TargetConfigurationError, match="PGVECTOR_USE_HALFVEC"):
        store(url).ensure_table(2048)
    assert not store(url).describe_table().exists

    with pytest.raises(TargetConfigurationError) as refused:
        store(url, use_halfvec=True, vector_length=4096).check_compatible(4096)
    assert "4096" in str(refused.value) and "4000" in str(refused.value)

    monkeypatch.setenv("PGVECTOR_USE_HALFVEC", "true")
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "3072")
    assert not store(url).check_compatible(3072).exists


def test_halfvec_setting_must_match_the_table(fresh_database):
    url = fresh_database()
    store(url, vector_length=8).ensure_table(8)
    with pytest.raises(TargetConfigurationError) as refused:
        store(url, use_halfvec=True).check_compatible(8)
    message = str(refused.value)
    assert "vector(8)" in message and "halfvec" in message and "PGVECTOR_USE_HALFVEC" in message

    other = fresh_database()
    store(other, use_halfvec=True, vector_length=8).ensure_table(8)
    with pytest.raises(TargetConfigurationError) as refused:
        store(other).check_compatible(8)
    message = str(refused.value)
    assert "halfvec(8)" in message and "PGVECTOR_USE_HALFVEC=true" in message


# --- pgcrypto ------------------------------------------------------------------------------


def decrypted_rows(url: str, key: str = KEY) -> list[tuple]:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT id, pgp_sym_decrypt(text, %(key)s), pgp_sym_decrypt(vmetadata, %(key)s), "
            "pgp_sym_decrypt(vmetadata, %(key)s)::jsonb FROM document_chunk ORDER BY id",
            {"key": key},
        ).fetchall()


def test_pgcrypto_rows_are_encrypted_as_open_webui_reads_them(pgcrypto_database):
    url = pgcrypto_database
    vector_store = store(url, pgcrypto=True, pgcrypto_key=KEY, vector_length=8)
    vector_store.ensure_table(8)
    table = vector_store.describe_table()
    assert (table.vector_type, table.text_type, table.metadata_type) == ("vector", "bytea", "bytea")
    vector_store.state()

    first = make_unit("knowledge-1", "file-a", ["Grüße\naus Köln", "zweiter Teil"], page=1)
    second = make_unit("knowledge-1", "file-b", ["other file"])
    write(vector_store, first, random_vectors(2, 8))
    write(vector_store, second, random_vectors(1, 8, seed=3))

    with psycopg.connect(url) as connection:
        raw = connection.execute(
            "SELECT pg_typeof(text)::text, pg_typeof(vmetadata)::text, text, vmetadata "
            "FROM document_chunk"
        ).fetchall()
    assert {(row[0], row[1]) for row in raw} == {("bytea", "bytea")}
    assert not any(b"aus K" in bytes(row[2]) or b"file-a" in bytes(row[3]) for row in raw)

    rows = decrypted_rows(url)
    chunks = sorted(first.chunks + second.chunks, key=lambda chunk: chunk.id)
    assert [row[0] for row in rows] == [chunk.id for chunk in chunks]
    for (_, text, metadata_text, metadata), chunk in zip(rows, chunks, strict=True):
        assert text == chunk.text
        assert metadata_text == json.dumps(chunk.metadata)
        assert json.loads(metadata_text) == metadata == chunk.metadata

    # Replacing a file twice leaves exactly its new rows and the other file's untouched.
    changed = make_unit("knowledge-1", "file-a", ["Grüße\naus Köln, neu"])
    write(vector_store, changed, random_vectors(1, 8, seed=5))
    write(vector_store, changed, random_vectors(1, 8, seed=5))
    rows = decrypted_rows(url)
    assert [(row[0], row[1]) for row in rows] == [
        (changed.chunks[0].id, "Grüße\naus Köln, neu"),
        (second.chunks[0].id, "other file"),
    ]
    assert vector_store.duplicate_chunks() == []
    present = vector_store.present_rows(["knowledge-1"])
    assert {key: rows.count for key, rows in present.items()} == {
        ("knowledge-1", "file-a"): 1,
        ("knowledge-1", "file-b"): 1,
    }
    assert present[("knowledge-1", "file-a")].content_hashes == {"hash-file-a"}
    assert present[("knowledge-1", "file-b")].embedding_models == {"text-embedding-3-large"}
    assert vector_store.file_row_owners(["knowledge-1"]) == [
        ("knowledge-1", "file-a", 1),
        ("knowledge-1", "file-b", 1),
    ]
    assert vector_store.rows_by_kind() == {"knowledge and other collections": 2}
    assert vector_store.dimension_mismatches() == (8, [])

    # A duplicate written by someone else under another id is found through the decryption.
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO document_chunk SELECT 'copy', vector, collection_name, text, vmetadata "
            "FROM document_chunk WHERE id = %s",
            (second.chunks[0].id,),
        )
    assert vector_store.duplicate_chunks(["knowledge-1"]) == [("knowledge-1", "file-b", 2, 2, 1)]
    assert vector_store.delete_file_rows("knowledge-1", "file-b") == 2
    assert vector_store.row_ids("knowledge-1") == [changed.chunks[0].id]

    build = rebuild_vector_index(vector_store)
    assert build.text_search_skipped_reason
    indexes = index_definitions(url)
    assert "USING ivfflat (vector vector_cosine_ops)" in indexes["idx_document_chunk_vector"]
    assert "idx_document_chunk_text_search" not in indexes
    with psycopg.connect(url) as connection:
        assert connection.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'pgcrypto'"
        ).fetchone()


def test_pgcrypto_with_halfvec(pgcrypto_database):
    url = pgcrypto_database
    vector_store = store(url, pgcrypto=True, pgcrypto_key=KEY, use_halfvec=True, vector_length=2048)
    vector_store.ensure_table(2048)
    vector_store.state()
    unit = make_unit("file-abc", "abc", ["only chunk"])
    vectors = random_vectors(1, 2048)
    write(vector_store, unit, vectors)
    write(vector_store, unit, vectors)
    with psycopg.connect(url) as connection:
        register_vector(connection)
        [(halfvec, text)] = connection.execute(
            "SELECT vector, pgp_sym_decrypt(text, %s) FROM document_chunk", (KEY,)
        ).fetchall()
    assert text == "only chunk"
    assert np.array_equal(halfvec.to_numpy(), vectors[0].astype(np.float16))
    assert rebuild_vector_index(vector_store).method == "hnsw"
    assert "halfvec_cosine_ops" in index_definitions(url)["idx_document_chunk_vector"]


def test_pgcrypto_key_never_appears_in_errors(pgcrypto_database):
    url = pgcrypto_database
    vector_store = store(url, pgcrypto=True, pgcrypto_key=KEY, vector_length=8)
    vector_store.ensure_table(8)
    vector_store.state()
    write(vector_store, make_unit("knowledge-1", "file-a", ["text"]), random_vectors(1, 8))

    errors = []
    wrong = store(url, pgcrypto=True, pgcrypto_key=WRONG_KEY)
    for attempt in (
        lambda: wrong.check_compatible(8),
        lambda: wrong.present_rows(["knowledge-1"]),
        lambda: wrong.duplicate_chunks(),
        lambda: wrong.delete_file_rows("knowledge-1", "file-a"),
        lambda: write(wrong, make_unit("knowledge-1", "file-a", ["x"]), random_vectors(1, 8)),
    ):
        with pytest.raises(TargetConfigurationError) as refused:
            attempt()
        assert "PGVECTOR_PGCRYPTO_KEY" in str(refused.value)
        errors.append(refused.value)
    # Rows the server refuses (a wrong dimension, metadata jsonb cannot hold) fail as data
    # errors, as in plain tables, and roll the unit back.
    with pytest.raises(psycopg.DataError) as refused:
        write(vector_store, make_unit("knowledge-1", "file-a", ["short"]), random_vectors(1, 7))
    errors.append(refused.value)
    with pytest.raises(psycopg.DataError) as refused:
        write(
            vector_store,
            make_unit("knowledge-1", "file-a", ["nan"], score=math.nan),
            random_vectors(1, 8),
        )
    errors.append(refused.value)
    assert [row[1] for row in decrypted_rows(url)] == ["text"]
    for error in errors:
        text = messages_of(error)
        assert KEY not in text and WRONG_KEY not in text


def test_pgcrypto_setting_must_match_the_table(fresh_database):
    plain = fresh_database()
    store(plain, vector_length=8).ensure_table(8)
    with pytest.raises(TargetConfigurationError) as refused:
        store(plain, pgcrypto=True, pgcrypto_key=KEY).check_compatible(8)
    assert "PGVECTOR_PGCRYPTO" in str(refused.value) and "text" in str(refused.value)
    assert KEY not in str(refused.value)

    encrypted = fresh_database()
    with psycopg.connect(encrypted, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(
            "CREATE TABLE document_chunk (id text PRIMARY KEY, vector vector(8), "
            "collection_name text NOT NULL, text bytea, vmetadata bytea)"
        )
    with pytest.raises(TargetConfigurationError) as refused:
        store(encrypted).check_compatible(8)
    assert "PGVECTOR_PGCRYPTO" in str(refused.value) and "bytea" in str(refused.value)
    # Reading an encrypted table needs the key; without one nothing is sent to decrypt.
    with pytest.raises(TargetConfigurationError, match="PGVECTOR_PGCRYPTO_KEY"):
        store(encrypted).present_rows(["knowledge-1"])
    # Encrypting needs a key too.
    with pytest.raises(TargetConfigurationError, match="PGVECTOR_PGCRYPTO_KEY"):
        store(fresh_database(), pgcrypto=True, vector_length=8).ensure_table(8)
