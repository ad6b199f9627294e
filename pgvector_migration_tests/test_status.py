"""`status` shows each knowledge base's id beside its name; an unknown --knowledge-id lists the
known ones, so the id to pass is one command away."""

from __future__ import annotations

from pgvector_migration import cli
from pgvector_migration.sample_data import KNOWLEDGE_BASES


def test_status_shows_ids_next_to_names_before_any_run(deployment, capsys):
    assert cli.main(["status"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert "id (for --knowledge-id)" in lines[1]
    for knowledge in KNOWLEDGE_BASES:
        (line,) = [line for line in lines if line.startswith(knowledge.name)]
        assert line.rstrip().endswith(knowledge.id)
        assert "never run" in line


def test_an_unknown_knowledge_id_lists_the_known_ones(deployment, capsys):
    code = cli.main(["--no-progress", "--knowledge-id", "no-such-knowledge"])
    assert code == cli.EXIT_CONFIG
    error = capsys.readouterr().err
    assert "--knowledge-id: unknown knowledge id(s) no-such-knowledge" in error
    for knowledge in KNOWLEDGE_BASES:
        assert f"  {knowledge.id}  {knowledge.name}" in error
