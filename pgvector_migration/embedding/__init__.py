"""The embedding engines and everything between a list of texts and their vectors: one module
per concept (the HTTP base and one file per engine, the engine registry, dispatch, pacing, the
cache client, the probe, token counting). The Dagster resource that configures them lives in
`pgvector_migration.resources.embedding`.
"""
