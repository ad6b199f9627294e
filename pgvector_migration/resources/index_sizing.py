"""How much memory and how many parallel workers an index build gets, from the server's settings.

A build whose graph (hnsw) or tuples (ivfflat) fit in `maintenance_work_mem` runs many times
faster than one that spills, but the memory is the server's, shared with Open WebUI's queries.
PostgreSQL does not tell a client how much RAM or how many CPUs its host has, so both are sized
from what the server's own settings say about it:

- memory: what the index needs (an estimate of its working set), at most 1.5 x `shared_buffers`
  (operators size that to about a quarter of the RAM), never less than the server's own
  `maintenance_work_mem`;
- workers: the server's own `max_parallel_maintenance_workers` (its operator's choice for
  builds), within `max_parallel_workers` and `max_worker_processes` (the pools every parallel
  worker comes from). Only when the server runs on this machine (unix socket or loopback) is
  its CPU count known: then also at most `os.cpu_count() - 1`, leaving a core for the leader,
  which builds too. A configured number of workers replaces the server's default but is still
  held to the pools.

Every bound that applied is named in the reason, shown in the vector_index asset's metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

MB = 1024 * 1024
# Per hnsw element besides its vector: neighbour lists (2m on layer 0, ~8 bytes each) and the
# element's own bookkeeping, as pgvector's build allocates them.
HNSW_ELEMENT_OVERHEAD = 100
IVFFLAT_TUPLE_OVERHEAD = 32
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
SETTING_NAMES = (
    "shared_buffers",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers",
    "max_worker_processes",
)


@dataclass(frozen=True)
class ServerSettings:
    """The server's settings a build is sized by (memory in bytes), as our session sees them:
    postgresql.conf, then ALTER DATABASE / ROLE."""

    shared_buffers: int
    maintenance_work_mem: int
    max_parallel_maintenance_workers: int
    max_parallel_workers: int
    max_worker_processes: int


@dataclass(frozen=True)
class BuildSizing:
    """The session settings of one index build and why."""

    maintenance_work_mem: str
    workers: int
    needed_mb: int
    memory_reason: str
    workers_reason: str

    @property
    def reason(self) -> str:
        return f"{self.memory_reason}; {self.workers_reason}"

    def describe(self) -> str:
        """One line for the asset's metadata and log."""
        workers = f"{self.workers} parallel worker{'' if self.workers == 1 else 's'}"
        return f"maintenance_work_mem={self.maintenance_work_mem}, {workers} ({self.reason})"


def index_bytes_needed(rows: int, dimension: int, halfvec: bool, method: str, m: int) -> int:
    """An estimate of the build's working set: every vector plus the graph or sort overhead."""
    vector_bytes = dimension * (2 if halfvec else 4) + 8
    if method == "hnsw":
        return rows * (vector_bytes + 2 * m * 8 + HNSW_ELEMENT_OVERHEAD)
    return rows * (vector_bytes + IVFFLAT_TUPLE_OVERHEAD)


def is_local_host(host: str) -> bool:
    """Whether libpq's `host` (connection.info.host) is this machine: a unix socket directory
    or a loopback address."""
    return not host or host.startswith("/") or host in LOOPBACK_HOSTS or host.startswith("127.")


def size_memory(needed: int, server: ServerSettings, configured: str | None) -> tuple[str, str]:
    """maintenance_work_mem for a build needing `needed` bytes, and why."""
    own = server.maintenance_work_mem
    if configured:
        return configured.strip(), f"maintenance_work_mem configured as {configured.strip()}"
    ceiling = max(own, int(server.shared_buffers * 1.5))
    memory = max(own, min(int(needed * 1.25), ceiling))
    if memory >= needed:
        why = "the server's own setting holds it" if memory == own else "it fits"
    else:
        why = (
            f"capped at {ceiling // MB} MB, the larger of 1.5 x shared_buffers "
            f"({server.shared_buffers // MB} MB) and the server's own ({own // MB} MB)"
        )
    # Rounded up, so never below the server's own setting.
    return f"{-(-memory // MB)}MB", f"the index needs about {needed // MB} MB: {why}"


def size_workers(
    server: ServerSettings, local_cpus: int | None, configured: int | None
) -> tuple[int, str]:
    """Parallel maintenance workers, and why: the server's default (or `configured`), within
    the server's worker pools, and within the CPUs of this machine when the server runs on it
    (`local_cpus`; None for a remote server, whose CPU count no client can read)."""
    pools = min(server.max_parallel_workers, server.max_worker_processes)
    if configured is not None:
        start, source = configured, f"configured {configured}"
    else:
        start = server.max_parallel_maintenance_workers
        source = f"the server's max_parallel_maintenance_workers={start}"
    bounds = [source]
    workers = start
    if workers > pools:
        workers = pools
        bounds.append(
            f"capped by max_parallel_workers={server.max_parallel_workers} / "
            f"max_worker_processes={server.max_worker_processes}"
        )
    if configured is None and local_cpus is None:
        bounds.append("a remote server, whose CPU count no client can read")
    elif configured is None and workers > max(0, local_cpus - 1):
        workers = max(0, local_cpus - 1)
        bounds.append(f"capped at {workers}: a local server, {local_cpus} CPUs less the leader")
    elif configured is None:
        bounds.append(f"within this local server's {local_cpus} CPUs")
    return max(0, workers), ", ".join(bounds)


def size_build(
    needed: int,
    server: ServerSettings,
    local_cpus: int | None,
    configured_memory: str | None = None,
    configured_workers: int | None = None,
) -> BuildSizing:
    """The sizing for a build needing `needed` bytes on a server with these settings."""
    memory, memory_reason = size_memory(needed, server, configured_memory)
    workers, workers_reason = size_workers(server, local_cpus, configured_workers)
    return BuildSizing(memory, workers, needed // MB, memory_reason, workers_reason)


def read_server_settings(connection: psycopg.Connection) -> ServerSettings:
    """The settings of SETTING_NAMES as this session sees them, memory in bytes."""
    rows = connection.execute(
        """
        SELECT name, setting::bigint * CASE unit WHEN '8kB' THEN 8192 WHEN 'kB' THEN 1024
                                                 ELSE 1 END
        FROM pg_settings WHERE name = ANY(%s)
        """,
        (list(SETTING_NAMES),),
    ).fetchall()
    return ServerSettings(**dict(rows))


def server_build_sizing(
    connection: psycopg.Connection,
    rows: int,
    dimension: int,
    halfvec: bool,
    method: str,
    m: int,
    configured_memory: str | None = None,
    configured_workers: int | None = None,
) -> BuildSizing:
    """Read the server's settings and size a build of `rows` vectors over `connection`."""
    local_cpus = os.cpu_count() if is_local_host(connection.info.host) else None
    return size_build(
        index_bytes_needed(rows, dimension, halfvec, method, m),
        read_server_settings(connection),
        local_cpus,
        configured_memory,
        configured_workers,
    )
