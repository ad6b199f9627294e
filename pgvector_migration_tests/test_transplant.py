"""Reusing the vectors of Open WebUI's Chroma store (`--from-chroma`): a real Chroma persistent
directory written the way Open WebUI's Chroma client writes it, the sample deployment, the
embedded PostgreSQL target and the loopback OpenAI server counting every text it embeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings
from pgvector.psycopg import register_vector

from pgvector_migration import cli
from pgvector_migration.pipeline.records import document_embedding_input
from pgvector_migration.pipeline.transplant import Candidate, spread_sample, stored_model
from pgvector_migration.resources.chroma_store import ChromaSnapshot, ChromaStoreError
from pgvector_migration.resources.old_vector_store import FROM_CHROMA_ENV, OldVectorStoreResource
from pgvector_migration.sample_data import sample_file_id
from pgvector_migration_testing.chroma_stores import OpenWebUIChromaWriter
from pgvector_migration_tests.conftest import TEST_MODEL

PROBE = "dimension probe"
LEFT_OUT = sample_file_id("federalist_10.txt")


def run(tmp_path: Path, *flags: str) -> tuple[int, dict]:
    summary_path = tmp_path / "summary.json"
    summary_path.unlink(missing_ok=True)
    code = cli.main(
        ["--no-progress", "--only", "files", "--summary-json", str(summary_path), *flags]
    )
    return code, json.loads(summary_path.read_text())


def rows_with_vectors(deployment) -> list[tuple]:
    with deployment.connect() as connection:
        register_vector(connection)
        return connection.execute(
            "SELECT collection_name, id, text, vmetadata, vector FROM document_chunk "
            "ORDER BY collection_name, id"
        ).fetchall()


def write_chroma_store(path: Path, rows, metadata_of=lambda m: m, vector_of=lambda v: v) -> None:
    """Migrated rows as Open WebUI's Chroma client would hold them, each row's metadata and
    vector passed through `metadata_of` and `vector_of` first."""
    OpenWebUIChromaWriter(path).add(
        (name, chunk_id, text, metadata_of(dict(metadata)), vector_of(vector.to_numpy()))
        for name, chunk_id, text, metadata, vector in rows
    )


def store_fingerprint(path: Path) -> dict[str, str]:
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def embedded_texts(deployment) -> list[str]:
    return [text for text in deployment.server.inputs if text != PROBE]


@pytest.fixture
def full_migration(deployment, tmp_path):
    """A complete re-embedding migration: its rows are what Open WebUI would hold in Chroma."""
    code, _ = run(tmp_path)
    assert code == cli.EXIT_FAILED  # the sample's corrupt PDF
    rows = rows_with_vectors(deployment)
    assert rows
    return rows


def retarget(deployment, fresh_database, monkeypatch) -> None:
    deployment.target_url = fresh_database()
    monkeypatch.setenv("PGVECTOR_DB_URL", deployment.target_url)
    deployment.server.reset()


def test_old_vector_store_replace_embedding_requests_and_give_identical_rows(
    deployment, full_migration, fresh_database, tmp_path, monkeypatch
):
    store = tmp_path / "vector_db"
    kept = [row for row in full_migration if row[3].get("file_id") != LEFT_OUT]
    write_chroma_store(store, kept)
    before = store_fingerprint(store)
    stored_inputs = {document_embedding_input(row[2]) for row in kept}
    left_out_inputs = {
        document_embedding_input(row[2]) for row in full_migration if row not in kept
    } - stored_inputs
    assert left_out_inputs

    # Without samples: the provider sees exactly the texts the store lacks.
    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(tmp_path, "--from-chroma", str(store), "--transplant-samples", "0")

    assert code == cli.EXIT_FAILED and not summary["run_errors"]
    assert sorted(embedded_texts(deployment)) == sorted(left_out_inputs)
    assert summary["texts_embedded"] == len(left_out_inputs)
    assert summary["transplant"]["vectors_transplanted"] == len(stored_inputs)
    assert summary["texts_transplanted"] == len(kept)
    transplanted = rows_with_vectors(deployment)
    assert [row[:4] for row in transplanted] == [row[:4] for row in full_migration]
    for ours, reference in zip(transplanted, full_migration, strict=True):
        np.testing.assert_allclose(ours[4].to_numpy(), reference[4].to_numpy(), rtol=1e-6)
    assert store_fingerprint(store) == before, "the store must only be read"

    # With the default samples: a few stored texts per collection are embedded again to
    # check the store; nothing else is.
    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(tmp_path, "--from-chroma", str(store))

    assert code == cli.EXIT_FAILED and not summary["run_errors"]
    sampled = [text for text in embedded_texts(deployment) if text in stored_inputs]
    assert set(embedded_texts(deployment)) - set(sampled) == left_out_inputs
    assert len(sampled) == summary["transplant"]["samples_compared"] > 0
    assert len(sampled) <= 3 * len({row[0] for row in kept})
    assert summary["transplant"]["min_sample_similarity"] == pytest.approx(1.0, abs=1e-6)
    assert [row[:4] for row in rows_with_vectors(deployment)] == [row[:4] for row in full_migration]

    # A re-run with --overwrite finds every text in the cache: no request at all.
    deployment.server.reset()
    code, summary = run(tmp_path, "--from-chroma", str(store), "--overwrite")
    assert embedded_texts(deployment) == []
    assert summary["texts_embedded"] == 0


def test_vectors_of_another_model_are_never_used(
    deployment, full_migration, fresh_database, tmp_path, monkeypatch
):
    store = tmp_path / "vector_db"
    other = str({"engine": "openai", "model": "text-embedding-3-large"})
    write_chroma_store(store, full_migration, lambda m: {**m, "embedding_config": other})
    all_inputs = {document_embedding_input(row[2]) for row in full_migration}

    retarget(deployment, fresh_database, monkeypatch)
    monkeypatch.setenv(FROM_CHROMA_ENV, str(store))  # the resource's environment fallback
    code, summary = run(tmp_path)

    assert code == cli.EXIT_FAILED and not summary["run_errors"]
    assert summary["transplant"]["vectors_transplanted"] == 0
    assert summary["transplant"]["chunks_other_model"] == len(full_migration)
    assert summary["texts_transplanted"] == 0
    assert set(embedded_texts(deployment)) == all_inputs
    assert [row[:4] for row in rows_with_vectors(deployment)] == [row[:4] for row in full_migration]


def test_store_without_embedding_config_is_used_only_when_its_model_is_declared(
    deployment, full_migration, fresh_database, tmp_path, monkeypatch
):
    store = tmp_path / "vector_db"
    write_chroma_store(
        store,
        full_migration,
        lambda m: {k: v for k, v in m.items() if k != "embedding_config"},
    )

    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(tmp_path, "--from-chroma", str(store), "--transplant-samples", "0")
    assert summary["transplant"]["vectors_transplanted"] == 0
    assert summary["texts_embedded"] > 0

    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(
        tmp_path,
        "--from-chroma",
        str(store),
        "--chroma-model",
        TEST_MODEL,
        "--transplant-samples",
        "0",
    )
    assert summary["transplant"]["vectors_transplanted"] > 0
    assert summary["texts_embedded"] == 0
    assert embedded_texts(deployment) == []


def test_vectors_that_disagree_with_fresh_embeddings_refuse_the_store(
    deployment, full_migration, fresh_database, tmp_path, monkeypatch
):
    """Right model name, wrong vectors (say, another content prefix): the samples catch it
    and nothing of the store is cached or written."""
    store = tmp_path / "vector_db"
    rng = np.random.default_rng(7)
    write_chroma_store(store, full_migration, vector_of=lambda v: rng.normal(size=v.shape))

    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(tmp_path, "--from-chroma", str(store))

    assert code == cli.EXIT_FAILED
    assert summary["run_errors"]
    assert all("cosine similarity" in error for error in summary["run_errors"])
    assert "below the threshold 0.99" in summary["run_errors"][0]
    assert rows_with_vectors(deployment) == []
    with deployment.connect() as connection:
        origins = connection.execute(
            "SELECT origin, count(*) FROM pgvector_migration.embedding_cache GROUP BY 1"
        ).fetchall()
    assert "transplant" not in dict(origins)


def test_vectors_of_another_dimension_are_never_used(
    deployment, full_migration, fresh_database, tmp_path, monkeypatch
):
    store = tmp_path / "vector_db"
    write_chroma_store(store, full_migration, vector_of=lambda v: np.concatenate([v, v]))

    retarget(deployment, fresh_database, monkeypatch)
    code, summary = run(tmp_path, "--from-chroma", str(store))

    assert not summary["run_errors"]
    assert summary["transplant"]["vectors_transplanted"] == 0
    assert summary["transplant"]["chunks_wrong_dimension"] > 0
    assert summary["transplant"]["samples_compared"] == 0
    assert [row[:4] for row in rows_with_vectors(deployment)] == [row[:4] for row in full_migration]


def test_a_path_that_is_no_chroma_store_is_a_configuration_error(deployment, tmp_path, capsys):
    code = cli.main(["--no-progress", "--from-chroma", str(tmp_path / "nowhere")])

    assert code == cli.EXIT_CONFIG
    assert "is not a Chroma persistent directory" in capsys.readouterr().err
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None
    assert deployment.server.request_count == 0


def test_snapshot_reads_pages_and_vectors_by_id(tmp_path):
    store = tmp_path / "vector_db"
    client = chromadb.PersistentClient(
        path=str(store), settings=Settings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection(
        name="file-x", metadata={"hnsw:space": "cosine"}, embedding_function=None
    )
    count = 2500  # more than one page
    vectors = np.arange(count * 4, dtype=np.float32).reshape(count, 4)
    collection.add(
        ids=[f"id-{i}" for i in range(count)],
        documents=[f"text {i}" for i in range(count)],
        embeddings=vectors,
        metadatas=[{"position": i} for i in range(count)],
    )

    with ChromaSnapshot(store) as snapshot:
        chunks = list(snapshot.chunks("file-x"))
        assert snapshot.collection_names() == {"file-x"}
        assert sorted(c.id for c in chunks) == sorted(f"id-{i}" for i in range(count))
        by_id = snapshot.vectors("file-x", ["id-7", "id-2400"])
    # Chroma keeps vectors in its HNSW index, which may round the last bit.
    np.testing.assert_allclose(by_id["id-7"], vectors[7], rtol=1e-6)
    np.testing.assert_allclose(by_id["id-2400"], vectors[2400], rtol=1e-6)
    with pytest.raises(ChromaStoreError, match="not a Chroma persistent directory"):
        ChromaSnapshot(tmp_path / "empty")
    with ChromaSnapshot(store, copy=False) as in_place:
        assert len(list(in_place.chunks("file-x"))) == count


def test_a_store_is_opened_once_per_process(tmp_path):
    store = tmp_path / "vector_db"
    chromadb.PersistentClient(path=str(store), settings=Settings(anonymized_telemetry=False))
    resource = OldVectorStoreResource(chroma_path=str(store))

    assert resource.open() is resource.open()
    assert OldVectorStoreResource(chroma_path=str(store), copy_store=False).open() is not (
        resource.open()
    )
    assert OldVectorStoreResource().open() is None


@pytest.mark.parametrize(
    "stored, expected",
    [
        (
            str({"engine": "", "model": "sentence-transformers/all-MiniLM-L6-v2"}),
            ("", "sentence-transformers/all-MiniLM-L6-v2"),
        ),
        (
            json.dumps({"engine": "openai", "model": "text-embedding-3-small"}),
            ("openai", "text-embedding-3-small"),
        ),
        ({"engine": "ollama", "model": "nomic-embed-text"}, ("ollama", "nomic-embed-text")),
        ("not a config", None),
        (str({"engine": "openai"}), None),
        (None, None),
    ],
)
def test_stored_model_reads_every_embedding_config_format(stored, expected):
    metadata = {} if stored is None else {"embedding_config": stored}
    assert stored_model(metadata) == expected


def test_samples_are_spread_over_the_collection_and_stable():
    candidates = [Candidate(str(i), bytes([i]), f"t{i}") for i in range(10)]
    assert [c.chunk_id for c in spread_sample(candidates, 3)] == ["0", "4", "9"]
    assert spread_sample(candidates, 3) == spread_sample(candidates, 3)
    assert len(spread_sample(candidates, 20)) == 10
    assert spread_sample(candidates, 0) == []
