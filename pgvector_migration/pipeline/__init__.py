"""Pure pipeline functions and dataclasses: no Dagster, no database, no network."""
