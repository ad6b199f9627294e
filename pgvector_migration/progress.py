"""Progress of a migration, for a person at a terminal and for a log file alike.

The figures are polled from our state tables (see `resources/run_progress.py`), so the reporter
works whatever runs the steps: this process, a run launched in the Dagster UI, other machines.
On a terminal it draws one overall bar; when the output is a file or a pipe (`nohup
pgvector-migrate > migration.log &`, then `tail -f`) it writes a line every few seconds with the
same figures and a final line when the run is over.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

# A log line at least this often: a background run shows it is alive within seconds.
LOG_INTERVAL_SECONDS = 5.0
TERMINAL_INTERVAL_SECONDS = 0.5
SHOWN_NAMES = 2


@dataclass(frozen=True)
class RunProgress:
    """Overall figures of one run across its partitions, from the state tables.

    `units_*` count (file, collection) units; `texts_*` their chunk texts: those written, and
    those staged and still to embed and write. A partition is planned once its completeness
    report of this run exists (until then its units are not in the totals), done once none of
    its selected units is left to write, active in between."""

    partitions_total: int
    partitions_planned: int = 0
    partitions_done: int = 0
    units_selected: int = 0
    units_written: int = 0
    units_failed: int = 0
    texts_written: int = 0
    texts_pending: int = 0
    active_partitions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def texts_total(self) -> int:
        return self.texts_written + self.texts_pending

    @property
    def units_left(self) -> int:
        return max(0, self.units_selected - self.units_written - self.units_failed)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def eta_seconds(progress: RunProgress, elapsed: float) -> float | None:
    """Time left at the rate so far, over the texts of the planned partitions (written texts
    measure the work better than units, whose sizes differ); None before anything is written."""
    if progress.texts_pending == 0:
        all_planned = progress.partitions_planned >= progress.partitions_total
        return 0.0 if all_planned and progress.texts_written else None
    if progress.texts_written == 0 or elapsed <= 0:
        return None
    return elapsed * progress.texts_pending / progress.texts_written


def describe(
    progress: RunProgress, names: Mapping[str, str], elapsed: float, kind: str = "knowledge bases"
) -> str:
    """The figures as one line, the same on a terminal and in a log."""
    eta = eta_seconds(progress, elapsed)
    planned = (
        ""
        if progress.partitions_planned >= progress.partitions_total
        else f", {progress.partitions_planned} planned"
    )
    parts = [
        f"{kind} {progress.partitions_done}/{progress.partitions_total} done{planned}",
        f"collections {progress.units_written}/{progress.units_selected}",
        f"texts {progress.texts_written:,}/{progress.texts_total:,}",
    ]
    if progress.units_failed:
        parts.append(f"failed {progress.units_failed}")
    parts.append(f"elapsed {format_duration(elapsed)}")
    if eta is not None and progress.texts_pending:
        scope = "" if not planned else " for the planned ones"
        parts.append(f"ETA {format_duration(eta)}{scope}")
    if progress.active_partitions:
        shown = [names.get(key, key) for key in progress.active_partitions[:SHOWN_NAMES]]
        more = len(progress.active_partitions) - len(shown)
        parts.append("now: " + ", ".join(shown) + (f" and {more} more" if more else ""))
    return ", ".join(parts)


class ProgressReporter:
    """Polls `read_progress` in a thread while the run goes on; a bar on a terminal, a line
    every `interval` seconds (and a last one) otherwise. A failed read (the tables may not exist
    yet, the target may be restarting) is skipped, never fatal: progress is a view, not a step.
    """

    def __init__(
        self,
        read_progress: Callable[[], RunProgress],
        names: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        interval: float | None = None,
        enabled: bool = True,
    ) -> None:
        self._read = read_progress
        self._names = dict(names or {})
        self._stream = stream or sys.stderr
        isatty = getattr(self._stream, "isatty", lambda: False)
        self._interactive = isatty() if interactive is None else interactive
        self._interval = interval or (
            TERMINAL_INTERVAL_SECONDS if self._interactive else LOG_INTERVAL_SECONDS
        )
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="progress")
        self._started = time.monotonic()
        self._last: RunProgress | None = None

    def __enter__(self) -> ProgressReporter:
        if self._enabled:
            self._started = time.monotonic()
            self._thread.start()
        return self

    def __exit__(self, error_type, *exc_info) -> None:
        if not self._enabled:
            return
        self._stop.set()
        self._thread.join()
        final = self._try_read() or self._last
        if final is not None:
            ended = "finished" if error_type is None else "stopped"
            self._write_line(f"{ended}: " + self._line(final))

    def _try_read(self) -> RunProgress | None:
        try:
            return self._read()
        except Exception:
            return None

    def _line(self, progress: RunProgress) -> str:
        return describe(progress, self._names, time.monotonic() - self._started)

    def _write_line(self, text: str) -> None:
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self._stream.write(f"{stamp} progress: {text}\n")
        self._stream.flush()

    def _poll(self) -> None:
        if self._interactive:
            self._draw_bar()
            return
        while not self._stop.wait(self._interval):
            progress = self._try_read()
            if progress is not None:
                self._last = progress
                self._write_line(self._line(progress))

    def _draw_bar(self) -> None:
        from tqdm import tqdm

        with tqdm(
            desc="collections", unit="collection", file=self._stream, leave=False, total=0
        ) as bar:
            while not self._stop.wait(self._interval):
                progress = self._try_read()
                if progress is None:
                    continue
                self._last = progress
                bar.total = progress.units_selected
                bar.n = progress.units_written
                names = [self._names.get(k, k) for k in progress.active_partitions[:SHOWN_NAMES]]
                bar.set_postfix_str(
                    f"texts {progress.texts_written:,}/{progress.texts_total:,}, "
                    f"knowledge bases {progress.partitions_planned}/{progress.partitions_total}"
                    + (f", now: {', '.join(names)}" if names else ""),
                    refresh=False,
                )
                bar.refresh()
