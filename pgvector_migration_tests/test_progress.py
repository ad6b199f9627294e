"""Progress from the state tables: a line every few seconds in a log, the run's overall figures."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgvector_migration.progress import ProgressReporter, RunProgress, describe, eta_seconds
from pgvector_migration.resources.run_progress import run_progress
from pgvector_migration.resources.vector_store import PgVectorResource
from pgvector_migration.store.names import SCHEMA
from pgvector_migration.store.schema import apply_migrations

LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) progress: (?P<text>.*)$", re.MULTILINE
)
UNITS_PER_PARTITION = 6
TEXTS_PER_UNIT = 4


class LogFile(io.StringIO):
    """What `nohup ... > migration.log` gives the reporter: a stream that is not a terminal,
    read while it is being written."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.arrivals.append((time.monotonic(), text))
        return super().write(text)


def plan(connection: psycopg.Connection, key: str, checked_at: datetime) -> None:
    """A partition's completeness report and staged texts, as its prepare run leaves them."""
    for unit in range(UNITS_PER_PARTITION):
        file_id = f"{key}-file-{unit}"
        connection.execute(
            f"INSERT INTO {SCHEMA}.completeness (partition_key, file_id, collection_name, "
            "filename, status, present_chunks, reason, selected, checked_at) "
            "VALUES (%s, %s, %s, %s, 'missing', 0, 'no rows', true, %s)",
            (key, file_id, f"file-{file_id}", f"{file_id}.txt", checked_at),
        )
        for position in range(TEXTS_PER_UNIT):
            connection.execute(
                f"INSERT INTO {SCHEMA}.staged_chunk (collection_name, file_id, position, id, "
                "text, vmetadata, content_hash, settings_fingerprint) "
                "VALUES (%s, %s, %s, %s, 'text', '{}', 'h', 's')",
                (f"file-{file_id}", file_id, position, f"{file_id}-{position}"),
            )


def write_unit(connection: psycopg.Connection, key: str, unit: int) -> None:
    """What writing one unit leaves: its record, its staged texts gone."""
    file_id = f"{key}-file-{unit}"
    with connection.transaction():
        connection.execute(
            f"INSERT INTO {SCHEMA}.written_collection (collection_name, file_id, content_hash, "
            "settings_fingerprint, embedding_model, chunk_count) "
            "VALUES (%s, %s, 'h', 's', 'm', %s)",
            (f"file-{file_id}", file_id, TEXTS_PER_UNIT),
        )
        connection.execute(f"DELETE FROM {SCHEMA}.staged_chunk WHERE file_id = %s", (file_id,))


@pytest.fixture
def target(fresh_database):
    url = fresh_database()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        apply_migrations(connection)
    return url


def test_figures_span_partitions_and_ignore_earlier_runs(target):
    store = PgVectorResource(database_url=target)
    started = datetime.now(UTC)
    with psycopg.connect(target, autocommit=True) as connection:
        plan(connection, "earlier-run", started - timedelta(hours=1))
        plan(connection, "kb-a", started)
        plan(connection, "kb-b", started)
        write_unit(connection, "kb-a", 0)
        write_unit(connection, "kb-a", 1)
        for unit in range(UNITS_PER_PARTITION):
            write_unit(connection, "kb-b", unit)
        connection.execute(
            f"INSERT INTO {SCHEMA}.file_failure (partition_key, item_id, filename, stage, error) "
            "VALUES ('kb-a', 'kb-a-file-5', 'kb-a-file-5.txt', 'load', 'broken')"
        )
    progress = run_progress(store.connect, ["kb-a", "kb-b", "kb-c"], started)
    assert progress == RunProgress(
        partitions_total=3,
        partitions_planned=2,
        partitions_done=1,
        units_selected=12,
        units_written=8,
        units_failed=1,
        texts_written=8 * TEXTS_PER_UNIT,
        texts_pending=3 * TEXTS_PER_UNIT,
        active_partitions=("kb-a",),
    )
    line = describe(progress, {"kb-a": "Engineering handbook"}, elapsed=60)
    assert "knowledge bases 1/3 done, 2 planned" in line
    assert "collections 8/12" in line and "texts 32/44" in line and "failed 1" in line
    assert "now: Engineering handbook" in line
    # 32 texts in 60 s, 12 to go.
    assert eta_seconds(progress, 60) == pytest.approx(22.5)


def test_a_target_without_state_tables_shows_nothing_planned(fresh_database):
    store = PgVectorResource(database_url=fresh_database())
    progress = run_progress(store.connect, ["kb-a"], datetime.now(UTC))
    assert progress == RunProgress(partitions_total=1)


def test_a_log_gets_a_line_every_interval_while_the_tables_fill_then_a_final_line(target):
    store = PgVectorResource(database_url=target)
    started = datetime.now(UTC)
    keys = ["kb-a", "kb-b"]
    interval = 1.0
    log = LogFile()
    done = threading.Event()

    def migrate() -> None:
        with psycopg.connect(target, autocommit=True) as connection:
            for key in keys:
                plan(connection, key, datetime.now(UTC))
                for unit in range(UNITS_PER_PARTITION):
                    time.sleep(0.3)
                    write_unit(connection, key, unit)
        done.set()

    writer = threading.Thread(target=migrate)
    began = time.monotonic()
    with ProgressReporter(
        lambda: run_progress(store.connect, keys, started),
        names={"kb-a": "Alpha", "kb-b": "Beta"},
        stream=log,
        interval=interval,
    ):
        writer.start()
        writer.join()
    lines = [text for _, text in log.arrivals if text.strip()]
    assert all(LINE.match(text) for text in lines), lines
    times = [began] + [at for at, text in log.arrivals if text.strip()]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(lines) >= 3
    assert max(gaps) <= interval * 1.5, gaps
    texts = [LINE.match(text)["text"] for text in lines]
    assert any("now: Alpha" in text for text in texts)
    assert any("now: Beta" in text for text in texts)
    written = [int(re.search(r"collections (\d+)/", text)[1]) for text in texts]
    assert written == sorted(written) and written[0] < written[-1]
    assert texts[-1].startswith("finished: ")
    assert "knowledge bases 2/2 done" in texts[-1]
    assert f"collections {2 * UNITS_PER_PARTITION}/{2 * UNITS_PER_PARTITION}" in texts[-1]
    assert f"texts {2 * UNITS_PER_PARTITION * TEXTS_PER_UNIT}/" in texts[-1]


def test_a_terminal_gets_one_bar_and_only_the_completion_line(target):
    store = PgVectorResource(database_url=target)
    started = datetime.now(UTC)
    with psycopg.connect(target, autocommit=True) as connection:
        plan(connection, "kb-a", started)
        write_unit(connection, "kb-a", 0)
    screen = io.StringIO()
    with ProgressReporter(
        lambda: run_progress(store.connect, ["kb-a"], started),
        names={"kb-a": "Alpha"},
        stream=screen,
        interactive=True,
        interval=0.2,
    ):
        time.sleep(1.0)
    drawn = screen.getvalue()
    assert f"1/{UNITS_PER_PARTITION}" in drawn and "now: Alpha" in drawn
    # The bar redraws in place; the only line that stays is the completion line.
    pieces = [piece for piece in re.split(r"[\r\n]", drawn) if piece.strip()]
    assert [piece for piece in pieces if LINE.match(piece)] == pieces[-1:]
    assert LINE.match(pieces[-1])["text"].startswith("finished: ")


def test_no_eta_while_knowledge_bases_wait_to_be_planned():
    planned_one = RunProgress(
        partitions_total=3,
        partitions_planned=1,
        partitions_done=1,
        units_selected=6,
        units_written=6,
        texts_written=52,
    )
    assert eta_seconds(planned_one, 20) is None
    assert "ETA" not in describe(planned_one, {}, 20)
    all_done = RunProgress(
        partitions_total=1, partitions_planned=1, partitions_done=1, texts_written=52
    )
    assert eta_seconds(all_done, 20) == 0
