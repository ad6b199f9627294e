"""The names this package writes under: our own schema, and Open WebUI's table by default."""

from __future__ import annotations

SCHEMA = "pgvector_migration"
# The table Open WebUI searches; a second table beside it (a model switch) takes another name.
DOCUMENT_CHUNK = "document_chunk"
# Serialises our DDL: the state schema's migrations and the creation of a chunk table.
DDL_LOCK = f"{SCHEMA}.ddl"
