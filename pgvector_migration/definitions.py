"""The one Definitions object of the code location."""

from __future__ import annotations

import os
import warnings

from dagster import Definitions, PreviewWarning, in_process_executor

from pgvector_migration.assets.index import document_chunk_table, vector_index
from pgvector_migration.assets.model_switch import SWITCH_ASSETS, SWITCH_CHECKS
from pgvector_migration.assets.pruning import pruned_file_rows
from pgvector_migration.assets.retrieval_quality import RETRIEVAL_CHECKS, retrieval_quality
from pgvector_migration.jobs import (
    MIGRATION_ASSETS,
    SYSTEM_COLLECTION_ASSETS,
    assess_knowledge_base,
    build_model_switch_shadow,
    migrate_knowledge_base,
    prune_orphaned_rows,
    rebuild_system_collections,
    rebuild_vector_index,
    switch_embedding_model,
    verify_retrieval,
)
from pgvector_migration.resources.embedding import EmbeddingResource
from pgvector_migration.resources.old_vector_store import OldVectorStoreResource
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.sensors import (
    knowledge_partitions_sensor,
    nightly_migration,
    vector_index_after_loading,
)

# A migration run covers many knowledge bases, and Dagster records one materialization per
# knowledge base and asset. With this set, a step's materializations are written in batches of
# this size (one INSERT each on PostgreSQL instance storage; SQLite stores them one by one
# either way), in this process and in every run worker that loads the code location.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "500")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)
    from pgvector_migration.checks import PARTITION_CHECKS, TABLE_CHECKS


def build_definitions(**resources: object) -> Definitions:
    """The code location's definitions; `resources` replace the defaults by key (the CLI
    passes its flags this way)."""
    return Definitions(
        assets=[
            *MIGRATION_ASSETS,
            *SYSTEM_COLLECTION_ASSETS,
            pruned_file_rows,
            document_chunk_table,
            vector_index,
            retrieval_quality,
            *SWITCH_ASSETS,
        ],
        asset_checks=[*PARTITION_CHECKS, *TABLE_CHECKS, *RETRIEVAL_CHECKS, *SWITCH_CHECKS],
        jobs=[
            migrate_knowledge_base,
            assess_knowledge_base,
            rebuild_system_collections,
            prune_orphaned_rows,
            rebuild_vector_index,
            verify_retrieval,
            switch_embedding_model,
            build_model_switch_shadow,
        ],
        sensors=[knowledge_partitions_sensor, nightly_migration, vector_index_after_loading],
        # Every job's steps in its run's own process, as the CLI runs them: the migration is a
        # chain (each step waits for the one before), so a process per step bought no
        # parallelism and cost a Python start, a code location load and a resource set-up per
        # step, most of a nightly run over complete knowledge bases. Pools still apply.
        executor=in_process_executor,
        resources={
            "openwebui": OpenWebUIResource(),
            "vector_store": PgVectorResource(),
            "embeddings": EmbeddingResource(),
            "old_vector_store": OldVectorStoreResource(),
            **resources,
        },
    )


defs = build_definitions()
