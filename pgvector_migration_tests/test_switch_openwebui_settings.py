"""`switch --cutover/--rollback --write-openwebui-settings` on the sample deployment (Open WebUI's
SQLite database, per-key `config` table, no embedding keys stored): exactly the two keys are
written after the swap, a rollback puts back exactly what was there (here: no rows), a failed
write leaves the swap in place and says what to set by hand; without the flag nothing is
written. The same against a real Open WebUI on PostgreSQL: test_switch_with_openwebui.py."""

from __future__ import annotations

import sqlite3

import pytest

from pgvector_migration import cli
from pgvector_migration.pipeline.openwebui_settings import (
    ConfigChange,
    legacy_config_data,
    switch_change,
    undo_change,
)
from pgvector_migration_tests.conftest import TEST_DIMENSIONS, TEST_MODEL

NEW_MODEL, NEW_DIMENSIONS = "test-embedding-model-b", 12
SWITCH = ["switch", "--no-progress", "--model", NEW_MODEL, "--dimension", str(NEW_DIMENSIONS)]
FLAG = "--write-openwebui-settings"


@pytest.fixture
def shadow_built(deployment):
    """The sample migrated with model A (8 dimensions), then a shadow of model B (12)."""
    assert cli.main(["--no-progress"]) == cli.EXIT_FAILED  # the sample's corrupt PDF
    deployment.server.dimensions = NEW_DIMENSIONS
    assert cli.main(SWITCH) == cli.EXIT_FAILED
    return deployment


def config_rows(deployment) -> dict[str, str]:
    with sqlite3.connect(deployment.data_dir / "webui.db") as connection:
        return dict(connection.execute("SELECT key, value FROM config").fetchall())


def live_dimension(deployment) -> int:
    with deployment.connect() as connection:
        return connection.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'document_chunk'::regclass "
            "AND attname = 'vector'"
        ).fetchone()[0]


def test_cutover_writes_the_two_keys_and_rollback_puts_back_their_absence(shadow_built, capsys):
    before = config_rows(shadow_built)
    assert "rag.embedding_model" not in before
    capsys.readouterr()

    assert cli.main([*SWITCH, "--cutover", FLAG]) == cli.EXIT_OK

    printed = capsys.readouterr().out
    after = config_rows(shadow_built)
    assert after == {
        **before,
        "rag.embedding_engine": '"openai"',
        "rag.embedding_model": f'"{NEW_MODEL}"',
    }
    assert f"rag.embedding_model='{NEW_MODEL}'" in printed
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={NEW_DIMENSIONS}" in printed
    assert "RAG_EMBEDDING_MODEL=" not in printed, "written, not to be set by hand"
    assert live_dimension(shadow_built) == NEW_DIMENSIONS

    assert cli.main(["switch", "--rollback", FLAG]) == cli.EXIT_OK

    printed = capsys.readouterr().out
    assert config_rows(shadow_built) == before
    assert "rag.embedding_engine removed, rag.embedding_model removed" in printed
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={TEST_DIMENSIONS}" in printed
    assert live_dimension(shadow_built) == TEST_DIMENSIONS

    # A second rollback switches forward again, and writes the new model again.
    assert cli.main(["switch", "--rollback", FLAG]) == cli.EXIT_OK
    assert config_rows(shadow_built) == after
    assert live_dimension(shadow_built) == NEW_DIMENSIONS


def test_without_the_flag_nothing_is_written_and_a_rollback_says_what_was(shadow_built, capsys):
    before = config_rows(shadow_built)
    assert cli.main([*SWITCH, "--cutover"]) == cli.EXIT_OK
    assert f"RAG_EMBEDDING_MODEL={NEW_MODEL}" in capsys.readouterr().out
    assert config_rows(shadow_built) == before

    # A rollback asked to write after a cutover that wrote nothing sets the old model.
    assert cli.main(["switch", "--rollback", FLAG]) == cli.EXIT_OK
    assert config_rows(shadow_built) == {
        **before,
        "rag.embedding_engine": '"openai"',
        "rag.embedding_model": f'"{TEST_MODEL}"',
    }

    capsys.readouterr()
    assert cli.main(["switch", "--rollback"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert f"add {FLAG} to put back what was there" in printed
    assert config_rows(shadow_built)["rag.embedding_model"] == f'"{TEST_MODEL}"'


def test_a_failed_write_leaves_the_swap_and_prints_the_settings(shadow_built, capsys):
    before = config_rows(shadow_built)
    with sqlite3.connect(shadow_built.data_dir / "webui.db") as connection:
        connection.execute(
            "CREATE TRIGGER config_frozen BEFORE INSERT ON config "
            "BEGIN SELECT RAISE(ABORT, 'config is frozen'); END"
        )
    capsys.readouterr()

    assert cli.main([*SWITCH, "--cutover", FLAG]) == cli.EXIT_FAILED

    err = capsys.readouterr().err
    assert "the swap is done, but Open WebUI's settings could not be written" in err
    assert "config is frozen" in err
    assert f"RAG_EMBEDDING_MODEL={NEW_MODEL}" in err
    assert f"PGVECTOR_INITIALIZE_MAX_VECTOR_LENGTH={NEW_DIMENSIONS}" in err
    assert live_dimension(shadow_built) == NEW_DIMENSIONS
    assert config_rows(shadow_built) == before, "nothing half written"

    # The values found were recorded: the rollback puts them back (no rows) once it can.
    with sqlite3.connect(shadow_built.data_dir / "webui.db") as connection:
        connection.execute("DROP TRIGGER config_frozen")
        connection.execute("INSERT INTO config VALUES ('rag.embedding_model', '\"x\"', 1)")
    assert cli.main(["switch", "--rollback", FLAG]) == cli.EXIT_OK
    assert config_rows(shadow_built) == before
    assert live_dimension(shadow_built) == TEST_DIMENSIONS


def test_refusals_change_nothing_and_the_environment_that_would_win_is_named(
    shadow_built, capsys, monkeypatch
):
    before = config_rows(shadow_built)
    assert cli.main([*SWITCH, FLAG]) == 2
    assert "only at a --cutover or a --rollback" in capsys.readouterr().err
    webui_db = shadow_built.data_dir / "webui.db"
    with sqlite3.connect(webui_db) as connection:
        connection.execute("ALTER TABLE config RENAME TO config_elsewhere")
    assert cli.main([*SWITCH, "--cutover", FLAG]) == 2
    assert "has no config table" in capsys.readouterr().err
    assert live_dimension(shadow_built) == TEST_DIMENSIONS
    with sqlite3.connect(webui_db) as connection:
        connection.execute("ALTER TABLE config_elsewhere RENAME TO config")
    assert config_rows(shadow_built) == before

    monkeypatch.setenv("ENABLE_PERSISTENT_CONFIG", "false")
    assert cli.main([*SWITCH, "--cutover", FLAG]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "ENABLE_PERSISTENT_CONFIG is not true" in err
    assert f"RAG_EMBEDDING_MODEL={NEW_MODEL}" in err
    assert live_dimension(shadow_built) == NEW_DIMENSIONS


def test_changes_undo_exactly_and_apply_to_the_legacy_json_row():
    stored = {"rag.embedding_engine": "", "rag.embedding_model": "old"}
    change = switch_change({"rag.embedding_model": "old"}, "openai", "new")
    assert change.before == {"rag.embedding_model": "old"}
    undo = undo_change(change.as_record(), change.set)
    assert undo == ConfigChange(
        set={"rag.embedding_model": "old"},
        delete=("rag.embedding_engine",),
        before=change.set,
    )
    legacy = {"version": 0, "rag": {"embedding_model": "old", "chunk_size": 1000}}
    written = legacy_config_data(legacy, change)
    assert written == {
        "version": 0,
        "rag": {"embedding_model": "new", "embedding_engine": "openai", "chunk_size": 1000},
    }
    assert legacy_config_data(written, undo) == legacy
    assert legacy["rag"]["embedding_model"] == "old", "the input is not changed"
    assert switch_change(stored, "", "m").before == stored
