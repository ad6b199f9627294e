"""One pass of a model switch's shadow build, as Dagster runs of the ordinary jobs: every
knowledge partition (`migrate_knowledge_base`, runs of a range of partitions each, as a backfill
makes them), the knowledge-bases and memory collections, the pruning of what Open WebUI deleted,
and the vector index, all aimed at `document_chunk_shadow` with the new model by run config.

It is what `pgvector-migrate switch --model M` runs, started from a step of the switch's assets
so the UI's `switch_embedding_model` job builds, checks and cuts over in one launch, and so the
cutover can pass again when Open WebUI changes its data during the swap (`model_switch_cutover`).
The runs are recorded in the step's own instance and show in the UI as runs of those jobs.
Only the settings that differ from the code location's resources go into their run config (the
table, its dimension, the model and engine), never a URL or a key.
"""

from __future__ import annotations

from dagster import AssetExecutionContext, AssetKey, Failure
from dagster_shared.check.functions import CheckError

from pgvector_migration.assets.common import partitions_per_run
from pgvector_migration.partitions import knowledge_partitions, partition_range, partition_runs
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# A switch's shadow is built from the source with the new model; the transplant of an old
# store's vectors (made with the old model) has no part in it.
FILE_ASSETS = ["file_inventory", "completeness_report", "chunked_documents", "embedded_collections"]
SOURCE_TAG = {"pgvector_migration/source": "model_switch"}


def shadow_resource_config(
    shadow: PgVectorResource, engine: str | None, model: str
) -> dict[str, object]:
    """The run config's `resources` that aim the ordinary jobs at the shadow and the model."""
    table = {"table_name": shadow.table_name, "vector_length": shadow.vector_length}
    if shadow.use_halfvec is not None:
        table["use_halfvec"] = shadow.use_halfvec
    embeddings: dict[str, object] = {"model": model}
    if engine is not None:
        embeddings["engine"] = engine
    return {"vector_store": {"config": table}, "embeddings": {"config": embeddings}}


def code_location_jobs(context: AssetExecutionContext):
    """The repository the run was loaded from (a run launched from the UI, a schedule, `dagster
    job execute` or `dagster asset materialize` has one; a bare `execute_in_process` has not)."""
    try:
        return context.repository_def
    except CheckError:
        raise Failure(
            description="the shadow build runs the code location's own jobs: launch "
            "switch_embedding_model from the UI or with `dagster job execute -m "
            "pgvector_migration -j switch_embedding_model -c FILE`"
        ) from None


def build_pass(
    context: AssetExecutionContext,
    openwebui: OpenWebUIResource,
    resources: dict[str, object],
) -> list[str]:
    """Run one pass into the shadow; the runs that failed, each with its run id (a unit that
    failed is recorded in the shadow's ledger, and the cutover's checks judge it)."""
    instance, repository = context.instance, code_location_jobs(context)
    wanted = openwebui.partition_keys()
    existing = set(instance.get_dynamic_partitions(knowledge_partitions.name))
    missing = [key for key in wanted if key not in existing]
    if missing:
        instance.add_dynamic_partitions(knowledge_partitions.name, missing)
    ordered = instance.get_dynamic_partitions(knowledge_partitions.name)
    config = {**QUIET_LOGS, "resources": resources}
    failed = []

    def execute(job_name: str, run_config: dict, tags: dict, **options) -> None:
        result = repository.get_job(job_name).execute_in_process(
            run_config=run_config,
            instance=instance,
            tags={**SOURCE_TAG, **tags},
            raise_on_error=False,
            **options,
        )
        if not result.success:
            failed.append(f"{job_name} run {result.run_id}")
        context.log.info(f"shadow build: {job_name} run {result.run_id} done")

    # The system collections first, as the CLI runs them (see cli.run_migration).
    system = {"prune": True}
    execute(
        "rebuild_system_collections",
        {
            **config,
            "ops": {
                "knowledge_base_collection": {"config": system},
                "memory_collections": {"config": system},
            },
        },
        {},
    )
    files = [AssetKey(name) for name in FILE_ASSETS]
    for keys in partition_runs(ordered, wanted, partitions_per_run()):
        partition_key, range_tags = partition_range(keys)
        execute(
            "migrate_knowledge_base",
            config,
            range_tags,
            partition_key=partition_key,
            asset_selection=files,
        )
    execute("prune_orphaned_rows", config, {})
    execute("rebuild_vector_index", config, {})
    return failed
