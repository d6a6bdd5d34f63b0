"""Long-poll waits for HITL decisions that hold no worker thread while they wait.

``store.hitl.wait`` blocks a thread for the whole wait, which would exhaust the server's
thread pool with a few dozen waiting agents. Here a waiter is a coroutine: it reads the
session (a short call in the pool), then sleeps on the event loop. On PostgreSQL one
thread per process ``LISTEN``s for every decision and wakes all waiters, who re-read
their row; on SQLite (no notifications) waiters poll, backing off to
:data:`MAX_POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from starlette.concurrency import run_in_threadpool

from arquivo.db.dialects import get_dialect
from arquivo.db.types import utcnow
from arquivo.domain.hitl_wait import CHANNEL, FALLBACK_POLL_S
from arquivo.errors import ArquivoError
from arquivo.store import Arquivo
from arquivo.values import HITLRequest

__all__ = ["MAX_POLL_S", "DecisionWaiters"]

log = logging.getLogger("arquivo.server")

#: Without notifications, the longest pause between two reads of a waited-on session.
MAX_POLL_S = 0.2
_FIRST_POLL_S = 0.01


class DecisionWaiters:
    """Every long-poll wait of one app, woken together by one listening connection."""

    def __init__(self, store: Arquivo) -> None:
        self._store = store
        self._events: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._notifying = False
        self._start_lock = threading.Lock()

    def _listen(self) -> None:
        support = get_dialect(self._store.dialect)
        failures: tuple[type[BaseException], ...] = (ArquivoError, *support.driver_error_types())
        try:
            listener = support.listen(self._store.engine, CHANNEL)
        except failures as exc:
            log.warning("cannot listen for HITL decisions, polling instead: %s", exc)
            listener = None
        self._notifying = listener is not None
        self._ready.set()
        if listener is None:
            return
        try:
            while not self._stop.is_set():
                try:
                    woke = listener.wait(FALLBACK_POLL_S)
                except support.driver_error_types() as exc:
                    log.warning("the HITL listener lost its connection: %s", exc)
                    self._notifying = False
                    break
                if woke and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._wake_all)
        finally:
            listener.close()
            if self._loop is not None and not self._loop.is_closed():
                # Waiters fall back to polling; wake them so they notice at once.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for event in self._events:
            event.set()

    async def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._loop = asyncio.get_running_loop()
                self._thread = threading.Thread(
                    target=self._listen, name="arquivo-hitl-listener", daemon=True
                )
                self._thread.start()
        await run_in_threadpool(self._ready.wait, 10.0)

    async def wait(self, session_id: str, timeout: float) -> HITLRequest:
        """The session once decided, or as it stands after ``timeout`` seconds."""
        await self._start()
        event = asyncio.Event()
        self._events.add(event)
        deadline = time.monotonic() + timeout
        delay = _FIRST_POLL_S
        try:
            while True:
                event.clear()
                current = await run_in_threadpool(self._store.hitl.get, session_id)
                if current.status == "expired" and current.completed_at is None:
                    # Store the expiry (and its audit event) the first time it is seen.
                    return await run_in_threadpool(self._store.hitl.wait, session_id, 0)
                if not current.is_pending:
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return current
                pause = remaining
                if current.expires_at is not None:
                    until = (current.expires_at - utcnow()).total_seconds() + 0.001
                    pause = min(pause, max(until, 0.0))
                if self._notifying:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), min(pause, FALLBACK_POLL_S))
                else:
                    await asyncio.sleep(min(pause, delay))
                    delay = min(delay * 1.5, MAX_POLL_S)
        finally:
            self._events.discard(event)

    def close(self) -> None:
        """Stop the listening thread (within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=FALLBACK_POLL_S + 1.0)
