"""Automatic backups: take one every interval, prune by the retention rules, repeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from arquivo.backup.manifest import BackupInfo
from arquivo.backup.service import Backups, PruneReport
from arquivo.errors import ArquivoError, ValidationError

__all__ = ["ScheduleRun", "run_schedule"]


@dataclass(frozen=True)
class ScheduleRun:
    """One turn of the schedule.

    Attributes:
        number: 1 for the first backup, then 2, 3...
        backup: The backup taken (``None`` when it failed).
        pruned: What retention removed after it.
        error: Why the backup failed (the schedule carries on).
    """

    number: int
    backup: BackupInfo | None
    pruned: PruneReport | None
    error: ArquivoError | None


def run_schedule(
    backups: Backups,
    every: timedelta,
    *,
    stop: threading.Event,
    keep_last: int | None = None,
    max_age: timedelta | None = None,
    max_runs: int | None = None,
    label: str = "scheduled",
    on_run: Callable[[ScheduleRun], None] | None = None,
) -> list[ScheduleRun]:
    """Back up now, then every ``every``, until ``stop`` is set or ``max_runs`` is reached.

    A backup in progress always finishes (or cleans up after itself) before the loop
    looks at ``stop``; a failed backup is reported and the schedule carries on.

    Args:
        backups: What to back up, and where.
        every: The interval between the starts of two backups.
        stop: Set it (from a signal handler, say) to end the loop.
        keep_last: Prune to this many backups after each one.
        max_age: Prune backups older than this after each one.
        max_runs: Stop after this many backups (default: run until stopped).
        label: The label of the scheduled backups.
        on_run: Called after each turn.

    Raises:
        ValidationError: ``every`` is not positive, or ``max_runs`` is below 1.
    """
    if every.total_seconds() <= 0:
        raise ValidationError("the backup interval must be positive", hint="e.g. --every 6h")
    if max_runs is not None and max_runs < 1:
        raise ValidationError(f"max_runs must be at least 1, not {max_runs}")
    runs: list[ScheduleRun] = []
    while not stop.is_set():
        started = time.monotonic()
        backup: BackupInfo | None = None
        pruned: PruneReport | None = None
        error: ArquivoError | None = None
        try:
            backup = backups.create(label=label)
            if keep_last is not None or max_age is not None:
                pruned = backups.prune(keep_last=keep_last, max_age=max_age)
        except ArquivoError as exc:
            error = exc
        run = ScheduleRun(len(runs) + 1, backup, pruned, error)
        runs.append(run)
        if on_run is not None:
            on_run(run)
        if max_runs is not None and len(runs) >= max_runs:
            break
        stop.wait(max(0.0, every.total_seconds() - (time.monotonic() - started)))
    return runs
