"""Where a measured migration's time went between the provider's requests: the Dagster runs and
steps it was made of, read from the PostgreSQL instance that recorded them, on the provider's
clock (seconds after its first request).

A share of the budget below 1.0 is time the provider waited; the request timeline shows when,
and these phases show what the client was doing then (creating the run, planning, a step's
start, the checks at the end of a run, the next run's start).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC

import psycopg

from bench.budget_share import Request

PHASE_EVENTS = (
    "PIPELINE_START",
    "PIPELINE_SUCCESS",
    "PIPELINE_FAILURE",
    "STEP_START",
    "STEP_SUCCESS",
    "STEP_FAILURE",
)


def run_phases(dagster_url: str, requests: Sequence[Request]) -> list[list]:
    """Each run's creation and its start, step and end events as [seconds after the first of
    the provider's `requests`, run number (in creation order), event, step], oldest first.
    The requests' times are monotonic (one clock for every process of the machine), Dagster's
    wall-clock: the offset between the two is read here."""
    url = dagster_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    start = min(r.arrived_at for r in requests) + time.time() - time.monotonic()
    with psycopg.connect(url) as connection:
        runs = connection.execute(
            "SELECT run_id, create_timestamp FROM runs ORDER BY id"
        ).fetchall()
        events = connection.execute(
            "SELECT run_id, dagster_event_type, step_key, timestamp FROM event_logs "
            "WHERE dagster_event_type = ANY(%s) ORDER BY id",
            (list(PHASE_EVENTS),),
        ).fetchall()
    number = {run_id: index + 1 for index, (run_id, _) in enumerate(runs)}

    def seconds(stamp) -> float:
        return round(stamp.replace(tzinfo=UTC).timestamp() - start, 3)

    phases = [[seconds(created), number[run_id], "RUN_CREATED", None] for run_id, created in runs]
    phases += [
        [seconds(stamp), number.get(run_id), kind.replace("PIPELINE", "RUN"), step]
        for run_id, kind, step, stamp in events
    ]
    return sorted(phases, key=lambda phase: phase[0])
