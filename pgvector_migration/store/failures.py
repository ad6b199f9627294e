"""Failures and source notes: why a file, knowledge base or memory could not be migrated, and
what the inventory found odd in the source; failures are data, shown in status and summaries.

A failure's `item_id` is a file id under a knowledge partition, or a knowledge base's or
memory's id under the partition key of its kind of system collection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pgvector_migration.redaction import redact_url
from pgvector_migration.store.state_access import StateAccess


class Failures(StateAccess):
    """The `file_failure` and `source_note` tables."""

    def clear_failures(self, partition_keys: Sequence[str], item_ids: Sequence[str] | None) -> None:
        """Forget the recorded failures of these ids under these keys (None: of every id)."""
        if self.read_only:
            return
        with self._connect() as connection:
            if item_ids is None:
                connection.execute(
                    f"DELETE FROM {self.schema}.file_failure WHERE partition_key = ANY(%s)",
                    (list(partition_keys),),
                )
                return
            connection.execute(
                f"DELETE FROM {self.schema}.file_failure "
                "WHERE partition_key = ANY(%s) AND item_id = ANY(%s)",
                (list(partition_keys), list(item_ids)),
            )

    def replace_source_notes(
        self, partition_keys: Sequence[str], notes: Iterable[tuple[str, str, str]]
    ) -> None:
        """Store what the inventory found odd in the source for these partitions, as
        (partition key, id, note), replacing the notes of their previous run."""
        self._replace_partitions(
            "source_note", ("partition_key", "subject_id", "note"), partition_keys, notes
        )

    def source_notes(self, partition_keys: Sequence[str]) -> list[dict[str, str]]:
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT DISTINCT subject_id, note FROM {self.schema}.source_note "
                "WHERE partition_key = ANY(%s) ORDER BY subject_id, note",
                (list(partition_keys),),
            ).fetchall()
        return [{"id": row[0], "note": row[1]} for row in rows]

    def record_failure(
        self, partition_key: str, item_id: str, filename: str, stage: str, error: str
    ) -> None:
        """Record why a file (or memory, knowledge base) failed, its URLs redacted; a
        read-only view records nothing."""
        if self.read_only:
            return
        error = redact_url(error)
        with self._connect() as connection:
            connection.execute(
                f"""
                INSERT INTO {self.schema}.file_failure
                    (partition_key, item_id, filename, stage, error)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (partition_key, item_id) DO UPDATE SET
                    stage = EXCLUDED.stage, error = EXCLUDED.error, failed_at = now()
                """,
                (partition_key, item_id, filename, stage, error),
            )

    def failures(self, partition_keys: Sequence[str]) -> list[dict[str, Any]]:
        """Recorded failures under these keys (partitions, or kinds of system collection)."""
        return self._dict_rows(
            "SELECT partition_key, item_id, filename, stage, error "
            f"FROM {self.schema}.file_failure "
            "WHERE partition_key = ANY(%s) ORDER BY partition_key, filename, item_id",
            (list(partition_keys),),
        )

    def failed_files(self) -> dict[str, list[str]]:
        """Item ids recorded as failed, per partition (file ids under knowledge partitions)."""
        if not self.recorded:
            return {}
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT partition_key, item_id FROM {self.schema}.file_failure ORDER BY 1, 2"
            ).fetchall()
        failed: dict[str, list[str]] = {}
        for partition_key, item_id in rows:
            failed.setdefault(partition_key, []).append(item_id)
        return failed
