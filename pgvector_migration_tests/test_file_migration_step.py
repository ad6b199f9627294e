"""migrate_files: loading and embedding overlap in one step, each asset can still be
materialized alone, and each distinct text reaches the provider once per run."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter

import dagster as dg

from pgvector_migration import cli
from pgvector_migration.assets import file_migration
from pgvector_migration.definitions import defs
from pgvector_migration.partitions import knowledge_partitions
from pgvector_migration.pipeline.records import WriteUnit
from pgvector_migration.pipeline.unit_handoff import HandoffAbandoned, UnitHandoff
from pgvector_migration.sample_data import KNOWLEDGE_BASES, sample_file_id

FOUNDING, LITERATURE = (knowledge.id for knowledge in KNOWLEDGE_BASES)
PROBE = "dimension probe"
LOADING = [dg.AssetKey(name) for name in ("file_inventory", "completeness_report")]


def unit(file_id: str) -> WriteUnit:
    return WriteUnit(f"file-{file_id}", file_id, f"{file_id}.txt", "hash", "settings", [])


def test_handoff_gives_units_to_the_consumer_while_the_producer_goes_on():
    handoff = UnitHandoff(max_files=1)
    taken: list[str] = []
    first_taken = threading.Event()

    def consume() -> None:
        for item in handoff.units():
            taken.append(item.source_id)
            first_taken.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    handoff.put([unit("a")])
    assert first_taken.wait(5), "the first file is embedded before loading ends"
    handoff.put([unit("b"), unit("c")])
    handoff.put([unit("d")])
    handoff.close()
    consumer.join(5)
    assert taken == ["a", "b", "c", "d"]
    assert handoff.handed_over == {(f"file-{f}", f) for f in "abcd"}


def test_a_full_handoff_holds_the_producer_and_a_stopped_consumer_releases_it():
    handoff = UnitHandoff(max_files=1)
    handoff.put([unit("a")])
    released = threading.Event()
    outcome: list[BaseException] = []

    def produce() -> None:
        try:
            handoff.put([unit("b")])
        except HandoffAbandoned as error:
            outcome.append(error)
        released.set()

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.2)
    assert not released.is_set(), "the producer waits while the queue is full"
    assert next(handoff.units()).source_id == "a"
    handoff.abandon()  # the writer stopped with an error
    assert released.wait(5)
    assert outcome and isinstance(outcome[0], HandoffAbandoned)
    producer.join(5)


def test_the_handoff_holds_the_producer_by_chunks_and_still_takes_one_large_file():
    from pgvector_migration.pipeline.records import Chunk

    def file_of(file_id: str, chunks: int) -> list[WriteUnit]:
        chunk = Chunk("c", f"file-{file_id}", file_id, 0, "text", {})
        return [dataclasses.replace(unit(file_id), chunks=[chunk] * chunks)]

    handoff = UnitHandoff(max_files=10, max_chunks=5)
    handoff.put(file_of("large", 8))  # larger than the bound, taken into an empty queue
    put_next = threading.Event()

    def produce() -> None:
        handoff.put(file_of("small", 1))
        put_next.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not put_next.wait(0.2), "8 chunks wait, more than 5: the producer waits"
    units = handoff.units()
    assert next(units).source_id == "large"
    assert put_next.wait(5), "once the large file is taken, the small one goes in"
    handoff.close()
    assert [u.source_id for u in units] == ["small"]
    producer.join(5)


def migration_run(instance, selection: list[dg.AssetKey]):
    return defs.resolve_job_def("migrate_knowledge_base").execute_in_process(
        instance=instance, partition_key=FOUNDING, asset_selection=selection
    )


def written_rows(deployment) -> list[tuple]:
    with deployment.connect() as connection:
        return connection.execute(
            "SELECT collection_name, id, text, vmetadata, vector::text FROM document_chunk "
            "ORDER BY collection_name, id"
        ).fetchall()


def staged_chunks(deployment) -> int:
    with deployment.connect() as connection:
        return connection.execute(
            "SELECT count(*) FROM pgvector_migration.staged_chunk"
        ).fetchone()[0]


def test_each_asset_alone_and_the_streamed_step_write_the_same_rows(
    deployment, fresh_database, monkeypatch
):
    chunked, embedded = dg.AssetKey("chunked_documents"), dg.AssetKey("embedded_collections")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        alone = migration_run(instance, [*LOADING, chunked])
        assert alone.success
        done = {m.asset_key for m in alone.asset_materializations_for_node("migrate_files")}
        assert done == {chunked}
        assert staged_chunks(deployment) > 0, "staged"
        with deployment.connect() as connection:
            table = connection.execute("SELECT to_regclass('document_chunk')").fetchone()[0]
        assert table is None, "nothing written by chunking alone"
        assert migration_run(instance, [embedded]).success
        assert staged_chunks(deployment) == 0
        one_after_the_other = written_rows(deployment)

    monkeypatch.setenv("PGVECTOR_DB_URL", fresh_database())
    streamed_target = dataclasses.replace(deployment, target_url=os.environ["PGVECTOR_DB_URL"])
    deployment.server.reset()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [FOUNDING])
        result = migration_run(instance, [*LOADING, chunked, embedded])
        assert result.success
        figures = {
            m.asset_key: m.metadata for m in result.asset_materializations_for_node("migrate_files")
        }
    assert figures[chunked]["files_chunked"].value == 3
    assert figures[embedded]["collections_written"].value == 6  # 3 files x 2 collections
    assert staged_chunks(streamed_target) == 0, "every staged unit was written"
    sent = Counter(text for text in deployment.server.inputs if text != PROBE)
    assert sent and max(sent.values()) == 1, "each distinct text is sent once"
    assert written_rows(streamed_target) == one_after_the_other


def test_cli_sends_each_distinct_text_once_and_probes_once(deployment, tmp_path):
    code = cli.main(["--no-progress", "--only", "files"])

    assert code == cli.EXIT_FAILED  # the sample's corrupt PDF
    inputs = deployment.server.inputs
    assert inputs.count(PROBE) == 1, "the preflight's probe; the run does not ask again"
    sent = Counter(text for text in inputs if text != PROBE)
    assert max(sent.values()) == 1
    shared = sample_file_id("gettysburg_and_inaugural.txt")
    with deployment.connect() as connection:
        collections = {
            row[0]
            for row in connection.execute(
                "SELECT DISTINCT collection_name FROM document_chunk "
                "WHERE vmetadata->>'file_id' = %s",
                (shared,),
            )
        }
        distinct_inputs = connection.execute(
            "SELECT count(DISTINCT replace(text, E'\\n', ' ')) FROM document_chunk"
        ).fetchone()[0]
    # The shared file is in its own collection and both knowledge bases' ...
    assert collections == {f"file-{shared}", FOUNDING, LITERATURE}
    # ... and every distinct text written was sent once, no more.
    assert len(sent) == distinct_inputs


def test_a_writer_that_fails_stops_loading_with_its_own_error(deployment, monkeypatch):
    monkeypatch.setattr(file_migration, "FILES_WAITING_TO_EMBED", 1)
    monkeypatch.setenv("RAG_EMBEDDING_MODEL", "model-not-cached-yet")
    monkeypatch.setenv("RAG_OPENAI_API_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("PGVECTOR_MIGRATION_MAX_RETRIES", "0")
    chunked, embedded = dg.AssetKey("chunked_documents"), dg.AssetKey("embedded_collections")
    outcome: list = []
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(knowledge_partitions.name, [LITERATURE])
        run = threading.Thread(
            target=lambda: outcome.append(
                defs.resolve_job_def("migrate_knowledge_base").execute_in_process(
                    instance=instance,
                    partition_key=LITERATURE,
                    asset_selection=[*LOADING, chunked, embedded],
                    raise_on_error=False,
                )
            )
        )
        run.start()
        run.join(120)
        assert not run.is_alive(), "loading waits on a full handoff forever"
    (result,) = outcome
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "migrate_files"
    assert "127.0.0.1:9" in failure.event_specific_data.error.to_string()
