"""pgvector-migration: rebuild an Open WebUI knowledge store in PostgreSQL + pgvector.

Importing the package (or any module in it, such as `pipeline.splitting`) does not load
Dagster: the `Definitions` object is loaded only when asked for, as `pgvector_migration.defs`.
`dagster ... -m pgvector_migration` finds it because Dagster looks up the module's members by
name (`inspect.getmembers`, which lists `__dir__` and reads each through `__getattr__`).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from pgvector_migration.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
