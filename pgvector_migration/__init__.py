"""pgvector-migration: rebuild an Open WebUI knowledge store in PostgreSQL + pgvector."""

from pgvector_migration.definitions import defs

__all__ = ["defs"]
