"""The nightly path, measured: an asset backfill over knowledge partitions run by the daemon.

The backfill is launched as the UI's "Materialize" dialog does (GraphQL `launchPartitionBackfill`
through the `dagster-graphql` CLI, on the migration assets and the given partitions), then
`dagster-daemon run` executes it: its backfill daemon makes the runs, its run queue starts them
under the instance's concurrency limits (the repository's dagster.yaml, on PostgreSQL). The
project's sensors are stopped first, so that no other run or backfill competes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.run_bench import stop_process_group

ROOT = Path(__file__).resolve().parents[1]
SENSORS = ("knowledge_partitions_sensor", "nightly_migration", "vector_index_after_loading")
MIGRATION_ASSETS = (
    "file_inventory",
    "completeness_report",
    "chunked_documents",
    "transplanted_embeddings",
    "embedded_collections",
)
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}
"""
# Polls the instance until the backfill is over, then prints its runs as JSON.
WAIT = """
import json, sys, time
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
backfill_id, timeout = sys.argv[1], float(sys.argv[2])
over = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS,
        BulkActionStatus.COMPLETED_FAILED, BulkActionStatus.FAILED, BulkActionStatus.CANCELED}
active = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
          DagsterRunStatus.STARTED]
deadline = time.monotonic() + timeout
with DagsterInstance.get() as instance:
    while True:
        backfill = instance.get_backfill(backfill_id)
        filters = RunsFilter(tags={"dagster/backfill": backfill_id})
        running = instance.get_runs_count(RunsFilter(
            tags={"dagster/backfill": backfill_id}, statuses=active))
        if (backfill.status in over and not running) or time.monotonic() > deadline:
            break
        print(f"backfill {backfill.status.value}, {instance.get_runs_count(filters)} runs, "
              f"{running} active", file=sys.stderr, flush=True)
        time.sleep(5)
    records = instance.get_run_records(filters)
    print(json.dumps({
        "status": backfill.status.value,
        "timed_out": time.monotonic() > deadline,
        "created": backfill.backfill_timestamp,
        "runs": len(records),
        "runs_by_status": {s: sum(1 for r in records if r.dagster_run.status.value == s)
                           for s in {r.dagster_run.status.value for r in records}},
        "last_end": max((r.end_time or 0 for r in records), default=None),
        "first_start": min((r.start_time or 1e18 for r in records), default=None),
    }))
"""


def _dagster(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).with_name(args[0])), *args[1:]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def launch_backfill(env: dict[str, str], partitions: list[str]) -> str:
    """Queue an asset backfill of the migration assets over `partitions`; returns its id."""
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": [name]} for name in MIGRATION_ASSETS],
    }
    output = _dagster(
        "dagster-graphql",
        "-w",
        "workspace.yaml",
        "-t",
        LAUNCH,
        "-v",
        json.dumps({"params": params}),
        env=env,
    )
    reply = [line for line in output.splitlines() if line.startswith('{"data"')][-1]
    answer = json.loads(reply)["data"]["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {json.dumps(answer)[:3000]}")
    return answer["backfillId"]


def run_backfill(env: dict[str, str], partitions: list[str], workdir: Path, timeout: float) -> dict:
    """Stop the sensors, launch the backfill, run the daemon until it is over; returns the
    wall time from launch to the backfill's end, its runs, and the daemon's log path."""
    for sensor in SENSORS:
        _dagster("dagster", "sensor", "stop", "-w", "workspace.yaml", sensor, env=env)
    launched = time.time()
    backfill_id = launch_backfill(env, partitions)
    daemon_log = workdir / "dagster-daemon.log"
    with daemon_log.open("wb") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        waited = subprocess.run(
            [sys.executable, "-c", WAIT, backfill_id, str(timeout)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout + 120,
        )
    finally:
        stop_process_group(daemon, grace_seconds=60)
    if waited.returncode != 0:
        raise RuntimeError(f"waiting for backfill {backfill_id} failed:\n{waited.stderr[-3000:]}")
    result = json.loads(waited.stdout.strip().splitlines()[-1])
    end = result["last_end"] or time.time()
    return {
        **result,
        "backfill_id": backfill_id,
        "partitions": len(partitions),
        "seconds_launch_to_last_run_end": round(end - launched, 1),
        "daemon_log": str(daemon_log),
    }
