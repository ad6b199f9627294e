"""Configuration errors stop before any write with one clear line and exit code 2; secrets never
show up in what the tool prints, stores or records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgvector_migration import cli

SECRET_PASSWORD = "db-password-never-shown"


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        (
            "DATABASE_URL",
            f"postgresql://admin:{SECRET_PASSWORD}@127.0.0.1:1/openwebui",
            "Open WebUI",
        ),
        ("DATABASE_URL", "mysql://somewhere/db", "DATABASE_URL"),
        ("PGVECTOR_DB_URL", f"postgresql://admin:{SECRET_PASSWORD}@127.0.0.1:1/v", "target"),
        ("RAG_OPENAI_API_BASE_URL", "http://127.0.0.1:1/v1", "127.0.0.1:1"),
        ("RAG_OPENAI_API_KEY", "", "HTTP 401"),
        ("RAG_EMBEDDING_ENGINE", "cohere", "RAG_EMBEDDING_ENGINE"),
        ("RAG_TEXT_SPLITTER", "sentences", "RAG_TEXT_SPLITTER"),
    ],
)
def test_configuration_error_is_one_line_and_writes_nothing(
    deployment, monkeypatch, capsys, variable, value, expected
):
    monkeypatch.setenv(variable, value)

    code = cli.main(["--no-progress"])

    assert code == cli.EXIT_CONFIG
    lines = [line for line in capsys.readouterr().err.splitlines() if "pgvector-migrate" in line]
    assert len(lines) == 1 and "configuration error" in lines[0] and expected in lines[0]
    assert SECRET_PASSWORD not in lines[0]
    with deployment.connect() as connection:
        assert connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0] is None


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_api_key_appears_nowhere(deployment, tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    cli.main(["--no-progress", "--summary-json", str(summary_path)])
    deployment.server.fail_next(100, status=400)
    cli.main(["--no-progress", "--overwrite", "--only", "memories"])
    printed = capsys.readouterr()

    secret = "sk-test-secret"
    assert secret not in printed.out + printed.err
    assert secret not in summary_path.read_text()
    for path in files_under(deployment.dagster_home):
        assert secret.encode() not in path.read_bytes(), path
    with deployment.connect() as connection:
        stored = connection.execute(
            "SELECT coalesce(string_agg(error, ' '), '') FROM pgvector_migration.file_failure"
        ).fetchone()[0]
        metadata = json.dumps(
            connection.execute("SELECT array_agg(vmetadata) FROM document_chunk").fetchone()[0]
        )
    assert secret not in stored and secret not in metadata
