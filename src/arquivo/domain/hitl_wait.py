"""Blocking until a HITL session is decided: notifications where the database has them.

PostgreSQL: a dedicated connection ``LISTEN``s on :data:`CHANNEL` *before* the first
read, so a decision committed between that read and the wait still wakes it; deciders
``pg_notify`` inside their transaction, so a wake-up always finds the decision
committed. Each wake-up (any session's) re-reads the one row, and the wait falls back to
a read every :data:`FALLBACK_POLL_S` for decisions written without a notification (raw
SQL, the ORM).

SQLite has no notifications: the waiter polls, starting fast (most decisions an agent
waits for in a test or a pipeline come quickly) and backing off to ``poll_interval``.
A poll is one indexed read in autocommit, which costs tens of microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from arquivo.db.dialects import DialectSupport, translate_errors
from arquivo.db.types import utcnow
from arquivo.errors import WaitTimeoutError
from arquivo.values import HITLRequest

__all__ = ["CHANNEL", "FALLBACK_POLL_S", "FIRST_POLL_S", "wait_for_decision"]

#: The notification channel decisions are announced on (payload: the session id).
CHANNEL = "arquivo_hitl"
#: With notifications, read the row at least this often anyway.
FALLBACK_POLL_S = 1.0
#: Without notifications, the first pause between reads (it then grows by half each time).
FIRST_POLL_S = 0.002


def _until(moment: datetime | None) -> float:
    if moment is None:
        return float("inf")
    return max((moment - utcnow()).total_seconds(), 0.0)


def wait_for_decision(
    session_id: str,
    read: Callable[[], HITLRequest],
    *,
    engine: Engine,
    support: DialectSupport,
    timeout: float | None,
    poll_interval: float,
) -> HITLRequest:
    """Return ``read()`` once it is no longer pending; raise on timeout.

    Args:
        session_id: The session (for the error message).
        read: Reads the session as callers see it.
        engine: Where to open the listening connection.
        support: The database's dialect support.
        timeout: Seconds to wait at most; ``None`` waits for ever.
        poll_interval: The longest pause between reads when polling.

    Raises:
        WaitTimeoutError: ``timeout`` passed first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        with translate_errors(engine.dialect.name):
            listener = support.listen(engine, CHANNEL)
    except support.driver_error_types() as exc:  # LISTEN itself failed
        raise (support.translate_driver(exc) or exc) from exc
    delay = FIRST_POLL_S
    try:
        while True:
            current = read()
            if not current.is_pending:
                return current
            # Wake for the deadline itself too: expiry sends no notification.
            pause = _until(current.expires_at) + 0.001
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeoutError(
                        f"HITL session {session_id} was still pending after {timeout} s",
                        hint="wait again, or decide it with `arquivo hitl approve/reject`",
                    )
                pause = min(pause, remaining)
            if listener is not None:
                try:
                    listener.wait(min(pause, FALLBACK_POLL_S))
                except support.driver_error_types() as exc:
                    raise (support.translate_driver(exc) or exc) from exc
            else:
                time.sleep(min(pause, delay))
                delay = min(delay * 1.5, poll_interval)
    finally:
        if listener is not None:
            listener.close()
