"""A hostile target, through the CLI against the embedded PostgreSQL (issue 18): a lock held by
another session, two index rebuilds at once, passwords in URLs, a prune pointed at the wrong
Open WebUI, configuration that used to fail late, and a role that may only look."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgvector_migration import cli
from pgvector_migration.sample_data import sample_file_id

WORKTREE = Path(__file__).resolve().parents[1]
PASSWORD = "pw-never-shown-42"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in its own process, killed (and the test failed) past `timeout`."""
    env = {**os.environ, "PYTHONPATH": str(WORKTREE)}
    return subprocess.run(
        [sys.executable, "-m", "pgvector_migration.cli", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


BROKEN = sample_file_id("broken_report.pdf")


def migrate(tmp_path: Path, *args: str) -> dict:
    """The CLI in this process; its summary. The sample's one broken PDF always fails."""
    summary_path = tmp_path / "summary.json"
    code = cli.main(["--no-progress", "--summary-json", str(summary_path), *args])
    summary = json.loads(summary_path.read_text())
    assert code == (cli.EXIT_FAILED if summary["files_failed"] else cli.EXIT_OK)
    return summary


def assert_clean(summary: dict) -> None:
    """As a clean run of the sample ends: no run error, only the broken PDF failed."""
    assert summary["run_errors"] == []
    assert [failure["file_id"] for failure in summary["files_failed"]] == [BROKEN]


def vectors(deployment) -> list[tuple]:
    with deployment.connect() as connection:
        return connection.execute(
            "SELECT collection_name, id, text, vmetadata, vector::text FROM document_chunk "
            "ORDER BY collection_name, id"
        ).fetchall()


def target_snapshot(url: str) -> dict:
    """Schemas, tables and every table's row count: what 'nothing was written' compares."""
    with psycopg.connect(url, autocommit=True) as connection:
        schemas = [r[0] for r in connection.execute("SELECT nspname FROM pg_namespace ORDER BY 1")]
        tables = connection.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        counts = {
            f"{schema}.{table}": connection.execute(
                f'SELECT count(*) FROM "{schema}"."{table}"'
            ).fetchone()[0]
            for schema, table in tables
        }
        extensions = [r[0] for r in connection.execute("SELECT extname FROM pg_extension")]
    return {"schemas": schemas, "tables": tables, "counts": counts, "extensions": extensions}


def role_url(url: str, role: str, password: str = "") -> str:
    return url.replace("postgres:@", f"{role}:{password}@", 1)


def create_role(url: str, role: str, grants: list[str]) -> str:
    """A non-superuser login role with these grants; returns its URL."""
    with psycopg.connect(url, autocommit=True) as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if not exists.fetchone():
            connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
        for grant in grants:
            connection.execute(grant.format(role=role))
    return role_url(url, role)


# 7 (locks): a session holding a lock on document_chunk


def test_a_held_lock_fails_the_write_within_the_lock_timeout_naming_the_holder(
    deployment, monkeypatch, tmp_path
):
    assert_clean(migrate(tmp_path))
    clean = vectors(deployment)
    blocker = psycopg.connect(deployment.target_url, autocommit=True)
    try:
        blocker.execute("SET application_name = 'admin-maintenance'")
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE document_chunk IN SHARE ROW EXCLUSIVE MODE")
        pid = blocker.info.backend_pid
        started = time.monotonic()
        monkeypatch.setenv("PGVECTOR_MIGRATION_LOCK_TIMEOUT", "2")
        run = run_cli("--overwrite", "--only", "files", timeout=240)
        elapsed = time.monotonic() - started
    finally:
        blocker.close()

    assert run.returncode == cli.EXIT_FAILED, run.stdout + run.stderr
    assert "gave up after 2 s (PGVECTOR_MIGRATION_LOCK_TIMEOUT)" in run.stdout, run.stderr[-4000:]
    assert f"pid {pid}" in run.stdout and "'admin-maintenance'" in run.stdout
    assert "may wait up to 2 s" in run.stderr, "the wait is announced before it starts"
    assert elapsed < 150, f"{elapsed:.0f} s: the lock timeout did not bound the waits"
    assert vectors(deployment) == clean, "nothing half-written while the lock was held"
    monkeypatch.delenv("PGVECTOR_MIGRATION_LOCK_TIMEOUT")
    assert_clean(migrate(tmp_path, "--overwrite", "--only", "files"))
    assert vectors(deployment) == clean
