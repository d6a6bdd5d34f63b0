"""``store.hitl``: durable human-in-the-loop sessions with an append-only audit trail.

A workflow step asks a person something (:meth:`HITL.request`), then blocks in
:meth:`HITL.wait` until someone decides. Every decision is a compare-and-set on the
session's row (``UPDATE ... WHERE id = :id AND status = 'pending' AND not expired``)
whose row count says whether it won; the audit row and (on PostgreSQL) the
notification that wakes waiters are written in the same transaction, so a decision is
single, audited and announced only if it commits.

Expiry is read-side: ``get``, ``pending``, ``list`` and ``wait`` report a pending
session past its ``expires_at`` as ``expired`` at once, and no decision is accepted on
it; :meth:`HITL.expire_due` (or the waiter that notices) stores the expiry and its
audit event, exactly once.
"""

from __future__ import annotations

import builtins
import math
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from arquivo.db.dialects import get_dialect
from arquivo.db.fastpath import Driver
from arquivo.db.types import utcnow
from arquivo.domain import hitl_sql as sql
from arquivo.domain.base import Facade
from arquivo.domain.hitl_wait import CHANNEL, wait_for_decision
from arquivo.errors import ConflictError, NotFoundError, ValidationError
from arquivo.models.hitl import HITL_KINDS, HITL_STATUSES
from arquivo.validation import (
    check_datetime,
    check_id,
    check_json,
    check_limit,
    check_text,
    shown,
)
from arquivo.values import HITLActionRecord, HITLRequest, from_rows

__all__ = ["HITL", "SYSTEM_ACTOR"]

#: The actor recorded for what Arquivo does by itself (expiries).
SYSTEM_ACTOR = "system"
# What each decision may close: a yes/no is approved or rejected, an input is answered,
# a review may be approved as proposed, answered with edited data, or rejected.
_APPROVABLE = ("approval", "review")
_RESPONDABLE = ("input", "review")
_ANY = HITL_KINDS


def _action_id() -> str:
    # Time first, so a session's events sort in the order they happened even when two
    # share a timestamp; the random part keeps ids unique across processes.
    return f"{time.time_ns():016x}-{secrets.token_hex(8)}"


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(
        f"there is no HITL session {session_id!r}",
        hint="list sessions with store.hitl.list() or `arquivo hitl list`",
    )


def _check_actor(actor: object) -> str:
    return check_id("actor", actor)


def _check_reason(field: str, value: object) -> str:
    text = check_text(field, value, max_chars=10_000)
    if not text.strip():
        raise ValidationError(f"{field} must not be empty", hint=f"say why, in {field}")
    return text


def _check_expires_in(expires_in: object) -> timedelta | None:
    if expires_in is None:
        return None
    if isinstance(expires_in, timedelta):
        seconds = expires_in.total_seconds()
    elif isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
        seconds = float(expires_in)
    else:
        raise ValidationError(
            f"expires_in must be seconds or a timedelta, not {type(expires_in).__name__}",
            hint="e.g. expires_in=3600 or timedelta(hours=1)",
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"expires_in must be positive, not {shown(expires_in)}")
    return timedelta(seconds=seconds)


def _check_timeout(field: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number of seconds, not {shown(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValidationError(f"{field} must be a non-negative number, not {shown(value)}")
    return float(value)


_request = from_rows(HITLRequest)


def _when(moment: datetime | None) -> str:
    return "at an unknown time" if moment is None else f"at {moment.isoformat()}"


class HITL(Facade):
    """Human-in-the-loop sessions: request, decide once, audit, wait.

    Statuses: ``pending`` -> ``approved`` | ``rejected`` | ``completed`` |
    ``cancelled`` | ``expired``; a closed session never changes again.
    """

    __slots__ = ()

    # --- writes ---------------------------------------------------------------------

    def request(
        self,
        workflow_id: str,
        step_id: str,
        request_data: Any,
        *,
        user_id: str | None = None,
        kind: str = "approval",
        expires_in: float | timedelta | None = None,
        actor: str | None = None,
    ) -> HITLRequest:
        """Ask a person: create a pending session (and its ``created`` audit event).

        Args:
            workflow_id: The workflow asking.
            step_id: The step of the workflow that waits.
            request_data: What to show the person (JSON): the tool call, the answer...
            user_id: Who should answer, if someone in particular.
            kind: ``approval`` (approve / reject), ``input`` (the person returns data
                with :meth:`respond`) or ``review`` (approve, reject, or respond with
                edited data).
            expires_in: Seconds (or a timedelta) after which it expires undecided.
            actor: Who asks, as the ``created`` event records it (default: the
                workflow id; the HTTP service passes the caller's user).

        Raises:
            ValidationError: Bad ids, an unknown kind, data that is not JSON, or a
                non-positive ``expires_in``.
        """
        check_id("workflow_id", workflow_id)
        creator = workflow_id if actor is None else _check_actor(actor)
        check_id("step_id", step_id)
        if user_id is not None:
            check_id("user_id", user_id)
        if kind not in HITL_KINDS:
            raise ValidationError(
                f"kind must be one of {', '.join(HITL_KINDS)}, not {shown(kind)}",
                hint="approval: yes/no; input: the person returns data; review: either",
            )
        check_json("request_data", request_data)
        lifetime = _check_expires_in(expires_in)
        now = utcnow()
        expires_at = None if lifetime is None else now + lifetime
        session_id = str(uuid.uuid4())
        with self._store.unit(write=True) as driver:
            driver.rowcount(
                sql.insert_session,
                {
                    "id": session_id,
                    "workflow_id": workflow_id,
                    "step_id": step_id,
                    "user_id": user_id,
                    "kind": kind,
                    "request_data": request_data,
                    "expires_at": expires_at,
                    "now": now,
                },
            )
            data = {"kind": kind, "user_id": user_id}
            self._audit(driver, session_id, "created", creator, data, now)
        return HITLRequest(
            session_id,
            workflow_id,
            step_id,
            user_id,
            kind,
            "pending",
            request_data,
            None,
            None,
            now,
            now,
            expires_at,
            None,
        )

    def approve(
        self, id: str, *, actor: str, response_data: Any = None, comment: str | None = None
    ) -> HITLRequest:
        """Approve an ``approval`` or ``review`` session.

        Args:
            id: The session.
            actor: Who decides (recorded in the session and the audit trail).
            response_data: Optional JSON to hand back (e.g. adjusted arguments).
            comment: Optional remark, kept in the audit trail.

        Raises:
            NotFoundError: No such session.
            ConflictError: It is already closed (the message names its status and who
                set it) or has expired.
            ValidationError: An empty actor, data that is not JSON, or an ``input``
                session (answer it with :meth:`respond`).
        """
        data: dict[str, Any] = {"status": "approved", "response_data": response_data}
        if comment is not None:
            data["comment"] = _check_reason("comment", comment)
        return self._decide(id, _APPROVABLE, "approved", actor, response_data, "decided", data)

    def reject(self, id: str, *, actor: str, reason: str) -> HITLRequest:
        """Reject a session of any kind, saying why.

        Raises:
            NotFoundError: No such session.
            ConflictError: It is already closed or has expired.
            ValidationError: An empty actor or reason.
        """
        data = {"status": "rejected", "reason": _check_reason("reason", reason)}
        return self._decide(id, _ANY, "rejected", actor, None, "decided", data)

    def respond(self, id: str, *, actor: str, response_data: Any) -> HITLRequest:
        """Answer an ``input`` session, or a ``review`` with edited data: ``completed``.

        Raises:
            NotFoundError: No such session.
            ConflictError: It is already closed or has expired.
            ValidationError: An empty actor, data that is not JSON, or an ``approval``
                session (use :meth:`approve` or :meth:`reject`).
        """
        data = {"status": "completed", "response_data": response_data}
        return self._decide(id, _RESPONDABLE, "completed", actor, response_data, "decided", data)

    def cancel(self, id: str, *, actor: str, reason: str | None = None) -> HITLRequest:
        """Withdraw a pending session (the workflow no longer needs the answer).

        Raises:
            NotFoundError: No such session.
            ConflictError: It is already closed or has expired.
            ValidationError: An empty actor or reason.
        """
        data = None if reason is None else {"reason": _check_reason("reason", reason)}
        return self._decide(id, _ANY, "cancelled", actor, None, "cancelled", data)

    def comment(self, id: str, *, actor: str, text: str) -> HITLActionRecord:
        """Add a remark to a session's audit trail (open or closed); returns the event.

        Raises:
            NotFoundError: No such session.
            ValidationError: An empty actor or text.
        """
        check_id("id", id)
        _check_actor(actor)
        body = _check_reason("text", text)
        now = utcnow()
        with self._store.unit(write=True) as driver:
            if not driver.execute(sql.select_raw, {"id": id}):
                raise _not_found(id)
            return self._audit(driver, id, "commented", actor, {"text": body}, now)

    def expire_due(self) -> int:
        """Store the expiry of every pending session past ``expires_at``; returns how many.

        Safe to run from several processes at once: each expiry is stored (and audited)
        by exactly one of them.
        """
        now = utcnow()
        with self._store.unit(write=True) as driver:
            expired = [row[0] for row in driver.execute(sql.expire_due, {"now": now})]
            for session_id in expired:
                self._audit(driver, session_id, "expired", SYSTEM_ACTOR, None, now)
                self._notify(driver, session_id)
        return len(expired)

    # --- reads ----------------------------------------------------------------------

    def get(self, id: str, *, viewed_by: str | None = None) -> HITLRequest:
        """One session as it stands now.

        Args:
            id: The session.
            viewed_by: Record a ``viewed`` event by this actor in the audit trail.

        Raises:
            NotFoundError: No such session.
            ValidationError: A bad id or actor.
        """
        check_id("id", id)
        if viewed_by is None:
            with self._store.unit(write=False) as driver:
                rows = driver.execute(sql.select_one, {"id": id, "now": utcnow()})
        else:
            _check_actor(viewed_by)
            now = utcnow()
            with self._store.unit(write=True) as driver:
                rows = driver.execute(sql.select_one, {"id": id, "now": now})
                if rows:
                    self._audit(driver, id, "viewed", viewed_by, None, now)
        if not rows:
            raise _not_found(id)
        return _request(rows[0])

    def pending(
        self, workflow_id: str | None = None, user_id: str | None = None, *, limit: int = 1000
    ) -> builtins.list[HITLRequest]:
        """Sessions waiting for a decision (never an expired one), oldest first.

        Args:
            workflow_id: Only this workflow's.
            user_id: Only those for this user.
            limit: At most this many.
        """
        values: dict[str, Any] = {"now": utcnow(), "limit": check_limit("limit", limit)}
        if workflow_id is not None:
            values["workflow_id"] = check_id("workflow_id", workflow_id)
        if user_id is not None:
            values["user_id"] = check_id("user_id", user_id)
        build = sql.pending_builder(workflow_id is not None, user_id is not None)
        with self._store.unit(write=False) as driver:
            return list(map(_request, driver.execute(build, values)))

    def list(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[HITLRequest]:
        """Sessions, newest first, a page at a time.

        Args:
            status: Only sessions with this status (as :meth:`get` reports it).
            since: Only sessions created at or after this time.
            workflow_id: Only this workflow's.
            user_id: Only those for this user.
            limit: Page size.
            offset: Sessions to skip (``limit * page``).

        Raises:
            ValidationError: An unknown status or a bad filter.
        """
        if status is not None and status not in HITL_STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(HITL_STATUSES)}, not {shown(status)}"
            )
        values: dict[str, Any] = {"now": utcnow(), "limit": check_limit("limit", limit)}
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError(f"offset must be a non-negative integer, not {shown(offset)}")
        values["offset"] = offset
        if since is not None:
            values["since"] = check_datetime("since", since)
        if workflow_id is not None:
            values["workflow_id"] = check_id("workflow_id", workflow_id)
        if user_id is not None:
            values["user_id"] = check_id("user_id", user_id)
        build = sql.list_builder(
            status, since is not None, workflow_id is not None, user_id is not None
        )
        with self._store.unit(write=False) as driver:
            return list(map(_request, driver.execute(build, values)))

    def actions(self, id: str) -> builtins.list[HITLActionRecord]:
        """A session's audit trail, oldest event first.

        Raises:
            NotFoundError: No such session.
        """
        check_id("id", id)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(sql.select_actions, {"id": id})
        if not rows:
            raise _not_found(id)
        return [HITLActionRecord(*row[1:]) for row in rows if row[1] is not None]

    def wait(
        self, id: str, timeout: float | None = None, *, poll_interval: float = 0.05
    ) -> HITLRequest:
        """Block until the session leaves ``pending``; return it.

        Woken by a decision made in any process: on PostgreSQL by ``LISTEN/NOTIFY`` (on
        a connection of its own, held only while waiting), on SQLite by polling with
        backoff up to ``poll_interval``. A session that expires while waited on is
        returned as ``expired`` (and the expiry stored). In ``AsyncArquivo`` the wait
        runs in a worker thread, so the event loop stays free.

        Args:
            id: The session.
            timeout: Seconds to wait at most; ``None`` waits for ever.
            poll_interval: The longest pause between reads when polling.

        Raises:
            NotFoundError: No such session.
            WaitTimeoutError: ``timeout`` passed first (a ``TimeoutError``).
        """
        check_id("id", id)
        limit = _check_timeout("timeout", timeout, allow_none=True)
        interval = _check_timeout("poll_interval", poll_interval, allow_none=False)
        assert interval is not None
        result = wait_for_decision(
            id,
            lambda: self.get(id),
            engine=self._store.engine,
            support=get_dialect(self._store.dialect),
            timeout=limit,
            poll_interval=max(interval, 0.001),
        )
        if result.status == "expired" and result.completed_at is None:
            return self._expire(id)
        return result

    # --- internals ------------------------------------------------------------------

    def _decide(
        self,
        session_id: str,
        kinds: tuple[str, ...],
        status: str,
        actor: str,
        response_data: Any,
        action_type: str,
        data: Any,
    ) -> HITLRequest:
        check_id("id", session_id)
        _check_actor(actor)
        check_json("response_data", response_data)
        now = utcnow()
        values = {
            "id": session_id,
            "status": status,
            "response_data": response_data,
            "actor": actor,
            "now": now,
        }
        with self._store.unit(write=True) as driver:
            if driver.rowcount(sql.transition(kinds), values) != 1:
                raise self._lost(driver, session_id, kinds, status, now)
            self._audit(driver, session_id, action_type, actor, data, now)
            self._notify(driver, session_id)
            rows = driver.execute(sql.select_one, {"id": session_id, "now": now})
        return _request(rows[0])

    def _expire(self, session_id: str) -> HITLRequest:
        now = utcnow()
        with self._store.unit(write=True) as driver:
            if driver.rowcount(sql.expire_one, {"id": session_id, "now": now}) == 1:
                self._audit(driver, session_id, "expired", SYSTEM_ACTOR, None, now)
                self._notify(driver, session_id)
            rows = driver.execute(sql.select_one, {"id": session_id, "now": now})
        if not rows:
            raise _not_found(session_id)
        return _request(rows[0])

    def _lost(
        self, driver: Driver, session_id: str, kinds: tuple[str, ...], status: str, now: datetime
    ) -> Exception:
        """Why a transition's compare-and-set matched no row, as the error to raise."""
        # Read in the same transaction: after a lost race on PostgreSQL this statement's
        # snapshot already holds the winner's commit, which the UPDATE waited for.
        rows = driver.execute(sql.select_raw, {"id": session_id})
        if not rows:
            return _not_found(session_id)
        stored, kind, decided_by, completed_at, expires_at = rows[0]
        if stored != "pending":
            return ConflictError(
                f"HITL session {session_id} is already {stored} "
                f"(set by {decided_by or 'an unknown actor'} {_when(completed_at)})",
                hint="a closed session never changes; read it with store.hitl.get()",
            )
        if expires_at is not None and expires_at <= now:
            return ConflictError(
                f"HITL session {session_id} expired {_when(expires_at)}",
                hint="an expired session takes no decision; ask again with a new request",
            )
        if kind not in kinds:
            verb = {"approved": "approved", "completed": "answered with data"}.get(status, status)
            return ValidationError(
                f"HITL session {session_id} is an {kind!r} session and cannot be {verb}",
                hint="approval/review: approve or reject; input/review: respond",
            )
        return ConflictError(f"HITL session {session_id} changed while being decided")

    def _audit(
        self,
        driver: Driver,
        session_id: str,
        action_type: str,
        actor: str | None,
        data: Any,
        now: datetime,
    ) -> HITLActionRecord:
        action_id = _action_id()
        driver.rowcount(
            sql.insert_action,
            {
                "action_id": action_id,
                "id": session_id,
                "action_type": action_type,
                "actor": actor,
                "data": data,
                "now": now,
            },
        )
        return HITLActionRecord(action_id, session_id, action_type, actor, data, now)

    def _notify(self, driver: Driver, session_id: str) -> None:
        get_dialect(self._store.dialect).notify(driver.connection, CHANNEL, session_id)
