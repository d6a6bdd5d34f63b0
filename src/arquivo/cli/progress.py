"""A Rich progress bar per table, for commands that work through tables of rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from arquivo.cli.context import err_console
from arquivo.portability import Progress as Step
from arquivo.portability import ProgressCallback

__all__ = ["table_progress"]


@contextlib.contextmanager
def table_progress(*, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A callback that draws one bar per (stage, table) on stderr while the block runs.

    Bars go to stderr so that ``--json`` output on stdout stays clean; nothing is drawn
    when stderr is not a terminal.
    """
    if not enabled:
        yield lambda _step: None
        return
    bars = Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    )
    tasks: dict[tuple[str, str], TaskID] = {}

    def update(step: Step) -> None:
        key = (step.stage, step.table)
        task = tasks.get(key)
        if task is None:
            task = tasks[key] = bars.add_task(f"{step.stage} {step.table}", total=step.total)
        bars.update(task, completed=step.done, total=step.total)

    with bars:
        yield update
