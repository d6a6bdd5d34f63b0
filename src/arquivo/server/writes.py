"""Where write routes run: the thread pool, a few writes at a time per process.

SQLite takes one writer at a time for the whole file. Thirty threads of one server
process all asking for the lock would each sleep in SQLite's busy handler (up to tens of
milliseconds per retry), which shows up as a long tail of latency; queuing them in the
process first leaves the file lock to arbitrate only between worker processes.

PostgreSQL takes many writers, but sixteen threads of one process each waiting on a
commit still made a long tail: they take turns on the GIL with the event loop, and
the connections they need are opened under load. A few at a time (``concurrent_writes``)
keep enough commits in flight for the server to flush them together, and the rest
queue in order. Measured with 32 connections and 2 workers on 2 cores, appends: p99
55-81 ms with no limit, 55-69 ms with 8, 36-45 ms with 4, at the same rate.
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


def writer_limiter(store: Arquivo, concurrent: int) -> CapacityLimiter:
    """A limiter of one slot where the database has a single writer, else ``concurrent``."""
    return CapacityLimiter(1 if get_dialect(store.dialect).single_writer else concurrent)


async def run_write(request: Request, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store write in a worker thread, queued behind this process's other writes."""
    return await run_write_with(request.app.state.writer, call, *args, **kwargs)


async def run_write_with(
    limiter: CapacityLimiter, call: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """:func:`run_write` with the app's writer limiter given directly."""
    return await anyio.to_thread.run_sync(partial(call, *args, **kwargs), limiter=limiter)
