"""Throughput machinery against the real loopback server and PostgreSQL: base64 answers (and
servers that ignore or refuse them) write the very same rows as floats, and a 429 halves the
dispatcher's in-flight limit (the pacer's own rules: test_pacer.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pytest

from pgvector_migration.embedding.dispatch import EmbeddingDispatcher
from pgvector_migration.embedding.openai import OpenAIEmbedder
from pgvector_migration.pipeline.ids import text_key
from pgvector_migration.pipeline.records import Chunk, WriteUnit
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import resolve_rag_settings
from pgvector_migration.unit_writer import UnitWriter
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL = "throughput-model"
DIMENSIONS = 1536


def units(count: int = 6, chunks: int = 12) -> list[WriteUnit]:
    """Files of a few chunks each; the last file repeats the first one's texts, so the cache
    and the waves' sharing of texts under way are exercised too."""
    made = []
    for number in range(count):
        file_id = f"file{number}"
        source = 0 if number == count - 1 else number
        made.append(
            WriteUnit(
                f"file-{file_id}",
                file_id,
                f"{file_id}.txt",
                "hash",
                "settings",
                [
                    Chunk(
                        hashlib.md5(f"{file_id}/{p}".encode()).hexdigest(),
                        f"file-{file_id}",
                        file_id,
                        p,
                        f"text {p} of file {source}\nwith a second line",
                        {"file_id": file_id, "start_index": p},
                    )
                    for p in range(chunks)
                ],
            )
        )
    return made


def write_rows(server: EmbeddingServer, url: str, max_batch_size: int = 16) -> list[tuple]:
    """Write `units()` with the OpenAI engine into the database at `url`; its rows, with each
    vector as PostgreSQL's own binary form of it."""
    environ = {
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "RAG_OPENAI_API_BASE_URL": server.base_url,
        "RAG_OPENAI_API_KEY": "sk-test",
    }
    embeddings = EmbeddingResource(max_batch_size=max_batch_size, max_retries=2)
    settings = embeddings.effective_settings(resolve_rag_settings({}, environ))
    vector_store = PgVectorResource(database_url=url, vector_length=DIMENSIONS)
    writer = UnitWriter.prepare(settings, embeddings, vector_store, vector_store.state())
    failures: list[str] = []
    report = writer.write(units(), lambda unit, message: failures.append(message))
    assert failures == []
    assert report.chunks_written == 6 * 12
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT id, collection_name, text, vmetadata::text, vector_send(vector) "
            "FROM document_chunk ORDER BY id"
        ).fetchall()


def pgvector_binary(vector: np.ndarray) -> bytes:
    """pgvector's binary form: dimension, a zero, then big-endian float32 values."""
    return len(vector).to_bytes(2, "big") + b"\0\0" + vector.astype(">f4").tobytes()


@pytest.mark.parametrize("support", ["ignore", "refuse"])
def test_base64_and_float_answers_write_identical_rows(fresh_database, support):
    with EmbeddingServer(dimensions=DIMENSIONS) as server:
        base64_rows = write_rows(server, fresh_database())
        asked = {record.encoding_format for record in server.requests}
        assert asked == {"base64"}
        server.reset()
        server.base64_support = support
        float_rows = write_rows(server, fresh_database())
    assert float_rows == base64_rows
    by_text = {row[0]: row for row in base64_rows}
    for unit in units():
        for chunk in unit.chunks:
            wanted = np.asarray(
                expected_embedding(MODEL, chunk.embedding_input, DIMENSIONS), dtype=np.float32
            )
            assert by_text[chunk.id][4] == pgvector_binary(wanted)


def test_a_server_refusing_base64_is_asked_for_floats_once_then_always(fresh_database, caplog):
    with EmbeddingServer(dimensions=8) as server:
        server.base64_support = "refuse"
        engine = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=5)
        dispatcher = EmbeddingDispatcher(engine, max_batch_inputs=4, max_in_flight=1, max_retries=0)
        texts = [f"t{i}" for i in range(12)]
        vectors = dispatcher.embed(texts)
        formats = [(record.encoding_format, record.status) for record in server.requests]
        assert formats == [("base64", 400)] + [("float", 200)] * 3
        assert "refused encoding_format=base64" in caplog.text
        # Remembered for the process: another engine on the same endpoint asks for floats.
        again = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=5)
        again.request(["one more"])
        assert server.requests[-1].encoding_format == "float"
        dispatcher.close()
        again.close()
    for text, vector in zip(texts, vectors, strict=True):
        assert np.array_equal(vector, np.float32(expected_embedding(MODEL, text, 8)))


def test_a_429_halves_the_dispatchers_in_flight_limit():
    with EmbeddingServer(dimensions=8, retry_after_seconds=0.01) as server:
        engine = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=5)
        dispatcher = EmbeddingDispatcher(
            engine, max_batch_inputs=4, max_in_flight=None, max_retries=3
        )
        assert dispatcher.in_flight.limit == 4
        server.fail_next(1, status=429)
        dispatcher.embed(["a"])
        assert dispatcher.stats.rate_limited == 1
        # Halved by the 429, then one back for the success that followed.
        assert dispatcher.in_flight.limit == 3
        dispatcher.close()


def test_waves_under_way_together_send_each_distinct_text_once(fresh_database):
    url = fresh_database()
    environ = {
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "RAG_OPENAI_API_KEY": "sk-test",
    }
    with EmbeddingServer(dimensions=8, latency_seconds=0.2) as server:
        environ["RAG_OPENAI_API_BASE_URL"] = server.base_url
        embeddings = EmbeddingResource(max_batch_size=4, max_retries=2)
        settings = embeddings.effective_settings(resolve_rag_settings({}, environ))
        vector_store = PgVectorResource(database_url=url, vector_length=8)
        state = vector_store.state()
        prepared = UnitWriter.prepare(settings, embeddings, vector_store, state)
        # One file a wave: the last file's wave asks for the first file's texts while the
        # first wave may still be under way.
        writer = UnitWriter(
            vector_store, state, prepared._dispatcher, 8, MODEL, texts_per_wave=12, reembed=False
        )
        failures: list[str] = []
        report = writer.write(units(), lambda unit, message: failures.append(message))
        sent = [text for record in server.requests[1:] for text in record.inputs]
    assert failures == [] and report.chunks_written == 6 * 12
    assert len(sent) == len(set(sent)) == 5 * 12
    assert report.stats.embedded == 5 * 12 and report.stats.reused == 12
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT id, vector_send(vector) FROM document_chunk ORDER BY id"
        ).fetchall()
    by_id = dict(rows)
    for unit in units():
        for chunk in unit.chunks:
            wanted = np.float32(expected_embedding(MODEL, chunk.embedding_input, 8))
            assert by_id[chunk.id] == pgvector_binary(wanted)


def test_a_forced_reembedding_sends_a_text_once_even_after_its_wave_finished(fresh_database):
    """--reembed trusts no vector cached before it began. The first file's texts come back in
    the twelfth file, after more waves than may be under way at once (MAX_WAVES_UNDER_WAY),
    so the first wave is finished by then: its vectors come from the cache, made by this run,
    not from the provider again. A vector cached before the run is never used."""
    from pgvector_migration.unit_writer import MAX_WAVES_UNDER_WAY

    url = fresh_database()
    environ = {
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "RAG_OPENAI_API_KEY": "sk-test",
    }
    count = MAX_WAVES_UNDER_WAY + 4
    with EmbeddingServer(dimensions=8, latency_seconds=0.05) as server:
        environ["RAG_OPENAI_API_BASE_URL"] = server.base_url
        embeddings = EmbeddingResource(max_batch_size=4, max_retries=2, reembed=True)
        settings = embeddings.effective_settings(resolve_rag_settings({}, environ))
        vector_store = PgVectorResource(database_url=url, vector_length=8)
        state = vector_store.state()
        prepared = UnitWriter.prepare(settings, embeddings, vector_store, state)
        dispatcher = prepared._dispatcher
        stale = {chunk.embedding_input: np.full(8, 0.5, np.float32) for chunk in units()[0].chunks}
        with vector_store.connect(with_vectors=True) as connection:
            state.store_embeddings(
                connection, dispatcher.model_key, {text_key(t): v for t, v in stale.items()}
            )
        writer = UnitWriter(
            vector_store, state, dispatcher, 8, MODEL, texts_per_wave=12, reembed=True
        )
        failures: list[str] = []
        report = writer.write(units(count), lambda unit, message: failures.append(message))
        sent = [text for record in server.requests[1:] for text in record.inputs]
    assert failures == [] and report.chunks_written == count * 12
    assert len(sent) == len(set(sent)) == (count - 1) * 12
    assert set(stale) <= set(sent), "a vector cached before the run was trusted"
    assert report.stats.embedded == (count - 1) * 12 and report.stats.reused == 12
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT id, vector_send(vector) FROM document_chunk ORDER BY id"
        ).fetchall()
    by_id = dict(rows)
    for unit in units(count):
        for chunk in unit.chunks:
            wanted = np.float32(expected_embedding(MODEL, chunk.embedding_input, 8))
            assert by_id[chunk.id] == pgvector_binary(wanted)


def test_a_writer_slower_than_the_provider_holds_back_requests(fresh_database):
    """A target that takes 0.25 s a unit (a statement trigger sleeps) behind a provider that
    answers in 20 ms: what was asked for and not yet written stays near one round of request
    slots (4 requests of 4 texts) plus the waves being handed to the writer, instead of
    filling every wave the client may have under way (MAX_WAVES_UNDER_WAY) with answered
    vectors waiting in memory."""
    import time

    url = fresh_database()
    environ = {
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_EMBEDDING_MODEL": MODEL,
        "RAG_OPENAI_API_KEY": "sk-test",
    }
    count = 16
    with EmbeddingServer(dimensions=8, latency_seconds=0.02) as server:
        environ["RAG_OPENAI_API_BASE_URL"] = server.base_url
        embeddings = EmbeddingResource(max_batch_size=4, max_in_flight=4, max_retries=2)
        settings = embeddings.effective_settings(resolve_rag_settings({}, environ))
        vector_store = PgVectorResource(database_url=url, vector_length=8)
        state = vector_store.state()
        prepared = UnitWriter.prepare(settings, embeddings, vector_store, state)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                """
                CREATE TABLE written (at timestamptz, rows int);
                CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_sleep(0.25);
                    INSERT INTO written SELECT clock_timestamp(), count(*) FROM new_rows;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER slow_write AFTER INSERT ON document_chunk
                    REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION slow_write();
                """
            )
        writer = UnitWriter(
            vector_store, state, prepared._dispatcher, 8, MODEL, texts_per_wave=12, reembed=False
        )
        wall_minus_monotonic = time.time() - time.monotonic()
        failures: list[str] = []
        report = writer.write(units(count), lambda unit, message: failures.append(message))
        asked = sorted(
            (record.arrived_at + wall_minus_monotonic, len(record.inputs))
            for record in server.requests[1:]
        )
    with psycopg.connect(url) as connection:
        written = connection.execute("SELECT extract(epoch FROM at), rows FROM written").fetchall()
    assert failures == [] and report.chunks_written == count * 12
    done = 0
    most_unwritten = 0
    for at, rows in sorted(written):
        sent = sum(n for arrived, n in asked if arrived <= float(at))
        most_unwritten = max(most_unwritten, sent - done)
        done += rows
    # One round of slots (16 texts) plus the wave just started, the wave being written and
    # the one waiting to be: 16 + 3 x 12. Without the bound, 8 waves answered and waiting.
    assert most_unwritten <= 16 + 3 * 12, most_unwritten


def test_finished_waves_are_released_while_later_ones_share_their_texts():
    """Each wave asks for a text of the wave before it, still under way (as a knowledge chunk
    repeats its file chunk in the next wave); once finished, a wave's vectors must not stay
    reachable from the waves after it, or a run holds every vector it made until its end."""
    import gc
    import weakref

    from pgvector_migration.embedding.cache import CachedEmbedding, EmbeddingStats
    from pgvector_migration.store.embedding_cache import CacheHits

    with EmbeddingServer(dimensions=DIMENSIONS, latency_seconds=0.05) as server:
        engine = OpenAIEmbedder(MODEL, server.base_url, "sk-test", None, timeout=5)
        dispatcher = EmbeddingDispatcher(engine, max_batch_inputs=8, max_in_flight=4, max_retries=0)
        stored: list[int] = []
        embedding = CachedEmbedding(
            dispatcher.submit,
            lambda keys: CacheHits({}, set()),  # an empty cache
            lambda vectors: stored.append(len(vectors)),
            EmbeddingStats(),
        )
        waves = [embedding.start([f"wave 0 text {i}" for i in range(8)])]
        first = weakref.ref(waves[0])
        for number in range(1, 30):
            texts = [f"wave {number - 1} text 0"] + [f"wave {number} text {i}" for i in range(7)]
            waves.append(embedding.start(texts))
            results = embedding.finish(waves.pop(0))
            assert all(isinstance(vector, np.ndarray) for vector in results)
        gc.collect()
        assert first() is None, "the first wave is still reachable from the last one"
        assert len(waves[0].borrowed) == 1  # the newest wave, not finished, still borrows
        assert [len(v) for v in embedding.finish(waves.pop())] == [DIMENSIONS] * 8
        dispatcher.close()
    assert sum(stored) == 8 + 29 * 7
