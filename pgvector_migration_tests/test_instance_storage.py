"""The instance storage of the repository's dagster.yaml (`pgvector_migration.instance_storage`)
gives a pool its default limit safely when several processes start runs at once on a new
instance: Dagster 1.13's own insert-then-update fails every caller after the first on
PostgreSQL (dagster-io/dagster#33552), which failed one of two runs started together."""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

ROOT = Path(__file__).resolve().parents[1]
POOL = "embedding_api"


def deployed_instance(tmp_path, fresh_database, monkeypatch) -> dg.DagsterInstance:
    storage_url = fresh_database("dagster").replace("postgresql://", "postgresql+psycopg2://", 1)
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_PG_URL", storage_url)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))


def test_a_pool_gets_its_default_limit_once_from_concurrent_and_repeated_callers(
    tmp_path, fresh_database, monkeypatch
):
    instance = deployed_instance(tmp_path, fresh_database, monkeypatch)
    storage = instance.event_log_storage
    limit = instance.global_op_concurrency_default_limit
    assert limit == 2, "dagster.yaml's pools.default_limit"

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def initialize() -> None:
        start.wait()
        try:
            assert storage.initialize_concurrency_limit_to_default(POOL)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=initialize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A caller that finds the row already there (a retried run, a later process).
    assert storage.initialize_concurrency_limit_to_default(POOL)

    info = storage.get_concurrency_info(POOL)
    assert info.slot_count == limit
    assert storage.get_concurrency_keys() == {POOL}
