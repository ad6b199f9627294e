"""`MigrationState`: every reader and writer of our state schema in one object, for the steps
that use several (an asset records failures, reads its ledger and streams staged chunks). Each
part is usable alone; this class only composes them."""

from __future__ import annotations

from pgvector_migration.store.embedding_cache import EmbeddingCache
from pgvector_migration.store.failures import Failures
from pgvector_migration.store.leases import PartitionLeases
from pgvector_migration.store.ledger import Ledger
from pgvector_migration.store.reports import StatusReports
from pgvector_migration.store.staging import StagedChunks


class MigrationState(
    Ledger, StagedChunks, Failures, PartitionLeases, EmbeddingCache, StatusReports
):
    """The `pgvector_migration` tables; see each part for its own."""
