"""Dagster resources and the clients of the outside systems they own: Open WebUI's database and
uploads, the target PostgreSQL, embedding providers, extraction services, Chroma."""
