"""Staged units are read back whole: each from one snapshot, even when another run re-stages
or writes it between two pages of the read."""

from __future__ import annotations

from pgvector_migration.pipeline.completeness import Assessment, UnitStatus
from pgvector_migration.pipeline.records import Chunk, SourceFile
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store import staging

PARTITION = "kb-1"


def chunks(file_id: str, count: int, version: str) -> list[Chunk]:
    collection = f"file-{file_id}"
    return [
        Chunk(f"{file_id}-{version}-{n}", collection, file_id, n, f"{version} text {n}", {})
        for n in range(count)
    ]


def stage(state, connection, file_id: str, count: int, version: str) -> None:
    state.stage_chunks(
        connection, file_id, {f"file-{file_id}": chunks(file_id, count, version)}, version, "s"
    )


def test_a_unit_changed_between_two_pages_is_read_whole_or_not_at_all(fresh_database, monkeypatch):
    """Pages of 5 rows over files a (3 chunks), b (4) and c (4): the first page ends inside b.
    Once a has been handed out, another run re-stages b with 6 chunks of a new text and, later,
    writes c and deletes its staged rows. b must come back as the new version, whole (not its
    old first two chunks followed by the new ones from position 2), and c not at all (not its
    rows of a page read before the deletion)."""
    monkeypatch.setattr(staging, "STAGED_PAGE_ROWS", 5)
    vector_store = PgVectorResource(database_url=fresh_database(), vector_length=8)
    state = vector_store.state()
    files = {name: SourceFile(name, "u", f"{name}.txt", None, None, {}, {}, None) for name in "abc"}
    missing = Assessment(UnitStatus.MISSING, None, 0, "")
    state.replace_completeness(
        [PARTITION],
        [(PARTITION, file, f"file-{file.id}", missing, True) for file in files.values()],
    )
    with vector_store.connect() as connection:
        for name, count in (("a", 3), ("b", 4), ("c", 4)):
            stage(state, connection, name, count, "old")
        units = state.staged_units([PARTITION])
        first = next(units)
        assert (first.source_id, len(first.chunks)) == ("a", 3)
        stage(state, connection, "b", 6, "new")
        second = next(units)
        connection.execute("DELETE FROM pgvector_migration.staged_chunk WHERE file_id = 'c'")
        rest = list(units)
    assert second.source_id == "b" and second.content_hash == "new"
    assert [c.text for c in second.chunks] == [f"new text {n}" for n in range(6)]
    assert rest == []
