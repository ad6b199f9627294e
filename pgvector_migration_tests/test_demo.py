"""`make demo` then `make dev`: the demo's runs are in the instance the UI opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What `make dev` does before `dagster dev`: the demo's environment, then the instance it opens
# (`dagster dev` opens DAGSTER_HOME's instance the same way).
OPEN_AS_THE_UI = """
eval "$({python} -m pgvector_migration.demo env --dir {demo})" && {python} -c '
from dagster import DagsterInstance
instance = DagsterInstance.get()
print(type(instance.run_storage).__name__, instance.get_runs_count())
'
"""


def demo(*args: str, demo_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgvector_migration.demo", *args, "--dir", str(demo_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_ui_opens_the_instance_that_holds_the_demos_runs(tmp_path):
    demo_dir = tmp_path / "demo"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RAG_", "PGVECTOR_", "DAGSTER_", "DATA_DIR", "DATABASE_URL"))
    }
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "pgvector_migration.demo", "run"],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT), "PGVECTOR_MIGRATION_DEMO_DIR": str(demo_dir)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "chunks written: 141" in ran.stdout
        opened = subprocess.run(
            ["bash", "-c", OPEN_AS_THE_UI.format(python=sys.executable, demo=demo_dir)],
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert opened.returncode == 0, opened.stderr
        storage, runs = opened.stdout.split()[-2:]
        assert storage == "PostgresRunStorage"
        # Before, the demo's runs went to a SQLite instance and the UI's held none.
        assert int(runs) >= 1
        instance_file = demo_dir / "dagster_home" / "dagster.yaml"
        assert instance_file.read_text() == (ROOT / "dagster.yaml").read_text()
    finally:
        demo("stop", demo_dir=demo_dir)
