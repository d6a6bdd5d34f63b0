"""``store.conversations``: every message of every session, per user, in order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.expression import ClauseElement

from arquivo.db.dialects import DialectSupport
from arquivo.db.fastpath import Builder, Driver
from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import ValidationError
from arquivo.models import ROLES, ConversationHistory
from arquivo.validation import (
    MAX_CONTENT_CHARS,
    check_id,
    check_json,
    check_limit,
    check_text,
    shown,
)
from arquivo.values import Message, SessionInfo, from_rows

__all__ = ["Conversations"]

_T = cast(sa.Table, ConversationHistory.__table__)
_COLUMNS = (
    _T.c.id,
    _T.c.user_id,
    _T.c.session_id,
    _T.c.role,
    _T.c.content,
    _T.c.model,
    _T.c.workspace_path,
    _T.c.extra_data,
    _T.c.created_at,
)
_FIELDS = ("role", "content", "model", "workspace_path", "extra_data")
# Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters.
_BATCH = 250
_ROLE_SET = frozenset(ROLES)
_FIELD_SET = frozenset(_FIELDS)
# The parameter names of each row of a multi-row INSERT, in _FIELDS order, made once.
_ROW_NAMES = [tuple(f"{field}_{i}" for field in _FIELDS) for i in range(_BATCH)]
# "No bound" values for the paging parameters, so one prepared statement serves all calls.
_NO_LIMIT = 1_000_000
_NO_CURSOR = 2**63 - 1


def _insert_values(n: int, present: tuple[str, ...]) -> dict[str, Any]:
    # Parameter names carry the row number so one statement can insert n rows.
    # Optional columns are named only when set: binding NULLs costs the write path a
    # measurable share, and most messages have none of them.
    fields = [f for f in _FIELDS if f not in _OPTIONAL or f in present]
    return {
        "user_id": sa.bindparam("user_id"),
        "session_id": sa.bindparam("session_id"),
        "created_at": sa.bindparam("now", type_=_T.c.created_at.type),
        **{f: sa.bindparam(f"{f}_{n}", type_=_T.c[f].type) for f in fields},
    }


_OPTIONAL = ("model", "workspace_path", "extra_data")
_OPTIONAL_POSITIONS = [(_FIELDS.index(field), field) for field in _OPTIONAL]


def _insert_one(present: tuple[str, ...]) -> Builder:
    def build(support: DialectSupport) -> ClauseElement:
        statement = sa.insert(_T).values(**_insert_values(0, present))
        return support.returning_id(statement, _T.c.id)

    return build


# One builder per combination of optional columns set (there are eight).
_INSERT_ONE = {
    present: _insert_one(present)
    for present in (
        tuple(f for f, keep in zip(_OPTIONAL, mask, strict=True) if keep)
        for mask in itertools.product((False, True), repeat=len(_OPTIONAL))
    )
}


def _insert_rows(count: int, present: tuple[str, ...], returning: bool) -> Builder:
    def build(_: DialectSupport) -> ClauseElement:
        statement = sa.insert(_T).values([_insert_values(i, present) for i in range(count)])
        return statement.returning(_T.c.id) if returning else statement

    return build


def _max_id(_: DialectSupport) -> ClauseElement:
    return sa.select(sa.func.max(_T.c.id))


# Past this, SQLite stops handing out sequential rowids (it picks free ones at random).
_ROWID_CEILING = 2**63 - 1 - _BATCH


def _session_filter() -> sa.ColumnElement[bool]:
    return sa.and_(
        _T.c.user_id == sa.bindparam("user_id"), _T.c.session_id == sa.bindparam("session_id")
    )


def _history_all(_: DialectSupport) -> ClauseElement:
    return sa.select(*_COLUMNS).where(_session_filter()).order_by(_T.c.id)


def _history_last(_: DialectSupport) -> ClauseElement:
    # Newest first from the end of the (user, session, id) index, then reversed: the
    # cost is the page size, whatever the length of the conversation.
    return (
        sa.select(*_COLUMNS)
        .where(_session_filter(), _T.c.id < sa.bindparam("before"))
        .order_by(_T.c.id.desc())
        .limit(sa.bindparam("limit"))
    )


def _sessions(_: DialectSupport) -> ClauseElement:
    last = sa.func.max(_T.c.created_at)
    return (
        sa.select(
            _T.c.session_id,
            sa.func.count().label("messages"),
            sa.type_coerce(sa.func.min(_T.c.created_at), _T.c.created_at.type),
            sa.type_coerce(last, _T.c.created_at.type),
        )
        .where(_T.c.user_id == sa.bindparam("user_id"))
        .group_by(_T.c.session_id)
        .order_by(last.desc(), _T.c.session_id)
        .limit(sa.bindparam("limit"))
        .offset(sa.bindparam("offset"))
    )


def _delete_session(_: DialectSupport) -> ClauseElement:
    return sa.delete(_T).where(_session_filter())


def _search(_: DialectSupport) -> ClauseElement:
    return (
        sa.select(*_COLUMNS)
        .where(
            _T.c.user_id == sa.bindparam("user_id"),
            _T.c.content.ilike(sa.bindparam("pattern"), escape="/"),
        )
        .order_by(_T.c.id.desc())
        .limit(sa.bindparam("limit"))
    )


def _search_session(_: DialectSupport) -> ClauseElement:
    return (
        sa.select(*_COLUMNS)
        .where(
            _session_filter(),
            _T.c.content.ilike(sa.bindparam("pattern"), escape="/"),
        )
        .order_by(_T.c.id.desc())
        .limit(sa.bindparam("limit"))
    )


_message = from_rows(Message)


def _check_message(index: int | None, role: object, content: object, extra: object) -> None:
    # Field names are only formatted on the way to an error: this runs per message.
    if role not in _ROLE_SET:
        raise ValidationError(
            f"{_where(index)}role must be one of {', '.join(ROLES)}, not {shown(role)}",
            hint="map other roles (function, developer...) to 'tool' or 'system'",
        )
    if type(content) is not str or len(content) > MAX_CONTENT_CHARS or "\x00" in content:
        check_text(f"{_where(index)}content", content)
    if extra is not None:
        check_json(f"{_where(index)}extra_data", extra)


def _where(index: int | None) -> str:
    return "" if index is None else f"messages[{index}]."


def _row(index: int, message: Mapping[str, Any]) -> tuple[Any, ...]:
    """One message of ``append_many``, validated, as a tuple in ``_FIELDS`` order."""
    if type(message) is not dict and not isinstance(message, Mapping):
        raise ValidationError(
            f"messages[{index}] must be a mapping with role and content, "
            f"not {type(message).__name__}"
        )
    if not message.keys() <= _FIELD_SET:
        unknown = sorted(set(message) - _FIELD_SET)
        raise ValidationError(
            f"messages[{index}] has unknown fields: {unknown}",
            hint=f"a message may have {', '.join(_FIELDS)}",
        )
    get = message.get
    row = (get("role"), get("content"), get("model"), get("workspace_path"), get("extra_data"))
    _check_message(index, row[0], row[1], row[4])
    if row[2] is not None:
        check_id(f"messages[{index}].model", row[2])
    if row[3] is not None:
        check_text(f"messages[{index}].workspace_path", row[3], max_chars=4096)
    return row


class Conversations(Facade):
    """Conversation history: users, their sessions, and the messages in each.

    A user only ever sees their own sessions: every read is keyed by ``user_id``.
    """

    __slots__ = ()

    def append(
        self,
        user_id: str,
        session_id: str,
        role: str,
        content: str,
        *,
        model: str | None = None,
        workspace_path: str | None = None,
        extra_data: Any = None,
    ) -> Message:
        """Store one message at the end of a session and return it.

        Raises:
            ValidationError: A bad id, an unknown role, content that is not text, has NUL
                bytes or is over the size limit, or extra data that is not JSON.
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        _check_message(None, role, content, extra_data)
        if model is not None:
            check_id("model", model)
        if workspace_path is not None:
            check_text("workspace_path", workspace_path, max_chars=4096)
        now = utcnow()
        values = {
            "user_id": user_id,
            "session_id": session_id,
            "now": now,
            "role_0": role,
            "content_0": content,
            "model_0": model,
            "workspace_path_0": workspace_path,
            "extra_data_0": extra_data,
        }
        optional = (model, workspace_path, extra_data)
        present = tuple(f for f, v in zip(_OPTIONAL, optional, strict=True) if v is not None)
        with self._store.unit(write=True, single=True) as driver:
            message_id = driver.insert(_INSERT_ONE[present], values)
        return Message(
            message_id, user_id, session_id, role, content, model, workspace_path, extra_data, now
        )

    def append_many(
        self, user_id: str, session_id: str, messages: Iterable[Mapping[str, Any]]
    ) -> list[Message]:
        """Store several messages of one session in one transaction (all or none).

        Args:
            user_id: The user.
            session_id: The session.
            messages: Mappings with ``role`` and ``content``, and optionally ``model``,
                ``workspace_path`` and ``extra_data``.
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        rows = [_row(i, m) for i, m in enumerate(messages)]
        if not rows:
            return []
        now = utcnow()
        ids: list[int] = []
        with self._store.unit(write=True) as driver:
            for start in range(0, len(rows), _BATCH):
                batch = rows[start : start + _BATCH]
                ids.extend(_insert_batch(driver, user_id, session_id, now, batch))
        return [
            Message(i, user_id, session_id, r[0], r[1], r[2], r[3], r[4], now)
            for i, r in zip(ids, rows, strict=True)
        ]

    def history(
        self,
        user_id: str,
        session_id: str,
        *,
        limit: int | None = None,
        before: int | None = None,
    ) -> list[Message]:
        """A session's messages in the order they were appended (oldest first).

        Args:
            user_id: The user.
            session_id: The session.
            limit: Only the last ``limit`` messages (the cost does not grow with the
                conversation's length).
            before: A message id: only messages older than it (page backwards by passing
                the first id of the previous page).
        """
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        values: dict[str, Any] = {"user_id": user_id, "session_id": session_id}
        if limit is None and before is None:
            with self._store.unit(write=False) as driver:
                return [_message(r) for r in driver.execute(_history_all, values)]
        values["limit"] = (
            _NO_LIMIT if limit is None else check_limit("limit", limit, maximum=_NO_LIMIT)
        )
        if before is None:
            values["before"] = _NO_CURSOR
        elif isinstance(before, bool) or not isinstance(before, int):
            raise ValidationError(f"before must be a message id (int), not {shown(before)}")
        else:
            values["before"] = before
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_history_last, values)
        return [_message(r) for r in reversed(rows)]

    def sessions(self, user_id: str, *, limit: int = 50, offset: int = 0) -> list[SessionInfo]:
        """A user's sessions with message counts, most recently active first."""
        check_id("user_id", user_id)
        check_limit("limit", limit)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError(f"offset must be a non-negative integer, not {shown(offset)}")
        values = {"user_id": user_id, "limit": limit, "offset": offset}
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_sessions, values)
        return [SessionInfo(*row) for row in rows]

    def delete_session(self, user_id: str, session_id: str) -> int:
        """Delete every message of one session; returns how many there were."""
        check_id("user_id", user_id)
        check_id("session_id", session_id)
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete_session, {"user_id": user_id, "session_id": session_id})

    def search(
        self, user_id: str, text: str, *, session_id: str | None = None, limit: int = 50
    ) -> list[Message]:
        """A user's messages containing ``text`` (case-insensitive), newest first."""
        check_id("user_id", user_id)
        check_text("text", text, max_chars=1000)
        if not text:
            raise ValidationError("text must not be empty", hint="give something to look for")
        check_limit("limit", limit)
        # Escape LIKE's wildcards so the text is matched literally.
        literal = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
        values: dict[str, Any] = {"user_id": user_id, "pattern": f"%{literal}%", "limit": limit}
        build = _search
        if session_id is not None:
            values["session_id"] = check_id("session_id", session_id)
            build = _search_session
        with self._store.unit(write=False) as driver:
            return [_message(r) for r in driver.execute(build, values)]


def _insert_batch(
    driver: Driver,
    user_id: str,
    session_id: str,
    now: datetime,
    rows: list[tuple[Any, ...]],
) -> list[int]:
    values: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "now": now}
    for names, row in zip(_ROW_NAMES, rows, strict=False):
        values.update(zip(names, row, strict=True))
    present = tuple(
        field
        for position, field in _OPTIONAL_POSITIONS
        if any(row[position] is not None for row in rows)
    )
    count = len(rows)
    if driver.support.sequential_rowids:
        # The ids are known without RETURNING, which costs a third of the insert.
        ((highest,),) = driver.execute(_max_id, {})
        first = (highest or 0) + 1
        if first < _ROWID_CEILING:
            build = _insert_rows(count, present, returning=False)
            driver.execute(build, values, key=("insert_rows", count, present, False))
            return list(range(first, first + count))
        # At the ceiling ids are random, so neither their order nor RETURNING's row
        # order says which row got which: insert one at a time and ask each its id.
        insert_one = _INSERT_ONE[present]
        shared = {"user_id": user_id, "session_id": session_id, "now": now}
        return [
            driver.insert(insert_one, {**shared, **dict(zip(_ROW_NAMES[0], row, strict=True))})
            for row in rows
        ]
    # A sequence hands out ids in VALUES order; RETURNING's own order is not promised.
    build = _insert_rows(count, present, returning=True)
    result = driver.execute(build, values, key=("insert_rows", count, present, True))
    return sorted(row[0] for row in result)
