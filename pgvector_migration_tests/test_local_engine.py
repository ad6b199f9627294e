"""The local engine: Open WebUI's default sentence-transformers model from the packaged copy,
never downloaded, producing the same vectors as calling the model directly."""

from __future__ import annotations

import numpy as np

from pgvector_migration import cli
from pgvector_migration.embedding.local import find_local_model
from pgvector_migration.sample_data import KNOWLEDGE_BASES
from pgvector_migration.setting_defaults import DEFAULT_EMBEDDING_MODEL


def test_local_model_migrates_a_knowledge_base(deployment, monkeypatch):
    monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "")
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", DEFAULT_EMBEDDING_MODEL)
    monkeypatch.setenv("PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH", "384")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    founding = KNOWLEDGE_BASES[0].id

    assert cli.main(["--no-progress", "--knowledge-id", founding]) == cli.EXIT_OK

    from pgvector.psycopg import register_vector
    from sentence_transformers import SentenceTransformer

    with deployment.connect() as connection:
        register_vector(connection)
        rows = connection.execute(
            "SELECT text, vector FROM document_chunk WHERE collection_name = %s ORDER BY id "
            "LIMIT 5",
            (founding,),
        ).fetchall()
    assert deployment.server.request_count == 0
    model = SentenceTransformer(str(find_local_model(DEFAULT_EMBEDDING_MODEL)), device="cpu")
    direct = model.encode([text.replace("\n", " ") for text, _ in rows])
    for (_, stored), expected in zip(rows, direct, strict=True):
        assert len(stored.to_numpy()) == 384
        np.testing.assert_allclose(stored.to_numpy(), expected, atol=1e-5)
