"""The target database: our `pgvector_migration` state schema (versioned migrations, ledger,
failures, leases, embedding cache, reports) and Open WebUI's `document_chunk` table (its shape,
the writer, the reports read from it), on connections borrowed from one pool per process."""
