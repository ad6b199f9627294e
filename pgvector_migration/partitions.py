"""The knowledge-base partitions: one key per knowledge id, plus one for files in none."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DynamicPartitionsDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from pgvector_migration.pipeline.records import STANDALONE_PARTITION_KEY

knowledge_partitions = DynamicPartitionsDefinition(name="knowledge_bases")


def partition_runs(ordered_keys: Sequence[str], selected: Sequence[str], per_run: int):
    """The selected partitions grouped into runs of at most `per_run`, each a contiguous range
    of the instance's partition order (a Dagster run covers a range of partitions, so an
    unselected key between two selected ones starts a new run). The CLI's runs and a model
    switch's shadow build are cut this way."""
    wanted = set(selected)
    runs: list[list[str]] = []
    current: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(current) < per_run:
            current.append(key)
            continue
        if current:
            runs.append(current)
        current = [key] if key in wanted else []
    if current:
        runs.append(current)
    return runs


def partition_range(keys: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """One of those runs as `execute_in_process` takes it: the partition key of a run of one
    partition, else the tags that make it a run over the range from the first to the last."""
    if len(keys) == 1:
        return keys[0], {}
    return None, {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}


__all__ = ["STANDALONE_PARTITION_KEY", "knowledge_partitions", "partition_range", "partition_runs"]
