"""Search after a migration: recall of Open WebUI's filtered query, tuning and its undo.

The table holds the loopback OpenAI server's own vectors of each row's text, so a chunk queried
by its text must find itself; a large collection and a medium one make the filtered index
search lose neighbours when the index walk is narrow (a tiny hnsw.ef_search and no iterative
scan, as a deployment with PGVECTOR_ITERATIVE_SCAN=off has), and tuning must bring them back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest

from pgvector_migration.assets.retrieval_quality import RETRIEVAL_CHECKS, retrieval_quality
from pgvector_migration.cli import main
from pgvector_migration.definitions import build_definitions
from pgvector_migration.partitions import STANDALONE_PARTITION_KEY as STANDALONE
from pgvector_migration.pipeline.retrieval_quality import (
    CollectionQuality,
    Hit,
    QueryMeasure,
    SampledChunk,
    Thresholds,
    first_sufficient,
    overlap,
    recall_at_k,
    self_retrieved,
    shortened_query,
    summarize,
    tuning_ladder,
)
from pgvector_migration.resources.chroma_store import ChromaSnapshot
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.search_tuning import (
    SearchIndex,
    TuningError,
    TuningScope,
    apply_tuning,
    describe_search_index,
    open_webui_session_settings,
)
from pgvector_migration.resources.search_verification import (
    knowledge_collections,
    query_embedder,
    untune_search,
    verify_search,
)
from pgvector_migration.resources.vector_index import rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.settings import resolve_rag_settings
from pgvector_migration_testing.chroma_stores import OpenWebUIChromaWriter
from pgvector_migration_testing.document_chunks import copy_document_chunks, embedded_chunk_rows
from pgvector_migration_testing.embedding_vectors import expected_embedding
from pgvector_migration_testing.openai_server import EmbeddingServer

MODEL = "text-embedding-3-small"
DIMENSIONS = 48
LARGE, MEDIUM, SMALL = "kb-large", "kb-medium", "kb-small"


def measure(recall: float, hit: bool = True, short: bool = False) -> QueryMeasure:
    return QueryMeasure("c", short, recall, hit, 1.0, 2.0)


def test_recall_self_retrieval_and_overlap_arithmetic():
    assert recall_at_k(["a", "b", "x"], ["a", "b", "c"], 3) == pytest.approx(2 / 3)
    assert recall_at_k(["a"], [], 10) == 1.0
    assert recall_at_k(["a", "b"], ["a"], 10) == 1.0
    sample = SampledChunk("c1", "f1", "one two three")
    assert self_retrieved(sample, [Hit("x", "f2"), Hit("c1", "f1")], 2)
    assert self_retrieved(sample, [Hit("x", "f1")], 1), "another chunk of its file counts"
    assert not self_retrieved(sample, [Hit("x", "f2"), Hit("c1", "f1")], 1)
    assert overlap(["a", "b"], ["b", "c"], 2) == 0.5
    assert shortened_query(" ".join(str(n) for n in range(40))) == " ".join(
        str(n) for n in range(12)
    )


def test_verdicts_name_what_fails():
    thresholds = Thresholds(min_recall=0.95, min_self_retrieval=0.9)
    good = summarize("kb", 10, [measure(1.0), measure(0.9, short=True)], thresholds)
    assert good.passed and good.recall == pytest.approx(0.95)
    assert good.short_self_retrieval == 1.0
    low = summarize("kb", 10, [measure(0.5), measure(0.7)], thresholds)
    assert not low.passed and "recall@k 0.600 below 0.95" in low.failures[0]
    lost = summarize("kb", 10, [measure(1.0, hit=False), measure(1.0)], thresholds)
    assert not lost.passed and "self-retrieval 0.500" in lost.failures[0]


def test_tuning_ladder_widens_the_search_and_stops_at_the_first_sufficient():
    hnsw = tuning_ladder("hnsw")
    assert [int(c["hnsw.ef_search"]) for c in hnsw] == sorted(
        int(c["hnsw.ef_search"]) for c in hnsw
    )
    assert all(c["hnsw.iterative_scan"] == "relaxed_order" for c in hnsw)
    ivfflat = tuning_ladder("ivfflat", lists=200)
    assert [c["ivfflat.probes"] for c in ivfflat] == ["10", "20", "40", "80"]
    assert tuning_ladder("none") == []

    def quality(recall: float) -> CollectionQuality:
        return summarize("kb", 1, [measure(recall)], Thresholds())

    tried = [[quality(0.5)], [quality(0.96), quality(0.9)], [quality(0.99)]]
    assert first_sufficient(hnsw, tried, Thresholds()) == 2
    assert first_sufficient(hnsw, tried[:2], Thresholds()) is None


def test_open_webui_sets_its_iterative_scan_per_query():
    hnsw = SearchIndex("0.8.1", "hnsw", None)
    assert open_webui_session_settings(hnsw, {}) == {"hnsw.iterative_scan": "relaxed_order"}
    assert open_webui_session_settings(hnsw, {"PGVECTOR_ITERATIVE_SCAN": "off"}) == {}
    ivf = SearchIndex("0.8.1", "ivfflat", 100)
    strict = {"PGVECTOR_ITERATIVE_SCAN": "strict_order"}
    assert open_webui_session_settings(ivf, strict) == {"ivfflat.iterative_scan": "relaxed_order"}
    assert open_webui_session_settings(SearchIndex("0.7.4", "hnsw", None), {}) == {}


@pytest.fixture
def search_deployment(fresh_database, monkeypatch):
    """A target with one large and one small knowledge collection of the loopback server's
    vectors, an hnsw index built by rebuild_vector_index, and the server to embed queries."""
    url = fresh_database()
    for name in ("PGVECTOR_INDEX_METHOD", "PGVECTOR_ITERATIVE_SCAN", "RAG_EMBEDDING_QUERY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGVECTOR_INDEX_METHOD", "hnsw")
    monkeypatch.setenv("ENABLE_PERSISTENT_CONFIG", "false")
    monkeypatch.setenv("PGVECTOR_DB_URL", url)
    store = PgVectorResource(database_url=url, vector_length=DIMENSIONS)
    store.ensure_table(DIMENSIONS)
    rows = embedded_chunk_rows(
        ((LARGE, 4000), (MEDIUM, 1500), (SMALL, 30)),
        MODEL,
        DIMENSIONS,
        lambda collection, n: f"{collection} chunk {n} about topic {n % 37} and detail {n * 7919}",
        lambda collection, n: f"{collection}-f{n // 10}",
    )
    copy_document_chunks(url, rows, analyze=True)
    build = rebuild_vector_index(store)
    assert build.method == "hnsw" and "maintenance_work_mem=" in build.sizing
    with EmbeddingServer(dimensions=DIMENSIONS, api_key="sk-test") as server:
        monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "openai")
        monkeypatch.setenv("RAG_EMBEDDING_MODEL", MODEL)
        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", server.base_url)
        monkeypatch.setenv("RAG_OPENAI_API_KEY", "sk-test")
        settings = resolve_rag_settings({}, os.environ)
        yield store, url, query_embedder(settings, EmbeddingResource())


def chroma_store(url: str, path: Path, model: str) -> Path:
    """An old Chroma store of the medium and small collections' rows, with `model`'s vectors."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT collection_name, id, text, vmetadata FROM document_chunk "
            "WHERE collection_name <> %s",
            (LARGE,),
        ).fetchall()
    OpenWebUIChromaWriter(path).add(
        (c, i, t, m, np.asarray(expected_embedding(model, t, DIMENSIONS))) for c, i, t, m in rows
    )
    return path


def database_settings(url: str) -> list[str] | None:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return sorted(row[0]) if row else None


def test_filtered_search_loses_recall_and_tuning_restores_it(search_deployment, monkeypatch):
    store, url, embed = search_deployment
    # The deployment's own setting, which tuning replaces and --untune must put back.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT set_config('search_path', 'public', false)")
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET hnsw.ef_search = 10')
        connection.execute(f"ALTER DATABASE \"{database}\" SET work_mem = '8MB'")
        assert describe_search_index(connection).method == "hnsw"
    monkeypatch.setenv("PGVECTOR_ITERATIVE_SCAN", "off")
    original = database_settings(url)
    collections = [LARGE, MEDIUM, SMALL]
    assert knowledge_collections(store) == sorted(collections)

    measured = verify_search(store, collections, embed, samples=10)
    before = {q.collection: q for q in measured.before}
    assert measured.open_webui_settings == {}
    assert before[MEDIUM].recall < 0.95, "a narrow filtered index walk misses neighbours"
    assert not before[MEDIUM].passed and "recall@k" in before[MEDIUM].failures[0]
    assert before[MEDIUM].self_retrieval == 1.0, "its own row is found, its neighbours not"
    assert before[SMALL].passed, "the planner reads a tiny collection from its btree: exact"
    assert measured.proposal and measured.proposal_sufficient
    assert all(q.recall >= 0.95 for q in measured.after), "the proposal, measured locally"
    assert database_settings(url) == original, "without --tune nothing is changed"

    tuned = verify_search(store, collections, embed, samples=10, tune=True)
    assert tuned.applied and tuned.passed
    assert any("ALTER DATABASE" in s and "hnsw.ef_search" in s for s in tuned.statements)
    assert all(q.recall >= 0.95 and q.self_retrieval == 1.0 for q in tuned.after)
    stored = dict(item.split("=", 1) for item in database_settings(url))
    assert stored["hnsw.iterative_scan"] == "relaxed_order"
    assert int(stored["hnsw.ef_search"]) > 10 and stored["work_mem"] == "8MB"

    again = verify_search(store, collections, embed, samples=10)
    assert again.passed and not again.proposal, "new sessions see the database's settings"

    statements = untune_search(store)
    assert any("RESET" in s and "iterative_scan" in s for s in statements)
    assert database_settings(url) == original, "exactly what was there before"
    assert untune_search(store) == []
    assert not verify_search(store, [MEDIUM], embed, samples=10).before[0].passed


def test_untune_restores_role_settings_and_refuses_unknown_settings(search_deployment):
    store, url, _ = search_deployment
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP ROLE IF EXISTS owui_reader")
        connection.execute("CREATE ROLE owui_reader")
        connection.execute("ALTER ROLE owui_reader SET ivfflat.probes = 3")
        scope = TuningScope(role="owui_reader")
        before = scope.current(connection)
        with pytest.raises(TuningError, match="work_mem"):
            apply_tuning(connection, {"work_mem": "1GB"}, scope)
        apply_tuning(connection, {"ivfflat.probes": "20", "hnsw.ef_search": "200"}, scope)
        apply_tuning(connection, {"ivfflat.probes": "40"}, scope)
        assert scope.current(connection) == {"ivfflat.probes": "40", "hnsw.ef_search": "200"}
        untune_search(store, scope)
        assert scope.current(connection) == before == {"ivfflat.probes": "3"}
        connection.execute("DROP ROLE owui_reader")


RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def check_verdicts(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_retrieval_quality_over_one_partition_and_a_range(search_deployment, monkeypatch):
    store, url, _ = search_deployment
    monkeypatch.setenv("PGVECTOR_ITERATIVE_SCAN", "off")
    with psycopg.connect(url, autocommit=True) as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET hnsw.ef_search = 10')
    resources = {
        "openwebui": OpenWebUIResource(),
        "vector_store": store,
        "embeddings": EmbeddingResource(),
    }
    defs = build_definitions(**resources)
    assert "retrieval_quality" not in {
        key.to_user_string()
        for key in defs.resolve_job_def("migrate_knowledge_base").asset_layer.selected_asset_keys
    }
    job = defs.resolve_job_def("verify_retrieval")
    config = {"ops": {"retrieval_quality": {"config": {"samples": 8}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("knowledge_bases", [MEDIUM, SMALL, STANDALONE])
        single = job.execute_in_process(
            run_config=config, instance=instance, partition_key=SMALL, raise_on_error=False
        )
        assert single.success
        verdicts = check_verdicts(single)
        assert verdicts["recall_at_k_meets_threshold"].passed
        assert verdicts["chunks_find_themselves"].passed
        assert verdicts["recall_at_k_meets_threshold"].metadata["partitions_judged"].value == 1

        ranged = job.execute_in_process(
            run_config=config,
            instance=instance,
            tags=dict(zip(RANGE_TAGS, (MEDIUM, STANDALONE), strict=True)),
            raise_on_error=False,
        )
        assert ranged.success, "a run over a range of partitions, checks included"
        materialized = {
            m.partition: m.metadata
            for m in ranged.asset_materializations_for_node("retrieval_quality")
        }
        assert set(materialized) == {MEDIUM, SMALL, STANDALONE}
        medium, small = materialized[MEDIUM], materialized[SMALL]
        assert medium["rows"].value == 1500 and medium["recall_at_k"].value < 0.95
        assert medium["recall_at_k_with_proposal"].value >= 0.95
        assert small["rows"].value == 30 and small["recall_at_k"].value == 1.0
        assert "skipped" in materialized[STANDALONE]
        assert "hnsw.ef_search" in medium["proposed_settings"].value
        chart = Path(medium["chart_path"].value)
        assert chart.read_bytes()[:4] == b"\x89PNG" and chart == Path(small["chart_path"].value)
        assert medium["chart"].value.startswith("![recall per knowledge base](data:image/png;")
        verdicts = check_verdicts(ranged)
        recall = verdicts["recall_at_k_meets_threshold"]
        assert not recall.passed and recall.metadata["partitions_failing"].value == [MEDIUM]
        assert recall.metadata["partitions_judged"].value == 3
        assert verdicts["chunks_find_themselves"].passed

        # The checks on their own, in a run without partitions: the latest of every partition.
        alone = dg.materialize(
            [retrieval_quality, *RETRIEVAL_CHECKS],
            selection=dg.AssetSelection.checks(*RETRIEVAL_CHECKS),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        recall = check_verdicts(alone)["recall_at_k_meets_threshold"]
        assert not recall.passed and recall.metadata["partitions_failing"].value == [MEDIUM]
        instance.add_dynamic_partitions("knowledge_bases", [LARGE])
        unmeasured = dg.materialize(
            [retrieval_quality, *RETRIEVAL_CHECKS],
            selection=dg.AssetSelection.checks(*RETRIEVAL_CHECKS),
            resources=resources,
            instance=instance,
            tags={"dagster/partition": LARGE},
            raise_on_error=False,
        )
        verdict = check_verdicts(unmeasured)["chunks_find_themselves"]
        assert not verdict.passed and "never measured" in verdict.metadata["knowledge_bases"].value


def test_overlap_with_the_old_store_the_vectors_came_from(search_deployment, tmp_path):
    store, url, embed = search_deployment
    same = chroma_store(url, tmp_path / "same", MODEL)
    other = chroma_store(url, tmp_path / "other", "another-model")
    with ChromaSnapshot(same) as old:
        kept = verify_search(store, [SMALL, MEDIUM], embed, samples=6, old_store=old)
    with ChromaSnapshot(other) as old:
        lost = verify_search(store, [SMALL], embed, samples=6, old_store=old)
    overlaps = {q.collection: q.old_store_overlap for q in kept.before}
    assert overlaps[SMALL] >= 0.9 and overlaps[MEDIUM] >= 0.9
    assert lost.before[0].old_store_overlap < 0.5
    assert kept.as_json()["before"][0]["old_store_overlap"] == round(overlaps[SMALL], 4)


def test_verify_command_prints_writes_the_summary_and_the_chart(
    search_deployment, tmp_path, capsys, monkeypatch
):
    _, url, _ = search_deployment
    monkeypatch.setenv("PGVECTOR_ITERATIVE_SCAN", "off")
    with psycopg.connect(url, autocommit=True) as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET hnsw.ef_search = 10')
    summary = tmp_path / "out" / "verify.json"
    common = ["verify", "--verify-samples", "6", "--summary-json", str(summary)]
    assert main([*common, "--knowledge-id", MEDIUM, "--knowledge-id", SMALL]) == 1
    printed = capsys.readouterr().out
    assert "knowledge bases verified: 2" in printed and f"FAILED {MEDIUM}: recall@k" in printed
    assert "settings proposed (apply with --tune)" in printed
    figures = json.loads(summary.read_text())
    assert figures["passed"] is False and figures["index_method"] == "hnsw"
    assert summary.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    assert (
        main([*common, "--tune", "--from-chroma", str(chroma_store(url, tmp_path / "c", MODEL))])
        == 0
    )
    printed = capsys.readouterr().out
    assert f'ran: ALTER DATABASE "{database}" SET hnsw.ef_search' in printed
    assert "overlap with the old store's top 10" in printed
    assert json.loads(summary.read_text())["after_summary"]["failing"] == 0
    assert main(["verify", "--untune", "--knowledge-id", SMALL]) == 0
    assert (
        f"ran: ALTER DATABASE \"{database}\" SET hnsw.ef_search = '10'" in capsys.readouterr().out
    )
    assert main(["verify", "--min-recall", "0.9", "--knowledge-id", "no-such-kb"]) == 0
