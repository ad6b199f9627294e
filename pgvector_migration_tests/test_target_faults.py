"""A hostile target, through the CLI against the embedded PostgreSQL (issue 18): a lock held by
another session, two index rebuilds at once, passwords in URLs, a prune pointed at the wrong
Open WebUI, configuration that used to fail late, and a role that may only look."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgvector_migration import cli
from pgvector_migration.resources.vector_index import REBUILD_LOCK, rebuild_vector_index
from pgvector_migration.resources.vector_store import PgVectorResource
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
            connection.execute(grant.format(role=role, database=database))
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


# 8: two index rebuilds at once


def loaded_table(url: str, rows: int = 3000) -> PgVectorResource:
    """A document_chunk of `rows` random 8-dimensional vectors, as a run leaves it."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(
            "CREATE TABLE document_chunk (id text PRIMARY KEY, vector vector(8), "
            "collection_name text NOT NULL, text text, vmetadata jsonb)"
        )
        connection.execute(
            "INSERT INTO document_chunk SELECT g::text, "
            "(SELECT array_agg(random())::vector(8) FROM generate_series(1, 8) WHERE g > 0), "
            "'file-' || (g %% 50), 'text ' || g, '{}' FROM generate_series(1, %s) g",
            (rows,),
        )
    return PgVectorResource(database_url=url)


def index_state(url: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'document_chunk'::regclass AND c.relname LIKE '%vector%' "
            "ORDER BY 1"
        ).fetchall()


@pytest.mark.parametrize("concurrently", [True, False])
def test_two_rebuilds_at_once_take_turns(fresh_database, concurrently):
    url = fresh_database()
    vector_store = loaded_table(url).model_copy(update={"build_index_concurrently": concurrently})
    start = threading.Barrier(2)
    builds, errors = [], []

    def rebuild() -> None:
        start.wait()
        try:
            builds.append(rebuild_vector_index(vector_store))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert len(builds) == 2
    assert sum(1 for build in builds if not build.skipped_reason) >= 1
    assert {build.skipped_reason for build in builds} <= {"", "another session has just rebuilt it"}
    assert index_state(url) == [("idx_document_chunk_vector", True)]


def test_a_rebuild_still_running_past_the_lock_timeout_is_left_to_finish(
    fresh_database, monkeypatch
):
    url = fresh_database()
    vector_store = loaded_table(url, rows=200)
    monkeypatch.setenv("PGVECTOR_MIGRATION_LOCK_TIMEOUT", "1")
    with psycopg.connect(url, autocommit=True) as other_rebuild:
        other_rebuild.execute("SELECT pg_advisory_lock(%s)", (REBUILD_LOCK,))
        started = time.monotonic()
        build = rebuild_vector_index(vector_store)
        waited = time.monotonic() - started

    assert build.skipped_reason == "another session is rebuilding it"
    assert 1 <= waited < 10
    assert index_state(url) == []
    assert rebuild_vector_index(vector_store).skipped_reason == ""
    assert index_state(url) == [("idx_document_chunk_vector", True)]


# 9: credentials in URLs


def test_passwords_in_urls_appear_nowhere(deployment, monkeypatch, tmp_path, capsys):
    target = deployment.target_url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    monkeypatch.setenv("PGVECTOR_DB_URL", target)
    summary_path = tmp_path / "summary.json"
    assert_clean(migrate(tmp_path))
    # The provider refuses the URL's credentials: the dimension probe (--reembed trusts no
    # cached vector) finds it before anything is written, naming the URL.
    provider = deployment.server.base_url.replace("http://", f"http://user:{PASSWORD}@", 1)
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", provider)
    capsys.readouterr()
    refused = cli.main(["--no-progress", "--overwrite", "--reembed"])
    refusal = capsys.readouterr()
    cli.main(["status"])
    monkeypatch.setenv("PGVECTOR_DB_URL", target.replace("postgres:", "postgres:x:", 1) + "&&")
    assert cli.main(["--no-progress"]) == cli.EXIT_CONFIG
    printed = capsys.readouterr()

    assert refused == cli.EXIT_CONFIG and "user:***@" in refusal.err
    assert PASSWORD not in refusal.out + refusal.err + printed.out + printed.err
    assert PASSWORD not in summary_path.read_text()
    for path in deployment.dagster_home.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    with deployment.connect() as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'pgvector_migration'"
        ).fetchall()
        for (table,) in tables:
            dump = connection.execute(
                f"SELECT coalesce(string_agg(t::text, ' '), '') FROM pgvector_migration.{table} t"
            ).fetchone()[0]
            assert PASSWORD not in dump, table


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://admin:{PASSWORD}@host:notaport/db",
        f"postgresql://admin:{PASSWORD}@/db?host=/nowhere&sslmode=sometimes",
        f"postgresql://admin:{PASSWORD}@@bad host/db",
        f"host=nowhere password={PASSWORD} dbname",
    ],
)
def test_a_malformed_target_url_is_refused_without_its_password(
    deployment, monkeypatch, capsys, url
):
    monkeypatch.setenv("PGVECTOR_DB_URL", url)
    assert cli.main(["--no-progress"]) == cli.EXIT_CONFIG
    assert cli.main(["status"]) == cli.EXIT_CONFIG
    printed = capsys.readouterr()
    assert "configuration error" in printed.err
    assert PASSWORD not in printed.out + printed.err


# 10: --prune


def delete_from_source(deployment, *statements: str) -> None:
    with sqlite3.connect(deployment.data_dir / "webui.db") as source:
        for statement in statements:
            source.execute(statement)


def test_dry_run_prune_shows_the_plan_and_deletes_nothing(deployment, tmp_path, capsys):
    assert_clean(migrate(tmp_path))
    before = vectors(deployment)
    notes = sample_file_id("notes.py")
    delete_from_source(deployment, f"DELETE FROM file WHERE id = '{notes}'")
    capsys.readouterr()

    summary = migrate(tmp_path, "--dry-run", "--prune")

    out = capsys.readouterr().out
    rows = sum(1 for row in before if row[0] == f"file-{notes}")
    assert f"would delete {rows} rows of file-{notes}: the file was deleted" in out
    assert any(f"file-{notes}" in line for line in summary["prune_plan"])
    assert vectors(deployment) == before

    assert cli.main(["--no-progress", "--prune", "--prune-max-share", "0.01"]) == cli.EXIT_CONFIG
    assert "more than --prune-max-share 0.01" in capsys.readouterr().err
    assert vectors(deployment) == before
    migrate(tmp_path, "--prune")
    assert [row for row in before if row[0] != f"file-{notes}"] == vectors(deployment)


def test_prune_against_an_empty_open_webui_deletes_nothing_unless_forced(
    deployment, tmp_path, capsys
):
    assert_clean(migrate(tmp_path))
    before = vectors(deployment)
    delete_from_source(
        deployment,
        "DELETE FROM knowledge_file",
        "DELETE FROM knowledge",
        "DELETE FROM file",
        "DELETE FROM memory",
    )
    capsys.readouterr()

    code = cli.main(["--no-progress", "--prune"])

    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG
    assert "no files, knowledge bases or memories" in err and "--force-prune" in err
    assert vectors(deployment) == before
    cli.main(["--no-progress", "--prune", "--force-prune"])
    assert vectors(deployment) == []


# 11: configuration errors found before anything is written


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("PGVECTOR_INDEX_METHOD", "btree", "PGVECTOR_INDEX_METHOD"),
        ("PGVECTOR_IVFFLAT_LISTS", "many", "PGVECTOR_IVFFLAT_LISTS"),
        ("PGVECTOR_HNSW_M", "-4", "PGVECTOR_HNSW_M"),
        ("RAG_FILE_MAX_SIZE", "big", "RAG_FILE_MAX_SIZE"),
        ("PGVECTOR_MIGRATION_LOCK_TIMEOUT", "soon", "PGVECTOR_MIGRATION_LOCK_TIMEOUT"),
        ("DAGSTER_HOME", "a file", "DAGSTER_HOME"),
        ("--summary-json", "/no/such/folder/summary.json", "--summary-json"),
        ("--summary-json", "a folder", "--summary-json"),
    ],
)
def test_late_configuration_errors_stop_before_anything_is_written(
    deployment, monkeypatch, capsys, tmp_path, variable, value, named
):
    args = ["--no-progress"]
    if value == "a file":
        value = str(tmp_path / "home-file")
        Path(value).write_text("")
    if value == "a folder":
        value = str(tmp_path)
    if variable.startswith("--"):
        args += [variable, value]
    else:
        monkeypatch.setenv(variable, value)
    if variable == "PGVECTOR_HNSW_M":
        monkeypatch.setenv("PGVECTOR_INDEX_METHOD", "hnsw")
    before = target_snapshot(deployment.target_url)

    code = cli.main(args)

    lines = [line for line in capsys.readouterr().err.splitlines() if "pgvector-migrate" in line]
    assert code == cli.EXIT_CONFIG
    assert len(lines) == 1 and "configuration error" in lines[0] and named in lines[0]
    assert target_snapshot(deployment.target_url) == before


def test_missing_pgvector_for_a_role_that_cannot_create_it(deployment, capsys, monkeypatch):
    url = create_role(
        deployment.target_url,
        "migrator_without_extensions",
        [
            'GRANT CREATE ON DATABASE "{database}" TO {role}',
            "GRANT CREATE ON SCHEMA public TO {role}",
        ],
    )
    monkeypatch.setenv("PGVECTOR_DB_URL", url)
    before = target_snapshot(deployment.target_url)

    code = cli.main(["--no-progress"])

    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG
    assert "pgvector extension is missing" in err and "migrator_without_extensions" in err
    assert target_snapshot(deployment.target_url) == before


# 12: status and --dry-run with a role that may only read


def grant_read_only(url: str, role: str) -> str:
    return create_role(
        url,
        role,
        [
            "GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_namespace WHERE nspname = "
            "'pgvector_migration') THEN GRANT USAGE ON SCHEMA pgvector_migration TO {role}; "
            "GRANT SELECT ON ALL TABLES IN SCHEMA pgvector_migration TO {role}; END IF; END $$",
        ],
    )


def test_status_and_dry_run_need_only_select_before_any_run(deployment, monkeypatch, capsys):
    monkeypatch.setenv("PGVECTOR_DB_URL", grant_read_only(deployment.target_url, "reader_fresh"))
    before = target_snapshot(deployment.target_url)

    assert cli.main(["status"]) == cli.EXIT_OK
    assert "nothing recorded yet" in capsys.readouterr().out
    code = cli.main(["--no-progress", "--dry-run", "--prune"])

    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILED, "the broken PDF is reported as it would fail"
    assert "files to process: 8" in out
    assert target_snapshot(deployment.target_url) == before


def test_status_and_dry_run_need_only_select_after_a_run(deployment, monkeypatch, capsys, tmp_path):
    assert_clean(migrate(tmp_path))
    (upload,) = (deployment.data_dir / "uploads").glob(f"{sample_file_id('notes.py')}_*")
    upload.write_text(upload.read_text() + "\n# changed since the last run\n")
    monkeypatch.setenv("PGVECTOR_DB_URL", grant_read_only(deployment.target_url, "reader_after"))
    before = target_snapshot(deployment.target_url)
    capsys.readouterr()

    assert cli.main(["status"]) == cli.EXIT_OK
    status = capsys.readouterr().out
    assert "American founding documents" in status and "nothing recorded" not in status
    summary = migrate(tmp_path, "--dry-run", "--prune")

    assert summary["files_to_process"] == 1
    assert summary["files_skipped_complete"] == 7
    assert target_snapshot(deployment.target_url) == before
