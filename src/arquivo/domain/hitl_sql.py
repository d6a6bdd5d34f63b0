"""The statements of ``store.hitl`` (see :mod:`arquivo.domain.hitl`), built once per dialect.

Expiry is *read-side*: a pending session whose ``expires_at`` has passed reads as
``expired`` (the ``CASE`` in :func:`view`) and takes no decision (every transition's
``WHERE`` excludes it), whether or not ``expire_due()`` has stored that yet.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.expression import ClauseElement, ColumnElement

from arquivo.db.dialects import DialectSupport
from arquivo.db.fastpath import Builder
from arquivo.models import HITLAction, HITLSession

__all__ = [
    "ACTION",
    "RAW",
    "expire_due",
    "expire_one",
    "insert_action",
    "insert_session",
    "list_builder",
    "pending_builder",
    "select_actions",
    "select_one",
    "select_raw",
    "transition",
    "view",
]

S = cast(sa.Table, HITLSession.__table__)
H = cast(sa.Table, HITLAction.__table__)


def _bind(table: sa.Table, column: str, name: str | None = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name or column, type_=table.c[column].type)


def _now() -> sa.BindParameter[Any]:
    return _bind(S, "expires_at", "now")


def _literal(value: str) -> ColumnElement[Any]:
    # Our own constants, inlined so the statement compiles to plain SQL for the fast path
    # (an IN list of binds would compile to a placeholder expanded only by SQLAlchemy).
    return sa.literal_column(f"'{value}'")


def _overdue() -> ColumnElement[bool]:
    return sa.and_(S.c.status == _literal("pending"), S.c.expires_at <= _now())


def _open() -> ColumnElement[bool]:
    return sa.and_(
        S.c.status == _literal("pending"), sa.or_(S.c.expires_at.is_(None), S.c.expires_at > _now())
    )


def view(support: DialectSupport) -> tuple[ColumnElement[Any], ...]:
    """The session as callers see it, in HITLRequest's field order (needs ``now``)."""
    return (
        S.c.id,
        S.c.workflow_id,
        S.c.step_id,
        S.c.user_id,
        S.c.kind,
        sa.case((_overdue(), _literal("expired")), else_=S.c.status).label("status"),
        support.json_listing(S.c.request_data),
        support.json_listing(S.c.response_data),
        S.c.decided_by,
        S.c.created_at,
        S.c.updated_at,
        S.c.expires_at,
        S.c.completed_at,
    )


#: The stored row, for explaining a lost compare-and-set.
RAW = (S.c.status, S.c.kind, S.c.decided_by, S.c.completed_at, S.c.expires_at)
#: In HITLActionRecord's field order.
ACTION = (H.c.id, H.c.session_id, H.c.action_type, H.c.actor, H.c.data, H.c.created_at)


def insert_session(_: DialectSupport) -> ClauseElement:
    """A new pending session."""
    return sa.insert(S).values(
        id=sa.bindparam("id"),
        workflow_id=sa.bindparam("workflow_id"),
        step_id=sa.bindparam("step_id"),
        user_id=sa.bindparam("user_id"),
        kind=sa.bindparam("kind"),
        status=_literal("pending"),
        request_data=_bind(S, "request_data"),
        created_at=_now(),
        updated_at=_now(),
        expires_at=_bind(S, "expires_at"),
    )


def insert_action(_: DialectSupport) -> ClauseElement:
    """One audit event (the table is append-only: nothing updates or deletes it)."""
    return sa.insert(H).values(
        id=sa.bindparam("action_id"),
        session_id=sa.bindparam("id"),
        action_type=sa.bindparam("action_type"),
        actor=sa.bindparam("actor"),
        data=_bind(H, "data"),
        created_at=_now(),
    )


def select_one(support: DialectSupport) -> ClauseElement:
    """One session as callers see it."""
    return sa.select(*view(support)).where(S.c.id == sa.bindparam("id"))


def select_raw(_: DialectSupport) -> ClauseElement:
    """One session as stored."""
    return sa.select(*RAW).where(S.c.id == sa.bindparam("id"))


def select_actions(_: DialectSupport) -> ClauseElement:
    """A session's id (so a missing session is told apart) joined to its actions."""
    joined = S.outerjoin(H, H.c.session_id == S.c.id)
    return (
        sa.select(S.c.id, *ACTION)
        .select_from(joined)
        .where(S.c.id == sa.bindparam("id"))
        .order_by(H.c.created_at, H.c.id)
    )


@functools.cache
def transition(kinds: tuple[str, ...]) -> Builder:
    """The compare-and-set closing a pending, unexpired session of one of ``kinds``."""

    def build(_: DialectSupport) -> ClauseElement:
        return (
            sa.update(S)
            .where(
                S.c.id == sa.bindparam("id"),
                _open(),
                sa.or_(*(S.c.kind == _literal(kind) for kind in kinds)),
            )
            .values(
                status=sa.bindparam("status"),
                response_data=_bind(S, "response_data"),
                decided_by=sa.bindparam("actor"),
                completed_at=_now(),
                updated_at=_now(),
            )
        )

    return build


def _mark_expired(statement: sa.Update) -> sa.Update:
    return statement.values(
        status=_literal("expired"),
        decided_by=_literal("system"),
        completed_at=_now(),
        updated_at=_now(),
    )


def expire_one(_: DialectSupport) -> ClauseElement:
    """Store the expiry of one overdue session (a no-op if someone else did)."""
    return _mark_expired(sa.update(S).where(S.c.id == sa.bindparam("id"), _overdue()))


def expire_due(_: DialectSupport) -> ClauseElement:
    """Store the expiry of every overdue session, returning their ids.

    On PostgreSQL a second sweeper blocks on each row the first one updates, then
    re-checks ``status = 'pending'`` against the committed row and skips it; SQLite
    runs one writer at a time. Either way each expiry is stored once.
    """
    return _mark_expired(sa.update(S).where(_overdue())).returning(S.c.id)


def _filters(workflow: bool, user: bool) -> list[ColumnElement[bool]]:
    where = []
    if workflow:
        where.append(S.c.workflow_id == sa.bindparam("workflow_id"))
    if user:
        where.append(S.c.user_id == sa.bindparam("user_id"))
    return where


@functools.cache
def pending_builder(workflow: bool, user: bool) -> Builder:
    """Open sessions, oldest first; served by the ``(status, created_at)`` index."""

    def build(support: DialectSupport) -> ClauseElement:
        return (
            sa.select(*view(support))
            .where(_open(), *_filters(workflow, user))
            # Exactly the index's order: no sort step (an id tie-break would add one).
            .order_by(S.c.created_at)
            .limit(sa.bindparam("limit"))
        )

    return build


@functools.cache
def list_builder(status: str | None, since: bool, workflow: bool, user: bool) -> Builder:
    """Sessions newest first, filtered; ``status`` is one of the statuses callers see."""

    def build(support: DialectSupport) -> ClauseElement:
        where = _filters(workflow, user)
        if status == "pending":
            where.append(_open())
        elif status == "expired":
            where.append(sa.or_(S.c.status == _literal("expired"), _overdue()))
        elif status is not None:
            where.append(S.c.status == _literal(status))
        if since:
            where.append(S.c.created_at >= _bind(S, "created_at", "since"))
        return (
            sa.select(*view(support))
            .where(*where)
            .order_by(S.c.created_at.desc(), S.c.id.desc())
            .limit(sa.bindparam("limit"))
            .offset(sa.bindparam("offset"))
        )

    return build
