"""SIGKILL the migration at several points, re-run, and get exactly what a clean run writes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg

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
