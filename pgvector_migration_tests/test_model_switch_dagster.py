"""The model switch as Dagster runs it: `switch_embedding_model` builds the shadow with the model
its run config names, its blocking checks judge the shadow (complete, no duplicates, declared
dimension, recall of Open WebUI's search on the shadow), and `model_switch_cutover` swaps only
when every check passed."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from pgvector_migration import cli
from pgvector_migration.assets.model_switch import shadow_view
from pgvector_migration.definitions import build_definitions
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

CHECKS = {
    "shadow_is_complete",
    "shadow_has_no_duplicate_chunks",
    "shadow_has_declared_dimension",
    "shadow_recall_meets_threshold",
}


@pytest.fixture
def migrated(deployment, tmp_path):
    return migrate_with_model_a(deployment, tmp_path)


def switch_run(instance: DagsterInstance, **config):
    job = build_definitions().resolve_job_def("switch_embedding_model")
    return job.execute_in_process(
        run_config={"ops": {"model_switch_shadow": {"config": {"model": NEW_MODEL, **config}}}},
        instance=instance,
        raise_on_error=False,
    )


def check_results(result) -> dict[str, bool]:
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


def test_the_switch_job_builds_checks_and_cuts_over(migrated):
    old_rows = chunks(migrated.connect(), "document_chunk")
    instance = cli_instance()

    result = switch_run(instance, dimension=NEW_DIMENSIONS)

    assert result.success
    assert check_results(result) == dict.fromkeys(CHECKS, True)
    (cutover,) = result.asset_materializations_for_node("model_switch_cutover")
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
    instance = cli_instance()

    result = switch_run(instance)

    assert not result.success
    checks = check_results(result)
    assert checks["shadow_is_complete"] is False
    assert checks["shadow_has_declared_dimension"] is True
    assert not result.asset_materializations_for_node("model_switch_cutover")
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
        assert knowledge_collections(shadow) == knowledge_collections(live)
        with shadow.connect() as connection:
            assert describe_search_index(connection, shadow.table_name).method is not None
    finally:
        shadow.close()
        live.close()
