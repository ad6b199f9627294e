"""The layering holds: pure modules load without Dagster, the documented `-m` commands still
find the jobs, the import-linter contracts pass, and the Open WebUI resource's setting
overrides come from the setting declarations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgvector_migration.definitions import defs
from pgvector_migration.resources.openwebui import OpenWebUIResource
from pgvector_migration.setting_declarations import DECLARATIONS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB_NAMES = [job.name for job in defs.jobs]


def environment(tmp_path: Path) -> dict[str, str]:
    """This checkout first on the path; an empty Dagster instance of its own."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(home)}


@pytest.mark.parametrize(
    "module",
    [
        "pgvector_migration",
        "pgvector_migration.pipeline.splitting",
        "pgvector_migration.pipeline.planning",
        "pgvector_migration.pipeline.extraction_engines",
        "pgvector_migration.pipeline.extraction_services",
        "pgvector_migration.settings",
    ],
)
def test_importing_a_pure_module_loads_no_dagster_or_database_client(module, tmp_path):
    # httpx is not checked here: langchain (the splitters) loads it for its own use; that
    # pipeline/ itself never imports it is an import-linter contract.
    check = (
        f"import sys, {module}\n"
        "loaded = [m for m in ('dagster', 'psycopg', 'sqlalchemy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], env=environment(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", ["pgvector_migration", "pgvector_migration.definitions"])
def test_the_documented_dagster_commands_find_every_job(module, tmp_path):
    result = subprocess.run(
        [str(BIN / "dagster"), "job", "list", "-m", module],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    listed = [
        line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if line.startswith("Job: ")
    ]
    # Dagster adds its own `__ASSET_JOB`.
    assert sorted(name for name in listed if not name.startswith("__")) == sorted(JOB_NAMES)


def test_the_import_contracts_hold(tmp_path):
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        env=environment(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def test_the_resource_overrides_exactly_the_declared_settings():
    overridable = {setting.name: setting for setting in DECLARATIONS if setting.override}
    fields = OpenWebUIResource.model_fields
    assert overridable and set(overridable) <= set(fields)
    for name, setting in overridable.items():
        assert fields[name].description == setting.override
        assert fields[name].default is None
    resource = OpenWebUIResource(chunk_size=321, text_splitter="token")
    settings = resource.rag_settings({"ENABLE_PERSISTENT_CONFIG": "false"})
    assert (settings.chunk_size, settings.text_splitter, settings.chunk_overlap) == (
        321,
        "token",
        100,
    )
