"""The Dagster side: materializing a partition, the partitions sensor, the definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pgvector_migration.assets.index import vector_index
from pgvector_migration.definitions import defs
from pgvector_migration.jobs import MIGRATION_ASSETS
from pgvector_migration.partitions import STANDALONE_PARTITION_KEY, knowledge_partitions
from pgvector_migration.sample_data import KNOWLEDGE_BASES
from pgvector_migration.sensors import knowledge_partitions_sensor

FOUNDING = KNOWLEDGE_BASES[0].id


def resources() -> dict:
    """The code location's own resources, as `dagster dev` would use them."""
    return dict(defs.resources)


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    assert {job.name for job in defs.jobs} >= {"migrate_knowledge_base", "rebuild_vector_index"}


def test_runs_keep_their_steps_in_their_own_process():
    """The backfills' runs (of the implicit asset job) and the named jobs alike: a process per
    step was most of a nightly run over complete knowledge bases."""
    jobs = [defs.resolve_implicit_global_asset_job_def()]
    jobs += [defs.resolve_job_def(job.name) for job in defs.jobs]
    assert {job.executor_def.name for job in jobs} == {"in_process"}


def test_dagster_cli_validates_the_code_location(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "pgvector_migration"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "passed validation" in result.stderr + result.stdout


def test_materialize_one_partition_then_index(deployment):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        result = dg.materialize(
            MIGRATION_ASSETS,
            resources=resources(),
            partition_key=FOUNDING,
            instance=instance,
        )
        assert result.success
        (written,) = [
            m.metadata
            for m in result.asset_materializations_for_node("migrate_files")
            if m.asset_key == dg.AssetKey("embedded_collections")
        ]
        report = result.asset_materializations_for_node("completeness_report")[0].metadata
        assert report["units_missing"].value == 6  # 3 files x (own + knowledge collection)
        assert written["collections_written"].value == 6
        counts = deployment.counts()
        assert written["chunks_written"].value == sum(counts.values())
        assert FOUNDING in counts

        index = dg.materialize([vector_index], resources=resources(), instance=instance)
        metadata = index.asset_materializations_for_node("vector_index")[0].metadata
        assert metadata["rows"].value == sum(counts.values())
        with deployment.connect() as connection:
            definition = connection.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_document_chunk_vector'"
            ).fetchone()[0]
        assert "ivfflat" in definition and "vector_cosine_ops" in definition


def test_sensor_keeps_partitions_in_step_with_knowledge_table(deployment):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, ["deleted-knowledge-base"])
        with dg.build_sensor_context(instance=instance, resources=resources()) as context:
            result = knowledge_partitions_sensor(context)
        requests = {type(r).__name__: r for r in result.dynamic_partitions_requests}
        added = set(requests["AddDynamicPartitionsRequest"].partition_keys)
        assert added == {knowledge.id for knowledge in KNOWLEDGE_BASES} | {STANDALONE_PARTITION_KEY}
        assert requests["DeleteDynamicPartitionsRequest"].partition_keys == [
            "deleted-knowledge-base"
        ]
