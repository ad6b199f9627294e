"""How much memory and how many workers an index build gets, from the server's own settings.

A build whose graph (hnsw) or tuples (ivfflat) fit in `maintenance_work_mem` runs many times
faster than one that spills, but the memory is the server's, shared with Open WebUI's queries.
PostgreSQL does not tell a client how much RAM its host has; `shared_buffers`, which operators
size to about a quarter of it, is the best estimate a client can read. So the build asks for
what the index needs, at most 1.5 x shared_buffers (the RAM neither shared buffers nor the
operating system's cache need most), never less than the server's own setting; workers are what
the server allows parallel work, at most 8 (PostgreSQL scales them down for small tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

MB = 1024 * 1024
FLOOR = 64 * MB
MAX_WORKERS = 8
# Per hnsw element besides its vector: neighbour lists (2m on layer 0, ~8 bytes each) and the
# element's own bookkeeping, as pgvector's build allocates them.
HNSW_ELEMENT_OVERHEAD = 100
IVFFLAT_TUPLE_OVERHEAD = 32


@dataclass(frozen=True)
class BuildSizing:
    """The session settings of one index build and why."""

    maintenance_work_mem_mb: int
    workers: int
    needed_mb: int
    reason: str

    @property
    def maintenance_work_mem(self) -> str:
        return f"{self.maintenance_work_mem_mb}MB"


def index_bytes_needed(rows: int, dimension: int, halfvec: bool, method: str, m: int) -> int:
    """An estimate of the build's working set: every vector plus the graph or sort overhead."""
    vector_bytes = dimension * (2 if halfvec else 4) + 8
    if method == "hnsw":
        return rows * (vector_bytes + 2 * m * 8 + HNSW_ELEMENT_OVERHEAD)
    return rows * (vector_bytes + IVFFLAT_TUPLE_OVERHEAD)


def size_build(
    needed: int,
    shared_buffers: int,
    server_maintenance_work_mem: int,
    max_parallel_workers: int,
    max_worker_processes: int,
) -> BuildSizing:
    """The sizing for a build needing `needed` bytes on a server with these settings (bytes)."""
    ceiling = max(server_maintenance_work_mem, int(shared_buffers * 1.5), FLOOR)
    memory = max(server_maintenance_work_mem, FLOOR, min(int(needed * 1.25), ceiling))
    workers = max(0, min(max_parallel_workers, max_worker_processes - 1, MAX_WORKERS))
    fits = memory >= needed
    reason = (
        f"the index needs about {needed // MB} MB; "
        + ("it fits" if fits else f"capped at 1.5 x shared_buffers ({shared_buffers // MB} MB)")
        + f"; {workers} workers (max_parallel_workers={max_parallel_workers})"
    )
    return BuildSizing(memory // MB, workers, needed // MB, reason)


def server_build_sizing(
    connection: psycopg.Connection, rows: int, dimension: int, halfvec: bool, method: str, m: int
) -> BuildSizing:
    """Read the server's settings and size a build of `rows` vectors."""
    settings = dict(
        connection.execute(
            """
            SELECT name, setting::bigint * CASE unit WHEN '8kB' THEN 8192 WHEN 'kB' THEN 1024
                                                     ELSE 1 END
            FROM pg_settings
            WHERE name IN ('shared_buffers', 'maintenance_work_mem', 'max_parallel_workers',
                           'max_worker_processes')
            """
        ).fetchall()
    )
    return size_build(
        index_bytes_needed(rows, dimension, halfvec, method, m),
        settings["shared_buffers"],
        settings["maintenance_work_mem"],
        settings["max_parallel_workers"],
        settings["max_worker_processes"],
    )
