"""The model switch as Dagster runs it: `switch_embedding_model` builds the shadow with the model
its run config names, its blocking checks judge the shadow (complete, no duplicates, declared
dimension, recall of Open WebUI's search on the shadow), and `model_switch_cutover` swaps only
when every check passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from pgvector_migration import cli
from pgvector_migration.model_switch_cutover import shadow_view
from pgvector_migration.resources.search_tuning import describe_search_index
from pgvector_migration.resources.search_verification import knowledge_collections
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.run_launcher import cli_instance
from pgvector_migration_tests.conftest import TEST_DIMENSIONS
from pgvector_migration_tests.test_model_switch import (
    NEW_DIMENSIONS,
    NEW_MODEL,
    SWITCH,
    add_standalone_file,
    chunks,
    dimension,
    live_fingerprint,
    migrate_with_model_a,
    run,
)
from pgvector_migration_tests.test_switch_openwebui_settings import config_rows

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKS = {
    "shadow_is_complete",
    "shadow_has_no_duplicate_chunks",
    "shadow_has_declared_dimension",
    "shadow_recall_meets_threshold",
}


@pytest.fixture
def migrated(deployment, tmp_path):
    return migrate_with_model_a(deployment, tmp_path)


def switch_run(tmp_path: Path, **config) -> tuple[DagsterInstance, str]:
    """`dagster job execute -m pgvector_migration -j switch_embedding_model -c FILE`, as the
    README says, in the deployment's DAGSTER_HOME; the instance and the run's id."""
    config_file = tmp_path / "switch.yaml"
    run_config = {"ops": {"model_switch_shadow": {"config": {"model": NEW_MODEL, **config}}}}
    config_file.write_text(json.dumps(run_config))  # JSON is YAML
    command = [str(BIN / "dagster"), "job", "execute", "-m", "pgvector_migration"]
    subprocess.run(
        [*command, "-j", "switch_embedding_model", "-c", str(config_file)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=900,
        check=False,
    )
    instance = cli_instance()
    (run,) = instance.get_runs(filters=RunsFilter(job_name="switch_embedding_model"), limit=1)
    return instance, run.run_id


def check_results(instance: DagsterInstance, run_id: str) -> dict[str, bool]:
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        event.dagster_event.event_specific_data.check_name: (
            event.dagster_event.event_specific_data.passed
        )
        for event in events
    }


def run_status(instance: DagsterInstance, run_id: str) -> DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def test_the_switch_job_builds_checks_and_cuts_over(migrated, tmp_path):
    old_rows = chunks(migrated.connect(), "document_chunk")

    instance, run_id = switch_run(tmp_path, dimension=NEW_DIMENSIONS)

    assert run_status(instance, run_id) == DagsterRunStatus.SUCCESS
    assert check_results(instance, run_id) == dict.fromkeys(CHECKS, True)
    event = instance.get_latest_materialization_event(AssetKey("model_switch_cutover"))
    assert event.run_id == run_id
    cutover = event.asset_materialization
    assert NEW_MODEL in cutover.metadata["after"].value
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={NEW_DIMENSIONS}" in (
        cutover.metadata["open_webui_settings"].value
    )
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == NEW_DIMENSIONS
        assert dimension(connection, "document_chunk_previous") == TEST_DIMENSIONS
        assert chunks(connection, "document_chunk") == old_rows
    # The build's runs are the ordinary jobs, recorded in the same instance for the UI.
    jobs = {run.job_name for run in instance.get_runs()}
    assert {"migrate_knowledge_base", "rebuild_system_collections", "rebuild_vector_index"} <= jobs


def test_a_failing_blocking_check_stops_the_cutover(migrated, tmp_path):
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED  # the shadow, built by the CLI
    before = live_fingerprint(migrated)
    add_standalone_file(migrated, "added_meanwhile.txt", "Uploaded during the build.\n")
    migrated.server.fail_next(100, 400)  # the provider refuses the new file in the shadow

    instance, run_id = switch_run(tmp_path)

    checks = check_results(instance, run_id)
    assert checks["shadow_is_complete"] is False
    assert checks["shadow_has_declared_dimension"] is True
    assert run_status(instance, run_id) != DagsterRunStatus.SUCCESS
    assert instance.get_latest_materialization_event(AssetKey("model_switch_cutover")) is None
    assert live_fingerprint(migrated) == before, "the live table and its ledger are untouched"
    with migrated.connect() as connection:
        assert dimension(connection, "document_chunk") == TEST_DIMENSIONS
        assert dimension(connection, "document_chunk_previous") is None


def test_verify_probes_the_shadow(migrated, tmp_path):
    assert run(tmp_path, *SWITCH)[0] == cli.EXIT_FAILED
    live = PgVectorResource()
    shadow = shadow_view(live)
    try:
        expected = knowledge_collections(live)
        assert knowledge_collections(shadow) == expected
        with shadow.connect() as connection:
            assert describe_search_index(connection, shadow.table_name).method is not None
    finally:
        shadow.close()
        live.close()
    summary_path = tmp_path / "verify.json"
    verify = ["verify", "--shadow", "--summary-json", str(summary_path)]

    assert cli.main([*verify, "--model", NEW_MODEL]) == cli.EXIT_OK

    summary = json.loads(summary_path.read_text())
    assert summary["table"] == "document_chunk_shadow" and summary["passed"]
    assert len(summary["before"]) == len(expected)
    assert cli.main(verify) == cli.EXIT_CONFIG, "the shadow's queries need its model"
    assert cli.main([*verify, "--model", NEW_MODEL, "--tune"]) == cli.EXIT_CONFIG


def test_a_run_without_the_code_location_says_how_to_launch_it(deployment):
    from pgvector_migration.definitions import build_definitions

    job = build_definitions().resolve_job_def("switch_embedding_model")
    config = {"model": NEW_MODEL, "dimension": NEW_DIMENSIONS}
    result = job.execute_in_process(
        run_config={"ops": {"model_switch_shadow": {"config": config}}},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert "dagster job execute -m pgvector_migration" in (
        failure.event_specific_data.error.message
    )
    with deployment.connect() as connection:
        assert dimension(connection, "document_chunk_shadow") is None


def test_the_cutover_asset_writes_open_webuis_settings_and_the_cli_puts_them_back(
    migrated, tmp_path
):
    """`write_openwebui_settings` in the run config: the asset writes the two keys after the
    swap (the same write as `switch --cutover --write-openwebui-settings`), recorded with the
    switch, so `switch --rollback --write-openwebui-settings` puts back what was there."""
    before = config_rows(migrated)

    instance, run_id = switch_run(tmp_path, dimension=NEW_DIMENSIONS, write_openwebui_settings=True)

    assert run_status(instance, run_id) == DagsterRunStatus.SUCCESS
    cutover = instance.get_latest_materialization_event(AssetKey("model_switch_cutover"))
    metadata = cutover.asset_materialization.metadata
    assert f"rag.embedding_model='{NEW_MODEL}'" in metadata["open_webui_settings_written"].value
    assert "RAG_EMBEDDING_MODEL=" not in metadata["open_webui_settings"].value
    assert config_rows(migrated)["rag.embedding_model"] == f'"{NEW_MODEL}"'

    assert cli.main(["switch", "--rollback", "--write-openwebui-settings"]) == cli.EXIT_OK
    assert config_rows(migrated) == before
