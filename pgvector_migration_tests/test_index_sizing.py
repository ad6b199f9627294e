"""The index build's memory and parallel workers, sized from the server's own settings.

PostgreSQL tells a client nothing about its host's CPUs, so the workers follow the server's
max_parallel_maintenance_workers, held to its worker pools, and to this machine's CPUs only when
the server runs here; the earlier sizing asked for 7 workers on a 2-core machine.
"""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest

from pgvector_migration.resources.index_sizing import (
    MB,
    ServerSettings,
    index_bytes_needed,
    is_local_host,
    read_server_settings,
    size_build,
)
from pgvector_migration.resources.vector_index import check_index_settings, rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource, TargetConfigurationError
from pgvector_migration_testing.document_chunks import ChunkRow, copy_document_chunks

DEFAULTS = ServerSettings(
    shared_buffers=128 * MB,
    maintenance_work_mem=64 * MB,
    max_parallel_maintenance_workers=2,
    max_parallel_workers=8,
    max_worker_processes=8,
)


def settings(**changes: int) -> ServerSettings:
    return ServerSettings(**{**DEFAULTS.__dict__, **changes})


def test_workers_follow_the_server_and_a_local_machine_s_cpus():
    needed = 10 * MB
    two_cores = size_build(needed, DEFAULTS, local_cpus=2)
    assert two_cores.workers == 1, "the defect: 7 workers on a 2-core machine"
    assert "local server, 2 CPUs less the leader" in two_cores.workers_reason
    assert size_build(needed, DEFAULTS, local_cpus=1).workers == 0
    many_cores = size_build(needed, DEFAULTS, local_cpus=64)
    assert many_cores.workers == 2, "never above the server's own max_parallel_maintenance_workers"
    assert "within this local server's 64 CPUs" in many_cores.workers_reason
    remote = size_build(needed, settings(max_parallel_maintenance_workers=6), local_cpus=None)
    assert remote.workers == 6 and "remote server" in remote.workers_reason
    pools = settings(max_parallel_maintenance_workers=6, max_parallel_workers=3)
    assert size_build(needed, pools, local_cpus=None).workers == 3
    assert size_build(needed, settings(max_worker_processes=1), local_cpus=None).workers == 1
    configured = size_build(needed, DEFAULTS, local_cpus=2, configured_workers=16)
    assert configured.workers == 8, "a configured number is held to the server's pools"
    assert configured.workers_reason.startswith("configured 16, capped by max_parallel_workers=8")
    assert size_build(needed, DEFAULTS, local_cpus=2, configured_workers=4).workers == 4
    assert size_build(needed, DEFAULTS, local_cpus=2, configured_workers=0).workers == 0


def test_memory_follows_the_index_within_the_server_s_memory():
    needed = index_bytes_needed(1_000_000, 1536, halfvec=False, method="hnsw", m=16)
    assert 6000 * MB < needed < 7000 * MB
    assert index_bytes_needed(1000, 1536, True, "hnsw", 16) < needed / 900
    assert index_bytes_needed(1000, 1536, False, "ivfflat", 16) < index_bytes_needed(
        1000, 1536, False, "hnsw", 16
    )
    big = size_build(needed, settings(shared_buffers=16 * 1024 * MB), None)
    assert int(big.maintenance_work_mem.removesuffix("MB")) * MB >= needed
    assert big.memory_reason.endswith("it fits")
    small = size_build(needed, DEFAULTS, None)
    assert small.maintenance_work_mem == "192MB"
    assert "capped at 192 MB, the larger of 1.5 x shared_buffers (128 MB)" in small.memory_reason
    own = size_build(10 * MB, settings(maintenance_work_mem=2048 * MB), None)
    assert own.maintenance_work_mem == "2048MB"
    assert own.memory_reason.endswith("the server's own setting holds it")
    odd = size_build(MB, settings(maintenance_work_mem=65 * MB + 512 * 1024), None)
    assert odd.maintenance_work_mem == "66MB", "rounded up: never below the server's own"
    assert size_build(needed, DEFAULTS, None, configured_memory=" 3GB ").maintenance_work_mem == (
        "3GB"
    )
    assert (
        "maintenance_work_mem=192MB, 1 parallel worker ("
        in size_build(needed, DEFAULTS, 2).describe()
    )


def test_local_hosts_are_sockets_and_loopback():
    for host in ("/tmp/pg", "", "localhost", "127.0.0.1", "127.0.1.1", "::1"):
        assert is_local_host(host), host
    for host in ("db.example.com", "10.0.0.5", "postgres"):
        assert not is_local_host(host), host


def write_rows(url: str, rows: int, dimensions: int) -> None:
    generator = np.random.default_rng(7)
    copy_document_chunks(
        url,
        (
            ChunkRow(
                f"c{n}",
                generator.standard_normal(dimensions).astype(np.float32),
                "kb",
                f"text {n}",
                {},
            )
            for n in range(rows)
        ),
        analyze=False,
    )


def test_the_build_uses_the_server_s_settings(fresh_database, monkeypatch):
    monkeypatch.setenv("PGVECTOR_INDEX_METHOD", "hnsw")
    url = fresh_database()
    store = PgVectorResource(database_url=url, vector_length=16)
    store.ensure_table(16)
    write_rows(url, 2000, 16)
    with psycopg.connect(url, autocommit=True) as connection:
        server = read_server_settings(connection)
    build = rebuild_vector_index(store)
    # The embedded server listens on a unix socket: a local server.
    spare = max(0, (os.cpu_count() or 1) - 1)
    expected = min(server.max_parallel_maintenance_workers, spare, server.max_parallel_workers)
    assert f", {expected} parallel worker" in build.sizing
    assert f"max_parallel_maintenance_workers={server.max_parallel_maintenance_workers}" in (
        build.sizing
    )
    with psycopg.connect(url, autocommit=True) as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f'ALTER DATABASE "{database}" SET max_parallel_maintenance_workers = 0')
        connection.execute(f"ALTER DATABASE \"{database}\" SET maintenance_work_mem = '300MB'")
    build = rebuild_vector_index(store)
    assert build.sizing.startswith("maintenance_work_mem=300MB, 0 parallel workers (")
    assert "the server's own setting holds it" in build.sizing
    configured = PgVectorResource(
        database_url=url, vector_length=16, max_parallel_maintenance_workers=500
    )
    build = rebuild_vector_index(configured)
    assert f", {min(server.max_parallel_workers, server.max_worker_processes)} parallel" in (
        build.sizing
    )
    with pytest.raises(TargetConfigurationError, match="max_parallel_maintenance_workers=-1"):
        check_index_settings(
            PgVectorResource(database_url=url, max_parallel_maintenance_workers=-1)
        )
    with pytest.raises(TargetConfigurationError, match="maintenance_work_mem='lots'"):
        check_index_settings(PgVectorResource(maintenance_work_mem="lots"))
