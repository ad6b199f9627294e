"""Operating it in Dagster: automation, the index sensor, checks, re-execution from failure,
parallel runs on one PostgreSQL-backed instance, `status` and `--retry-failed`."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pgvector_migration import cli
from pgvector_migration.definitions import defs
from pgvector_migration.jobs import MIGRATION_ASSETS
from pgvector_migration.partitions import (
    STANDALONE_PARTITION_KEY,
    knowledge_partitions,
    partition_runs,
)
from pgvector_migration.sample_data import KNOWLEDGE_BASES, sample_file_id
from pgvector_migration.sensors import vector_index_after_loading

FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)
T0 = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)


def resources() -> dict:
    """The code location's own resources, as `dagster dev` would use them."""
    return dict(defs.resources)


def migration_job():
    return defs.resolve_job_def("migrate_knowledge_base")


def test_automation_requests_new_partitions_once_and_all_of_them_nightly():
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=T0)
        keys = [FOUNDING, LITERATURE, STANDALONE_PARTITION_KEY]
        instance.add_dynamic_partitions(knowledge_partitions.name, keys)

        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=T0 + datetime.timedelta(minutes=1),
            cursor=result.cursor,
        )
        for asset in ("file_inventory", "completeness_report", "embedded_collections"):
            assert result.get_requested_partitions(dg.AssetKey(asset)) == set(keys)

        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=T0 + datetime.timedelta(minutes=2),
            cursor=result.cursor,
        )
        assert result.total_requested == 0, "nothing new, no cron tick: nothing requested"

        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=T0 + datetime.timedelta(hours=15),
            cursor=result.cursor,
        )
        assert result.get_requested_partitions(dg.AssetKey("file_inventory")) == set(keys)
        # The knowledge-bases collection follows its knowledge partitions: once their inventory
        # has run (nightly, or a new knowledge base's first run), not before.
        assert result.get_num_requested(dg.AssetKey("knowledge_base_collection")) == 0
        for key in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key="file_inventory", partition=key)
            )
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            evaluation_time=T0 + datetime.timedelta(hours=15, minutes=5),
            cursor=result.cursor,
        )
        assert result.get_num_requested(dg.AssetKey("knowledge_base_collection")) == 1


def test_index_sensor_waits_for_loading_then_requests_one_build(deployment):
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources()) as context:
            assert isinstance(vector_index_after_loading(context), dg.SkipReason)
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING, LITERATURE])
        for key in (FOUNDING, LITERATURE):
            dg.materialize(
                MIGRATION_ASSETS, resources=resources(), partition_key=key, instance=instance
            )
        with dg.build_sensor_context(instance=instance, resources=resources()) as context:
            request = vector_index_after_loading(context)
        assert isinstance(request, dg.RunRequest)

        defs.resolve_job_def("rebuild_vector_index").execute_in_process(instance=instance)
        with dg.build_sensor_context(instance=instance, resources=resources()) as context:
            assert isinstance(vector_index_after_loading(context), dg.SkipReason)


def index_sensor_asks(instance) -> bool:
    with dg.build_sensor_context(instance=instance, resources=resources()) as context:
        return isinstance(vector_index_after_loading(context), dg.RunRequest)


def test_index_sensor_ignores_a_model_switch_shadow_build(deployment):
    """A shadow build writes and indexes document_chunk_shadow under the same asset keys: the
    live index neither needs a rebuild for it nor counts as rebuilt by it."""
    shadow = {"resources": {"vector_store": {"config": {"table_name": "document_chunk_shadow"}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        assert migration_job().execute_in_process(instance=instance, partition_key=FOUNDING).success
        defs.resolve_job_def("rebuild_vector_index").execute_in_process(instance=instance)
        assert not index_sensor_asks(instance)

        build = migration_job().execute_in_process(
            run_config=shadow, instance=instance, partition_key=FOUNDING
        )
        assert build.success
        written = [
            m
            for m in build.asset_materializations_for_node("migrate_files")
            if m.asset_key == dg.AssetKey("embedded_collections")
        ]
        assert [m.metadata["table"].value for m in written] == ["document_chunk_shadow"]
        assert not index_sensor_asks(instance), "the shadow's rows are not the live table's"

        with deployment.connect() as connection:
            connection.execute("DELETE FROM document_chunk WHERE collection_name = %s", (FOUNDING,))
        rewrite = migration_job().execute_in_process(instance=instance, partition_key=FOUNDING)
        assert rewrite.success
        defs.resolve_job_def("rebuild_vector_index").execute_in_process(
            run_config=shadow, instance=instance
        )
        assert index_sensor_asks(instance), "the shadow's index is not the live table's"


def check_results(result) -> dict[str, bool]:
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


def test_checks_catch_a_duplicate_and_a_wrong_dimension_and_block_the_index(deployment):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        clean = migration_job().execute_in_process(instance=instance, partition_key=FOUNDING)
        assert check_results(clean) == {
            "all_collections_complete": True,
            "no_duplicate_chunks": True,
            "vector_dimensions_match": True,
        }
        with deployment.connect() as connection:
            connection.execute(
                "INSERT INTO document_chunk SELECT 'copy-1', vector, collection_name, text, "
                "vmetadata FROM document_chunk WHERE collection_name = %s LIMIT 1",
                (FOUNDING,),
            )
            connection.execute("ALTER TABLE document_chunk ALTER COLUMN vector TYPE vector")
            connection.execute(
                "INSERT INTO document_chunk (id, vector, collection_name, text, vmetadata) "
                "VALUES ('short-1', '[1,2,3]', %s, 'odd', '{}')",
                (FOUNDING,),
            )
        # Only the last step and its checks: nothing is staged, so nothing is rewritten.
        dirty = migration_job().execute_in_process(
            instance=instance,
            partition_key=FOUNDING,
            asset_selection=[dg.AssetKey("embedded_collections")],
        )
        results = check_results(dirty)
        assert results["no_duplicate_chunks"] is False
        assert results["vector_dimensions_match"] is False

        index_run = defs.resolve_job_def("rebuild_vector_index").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert check_results(index_run)["table_has_no_duplicate_chunks"] is False
        assert not index_run.asset_materializations_for_node("vector_index")


def reconstructable_migration_job():
    return migration_job()


def test_failed_partition_is_reexecuted_from_failure_only(deployment, monkeypatch):
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "model-not-cached-yet")
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", "http://127.0.0.1:9/v1")
    job = dg.reconstructable(reconstructable_migration_job)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        no_retries = {"resources": {"embeddings": {"config": {"max_retries": 0}}}}
        with dg.execute_job(
            job,
            instance=instance,
            run_config=no_retries,
            tags={"dagster/partition": FOUNDING},
            raise_on_error=False,
        ) as failed:
            assert not failed.success
            failed_steps = {e.step_key for e in failed.all_events if e.is_step_failure}
            # chunked_documents and embedded_collections are one step (migrate_files).
            assert failed_steps == {"migrate_files"}
            run_id = failed.run_id

        monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", deployment.server.base_url)
        options = dg.ReexecutionOptions.from_failure(run_id, instance)
        with dg.execute_job(
            job,
            instance=instance,
            reexecution_options=options,
            tags={"dagster/partition": FOUNDING},
            raise_on_error=False,
        ) as retried:
            errors = [
                e.event_specific_data.error.to_string()
                for e in retried.all_events
                if e.is_step_failure
            ]
            assert retried.success, errors
            executed = {e.step_key for e in retried.all_events if e.is_step_success}
        assert "file_inventory" not in executed and "completeness_report" not in executed
        assert "migrate_files" in executed
        assert FOUNDING in deployment.counts()


def test_cli_runs_many_partitions_per_run_then_rebuilds_the_index_once(deployment, tmp_path):
    cli.main(["--no-progress"])
    instance = dg.DagsterInstance.get()
    migrations = instance.get_runs(dg.RunsFilter(job_name="migrate_knowledge_base"))
    indexes = instance.get_runs(dg.RunsFilter(job_name="rebuild_vector_index"))
    # One run covers every knowledge partition: a range of the instance's partition order.
    assert len(migrations) == 1
    (run,) = migrations
    assert run.status == dg.DagsterRunStatus.SUCCESS
    ordered = instance.get_dynamic_partitions(knowledge_partitions.name)
    assert set(ordered) == {FOUNDING, LITERATURE, STANDALONE_PARTITION_KEY}
    assert run.tags["dagster/asset_partition_range_start"] == ordered[0]
    assert run.tags["dagster/asset_partition_range_end"] == ordered[-1]
    # Each partition has its own materialization, with its own figures.
    for key in ordered:
        events = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("embedded_collections"), asset_partitions=[key]
            ),
            limit=1,
        ).records
        assert events, key
        metadata = events[0].asset_materialization.metadata
        assert metadata["collections_written"].value > 0
        assert metadata["partitions_in_run"].value == 3
        # The sample's corrupt PDF is in no knowledge base: only that partition says so.
        expected_failed = 1 if key == STANDALONE_PARTITION_KEY else 0
        assert metadata["files_failed"].value == expected_failed, key
    # Without an old vector store the transplant step is left out of the run.
    assert not instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("transplanted_embeddings")), limit=1
    ).records
    # The run is green (the other files are written) but is tagged, and its check is an error.
    assert run.tags["pgvector_migration/files_failed"] == "1"
    (evaluation,) = [
        event.asset_check_evaluation
        for event in instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        if event.asset_check_evaluation.check_name == "all_collections_complete"
    ]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["partitions_with_problems"].value == [STANDALONE_PARTITION_KEY]
    assert len(indexes) == 1
    assert indexes[0].status == dg.DagsterRunStatus.SUCCESS

    # A re-run that writes nothing keeps the index instead of rebuilding it; smaller runs on
    # request.
    rerun = cli.main(["--no-progress", "--partitions-per-run", "2"])
    assert rerun == cli.EXIT_FAILED  # the sample's corrupt PDF, failed again
    assert len(instance.get_runs(dg.RunsFilter(job_name="rebuild_vector_index"))) == 1
    assert len(instance.get_runs(dg.RunsFilter(job_name="migrate_knowledge_base"))) == 1 + 2


def test_partition_runs_are_contiguous_ranges_of_bounded_size():
    ordered = ["a", "b", "c", "d", "e", "f", "g"]
    assert partition_runs(ordered, ordered, 3) == [
        ["a", "b", "c"],
        ["d", "e", "f"],
        ["g"],
    ]
    # An unselected key between two selected ones splits the range; order is the instance's.
    assert partition_runs(ordered, ["f", "a", "b", "d"], 10) == [
        ["a", "b"],
        ["d"],
        ["f"],
    ]
    assert partition_runs(ordered, [], 3) == []


def test_cli_completes_on_an_instance_with_settings(deployment, tmp_path):
    """With a dagster.yaml, Dagster configures Python logging at every run start: runs one
    after another in the CLI's process complete."""
    (deployment.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    code = cli.main(["--no-progress", "--only", "files"])

    assert code == cli.EXIT_FAILED  # the sample's corrupt PDF
    runs = dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name="migrate_knowledge_base"))
    assert len(runs) == 1
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)


def test_two_partitions_run_in_parallel_processes_on_one_instance(
    deployment, fresh_database, tmp_path
):
    home = tmp_path / "shared_home"
    home.mkdir()
    storage_url = fresh_database("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    dagster_yaml = (Path(__file__).parents[1] / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(dagster_yaml)
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": storage_url}
    setup = (
        "import dagster as dg; from pgvector_migration.partitions import knowledge_partitions; "
        f"dg.DagsterInstance.get().add_dynamic_partitions(knowledge_partitions.name, "
        f"{[FOUNDING, LITERATURE]!r})"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, check=True)
    dagster = Path(sys.executable).parent / "dagster"
    runs = [
        subprocess.Popen(
            [
                str(dagster),
                "job",
                "execute",
                "-m",
                "pgvector_migration",
                "-j",
                "migrate_knowledge_base",
                "--tags",
                json.dumps({"dagster/partition": key}),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key in (FOUNDING, LITERATURE)
    ]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    failed_tails = [
        "\n".join(output.splitlines()[-60:])
        for run, output in zip(runs, outputs, strict=True)
        if run.returncode != 0
    ]
    assert not failed_tails, "\n----\n".join(failed_tails)

    counts = deployment.counts()
    shared = sample_file_id("gettysburg_and_inaugural.txt")
    assert {FOUNDING, LITERATURE, f"file-{shared}"} <= set(counts)
    assert deployment.duplicate_groups() == 0
    check = (
        "import dagster as dg; print(len(dg.DagsterInstance.get().get_runs("
        "dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", check], env=env, check=True, capture_output=True, text=True
    )
    assert finished.stdout.strip().splitlines()[-1] == "2"


def test_status_and_retry_failed(deployment, tmp_path, capsys):
    cli.main(["--no-progress", "--only", "files"])
    capsys.readouterr()

    assert cli.main(["status"]) == cli.EXIT_OK
    status = capsys.readouterr().out
    assert "American founding documents" in status and "6/6" in status
    assert "(files in no knowledge base)" in status

    summary_path = tmp_path / "retry.json"
    code = cli.main(["--no-progress", "--retry-failed", "--summary-json", str(summary_path)])
    summary = json.loads(summary_path.read_text())
    assert code == cli.EXIT_FAILED
    assert summary["files_total"] == 1
    assert [f["file_id"] for f in summary["files_failed"]] == [sample_file_id("broken_report.pdf")]


@pytest.mark.parametrize("rows, lists", [(0, 1), (5_000, 5), (1_000_000, 1000), (4_000_000, 2000)])
def test_ivfflat_lists_follow_pgvector_guidance(rows, lists):
    from pgvector_migration.resources.vector_index import ivfflat_lists_for

    assert ivfflat_lists_for(rows) == lists
