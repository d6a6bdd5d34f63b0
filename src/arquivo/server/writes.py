"""Where write routes run: the thread pool, one writer at a time per process on SQLite.

SQLite takes one writer at a time for the whole file. Thirty threads of one server
process all asking for the lock would each sleep in SQLite's busy handler (up to tens of
milliseconds per retry), which shows up as a long tail of latency; queuing them in the
process first leaves the file lock to arbitrate only between worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request

from arquivo.db.dialects import get_dialect
from arquivo.store import Arquivo

__all__ = ["run_write", "run_write_with", "writer_limiter"]

T = TypeVar("T")


def writer_limiter(store: Arquivo) -> CapacityLimiter | None:
    """A one-slot limiter where the database has a single writer, else ``None``."""
    return CapacityLimiter(1) if get_dialect(store.dialect).single_writer else None


async def run_write(request: Request, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store write in a worker thread, queued behind this process's other writes."""
    return await run_write_with(request.app.state.writer, call, *args, **kwargs)


async def run_write_with(
    limiter: CapacityLimiter | None, call: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """:func:`run_write` with the app's writer limiter given directly."""
    return await anyio.to_thread.run_sync(partial(call, *args, **kwargs), limiter=limiter)
