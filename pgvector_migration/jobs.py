"""Jobs: migrate one knowledge partition; rebuild the vector index once loading is done."""

from dagster import AssetSelection, define_asset_job

from pgvector_migration.assets.completeness import completeness_report
from pgvector_migration.assets.file_migration import migrate_files
from pgvector_migration.assets.index import document_chunk_table, vector_index
from pgvector_migration.assets.inventory import file_inventory
from pgvector_migration.assets.model_switch import SWITCH_ASSETS, model_switch_shadow
from pgvector_migration.assets.pruning import pruned_file_rows
from pgvector_migration.assets.retrieval_quality import retrieval_quality
from pgvector_migration.assets.system_collections import (
    knowledge_base_collection,
    memory_collections,
)

# migrate_files materializes chunked_documents, transplanted_embeddings and
# embedded_collections in one step (see assets/file_migration.py).
MIGRATION_ASSETS = [file_inventory, completeness_report, migrate_files]
SYSTEM_COLLECTION_ASSETS = [knowledge_base_collection, memory_collections]

migrate_knowledge_base = define_asset_job(
    name="migrate_knowledge_base",
    selection=AssetSelection.assets(*MIGRATION_ASSETS),
    description="Re-process every file of one knowledge partition into document_chunk.",
    tags={"dagster/max_runtime": 86400},
)

assess_knowledge_base = define_asset_job(
    name="assess_knowledge_base",
    selection=AssetSelection.assets(file_inventory, completeness_report),
    description="Inventory and completeness report only: what a migration would do (dry run).",
)

rebuild_vector_index = define_asset_job(
    name="rebuild_vector_index",
    selection=AssetSelection.assets(document_chunk_table, vector_index),
    description="Check document_chunk as a whole, then rebuild its ANN index.",
)

rebuild_system_collections = define_asset_job(
    name="rebuild_system_collections",
    selection=AssetSelection.assets(*SYSTEM_COLLECTION_ASSETS),
    description="Rebuild the knowledge-bases and user-memory-* collections.",
)

prune_orphaned_rows = define_asset_job(
    name="prune_orphaned_rows",
    selection=AssetSelection.assets(pruned_file_rows),
    description="Delete rows of deleted files and knowledge bases from document_chunk.",
)

verify_retrieval = define_asset_job(
    name="verify_retrieval",
    selection=AssetSelection.assets(retrieval_quality),
    description="Measure Open WebUI's search on the run's knowledge bases (one or a range): "
    "recall against exact search, self-retrieval, latency; its checks fail below the "
    "thresholds. Not part of migrate_knowledge_base: it needs the index built.",
)

switch_embedding_model = define_asset_job(
    name="switch_embedding_model",
    selection=AssetSelection.assets(*SWITCH_ASSETS),
    description="Change the embedding model with no downtime: build (or bring up to date) "
    "document_chunk_shadow with the model the run config names, check it (blocking: complete, "
    "no duplicates, declared dimension, recall), then cut over in one transaction.",
)

build_model_switch_shadow = define_asset_job(
    name="build_model_switch_shadow",
    selection=AssetSelection.assets(model_switch_shadow),
    description="A model switch's shadow build and its checks, without the cutover: "
    "switch_embedding_model later brings it up to date and cuts over.",
)
