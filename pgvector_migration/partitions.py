"""The knowledge-base partitions: one key per knowledge id, plus one for files in none."""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition

from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY

knowledge_partitions = DynamicPartitionsDefinition(name="knowledge_bases")

__all__ = ["STANDALONE_PARTITION_KEY", "knowledge_partitions"]
