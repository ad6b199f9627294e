"""Thin Dagster assets over `pipeline/` and `resources/`."""
