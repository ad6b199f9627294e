"""The names this package writes under: our own schema, and Open WebUI's table by default."""

from __future__ import annotations

SCHEMA = "pgvector_migration"
# The table Open WebUI searches; a second table beside it (a model switch) takes another name.
DOCUMENT_CHUNK = "document_chunk"
# Serialises our DDL: the state schemas' migrations and the creation of a chunk table.
DDL_LOCK = f"{SCHEMA}.ddl"


def state_schema(table: str) -> str:
    """The schema holding the ledger, cache, leases and failures of the chunk table `table`:
    `pgvector_migration` for Open WebUI's `document_chunk` (as it always was), and the same
    name with the table's suffix for a table beside it, so `document_chunk_shadow`'s state is
    `pgvector_migration_shadow` and a cutover can rename each table with its state."""
    if not table.startswith(DOCUMENT_CHUNK):
        raise ValueError(
            f"chunk table {table!r} is not named {DOCUMENT_CHUNK} or {DOCUMENT_CHUNK}_*"
        )
    return SCHEMA + table[len(DOCUMENT_CHUNK) :]
