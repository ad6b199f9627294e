"""A re-run with nothing to do stays cheap at any number of knowledge bases: a complete knowledge
base's materializations carry the run's figures only, one that changed carries its own, and the
checks and `status` still judge every knowledge base of the run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pgvector_migration import cli
from pgvector_migration.definitions import defs
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.sample_data import KNOWLEDGE_BASES

FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)
ROOT = Path(__file__).resolve().parents[1]


def latest_figures(instance, run_id: str, asset: str, partition: str) -> dict:
    """The metadata of the partition's latest materialization of `asset`, made by `run_id`."""
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=1,
    ).records
    assert record.run_id == run_id, (asset, partition)
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def test_rerun_gives_own_figures_only_to_the_knowledge_base_that_changed(
    deployment, fresh_database, monkeypatch, capsys
):
    # The instance as deployed (the repository's dagster.yaml, PostgreSQL storage), which the
    # CLI reaches over pooled connections.
    storage_url = fresh_database("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    (deployment.dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_PG_URL", storage_url)
    assert cli.main(["--no-progress", "--knowledge-only", "--no-index"]) == cli.EXIT_OK
    # The fresh run wrote both knowledge bases: each carries its own figures (the first is
    # added through Dagster's add_asset_metadata, the others beside it).
    instance = dg.DagsterInstance.get()
    first = instance.get_runs(dg.RunsFilter(job_name="migrate_knowledge_base"), limit=1)[0]
    own = {
        partition: latest_figures(instance, first.run_id, "embedded_collections", partition)
        for partition in (FOUNDING, LITERATURE)
    }
    assert all(figures["partitions_with_own_figures"] == 2 for figures in own.values())
    assert all(figures["chunks_written"] > 0 for figures in own.values())
    # (a file in both knowledge bases counts its own collection in each)
    total = own[FOUNDING]["run_chunks_written"]
    assert all(figures["chunks_written"] < total for figures in own.values())
    for partition in (FOUNDING, LITERATURE):
        chunked = latest_figures(instance, first.run_id, "chunked_documents", partition)
        assert chunked["files_chunked"] > 0
    # The literature knowledge base loses its own collection: the re-run rewrites it, and
    # finds the founding documents complete.
    with deployment.connect() as connection:
        lost_units, lost_rows = connection.execute(
            "SELECT count(DISTINCT vmetadata->>'file_id'), count(*) FROM document_chunk "
            "WHERE collection_name = %s",
            (LITERATURE,),
        ).fetchone()
        connection.execute("DELETE FROM document_chunk WHERE collection_name = %s", (LITERATURE,))
    assert lost_units > 0

    assert cli.main(["--no-progress", "--knowledge-only", "--no-index"]) == cli.EXIT_OK

    rerun = instance.get_runs(dg.RunsFilter(job_name="migrate_knowledge_base"), limit=1)[0]
    assert type(instance.event_log_storage).__name__ == "BatchingPostgresEventLogStorage"
    # The run's planned materializations, written in one batch, are one per partition and
    # asset (the UI reads failed and in-progress partitions from them).
    for asset in ("file_inventory", "completeness_report", "embedded_collections"):
        key = dg.AssetKey(asset)
        for partition in (FOUNDING, LITERATURE):
            planned = instance.get_latest_planned_materialization_info(key, partition)
            assert planned.run_id == rerun.run_id, (asset, partition)
        (record,) = instance.get_asset_records([key])
        assert record.asset_entry.last_run_id == rerun.run_id
    for asset in ("file_inventory", "completeness_report", "chunked_documents"):
        founding = latest_figures(instance, rerun.run_id, asset, FOUNDING)
        assert founding["partitions_in_run"] == 2
    founding = latest_figures(instance, rerun.run_id, "embedded_collections", FOUNDING)
    assert "chunks_written" not in founding and "units_complete" not in founding
    assert founding["partitions_with_own_figures"] == 1
    assert founding["run_chunks_written"] == lost_rows

    report = latest_figures(instance, rerun.run_id, "completeness_report", LITERATURE)
    assert report["units_missing"] == lost_units
    assert report["run_units_missing"] == lost_units
    assert report["run_units_complete"] > 0
    written = latest_figures(instance, rerun.run_id, "embedded_collections", LITERATURE)
    assert written["collections_written"] == lost_units
    assert written["chunks_written"] == lost_rows
    assert written["files_failed"] == 0
    assert deployment.counts()[LITERATURE] == lost_rows

    # The checks judged both knowledge bases of the run, and passed.
    evaluations = {
        event.asset_check_evaluation.check_name: event.asset_check_evaluation
        for event in instance.all_logs(
            rerun.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    }
    assert set(evaluations) == {
        "all_collections_complete",
        "no_duplicate_chunks",
        "vector_dimensions_match",
    }
    assert all(evaluation.passed for evaluation in evaluations.values())
    complete = evaluations["all_collections_complete"].metadata
    assert complete["partitions_checked"].value == 2

    capsys.readouterr()
    assert cli.main(["status"]) == cli.EXIT_OK
    status = capsys.readouterr().out
    for key in (FOUNDING, LITERATURE):
        line = next(line for line in status.splitlines() if line.endswith(key))
        complete, units = next(word for word in line.split() if "/" in word).split("/")
        assert complete == units != "0", line


def test_a_failed_run_over_a_range_leaves_each_partition_failed_in_the_ui(
    deployment, fresh_database, monkeypatch
):
    """The run's planned events, written in one batch, are what the UI reads a range run's
    failed partitions from."""
    storage_url = fresh_database("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    (deployment.dagster_home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_PG_URL", storage_url)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "model-not-cached-yet")
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", "http://127.0.0.1:9/v1")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING, LITERATURE])
        ordered = instance.get_dynamic_partitions(knowledge_partitions.name)
        result = defs.resolve_job_def("migrate_knowledge_base").execute_in_process(
            instance=instance,
            run_config={"resources": {"embeddings": {"config": {"max_retries": 0}}}},
            tags={
                "dagster/asset_partition_range_start": ordered[0],
                "dagster/asset_partition_range_end": ordered[-1],
            },
            raise_on_error=False,
        )
        assert not result.success
        storage = instance.event_log_storage
        attempts = (
            storage.get_latest_asset_partition_materialization_attempts_without_materializations(
                dg.AssetKey("embedded_collections")
            )
        )
        assert {key: run_id for key, (run_id, _) in attempts.items()} == {
            FOUNDING: result.run_id,
            LITERATURE: result.run_id,
        }
