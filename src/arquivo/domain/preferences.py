"""``store.preferences``: per user, a key holding any JSON value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.expression import ClauseElement

from arquivo.db.dialects import DialectSupport
from arquivo.db.fastpath import Driver
from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import ValidationError
from arquivo.models import UserPreference
from arquivo.validation import check_id, check_json

__all__ = ["Preferences"]

_T = cast(sa.Table, UserPreference.__table__)


def _upsert(support: DialectSupport) -> ClauseElement:
    return support.upsert(
        _T,
        {
            "user_id": sa.bindparam("user_id"),
            "key": sa.bindparam("key"),
            "value": sa.bindparam("value", type_=_T.c.value.type),
            "created_at": sa.bindparam("now", type_=_T.c.created_at.type),
            "updated_at": sa.bindparam("now", type_=_T.c.updated_at.type),
        },
        conflict=("user_id", "key"),
        update=("value", "updated_at"),
    )


def _select_one(_: DialectSupport) -> ClauseElement:
    return sa.select(_T.c.value).where(
        _T.c.user_id == sa.bindparam("user_id"), _T.c.key == sa.bindparam("key")
    )


def _select_all(_: DialectSupport) -> ClauseElement:
    return (
        sa.select(_T.c.key, _T.c.value)
        .where(_T.c.user_id == sa.bindparam("user_id"))
        .order_by(_T.c.key)
    )


def _delete(_: DialectSupport) -> ClauseElement:
    return sa.delete(_T).where(
        _T.c.user_id == sa.bindparam("user_id"), _T.c.key == sa.bindparam("key")
    )


def _delete_all(_: DialectSupport) -> ClauseElement:
    return sa.delete(_T).where(_T.c.user_id == sa.bindparam("user_id"))


def upsert(driver: Driver, user_id: str, key: str, value: Any) -> None:
    """Insert or replace one preference (no commit)."""
    driver.execute(_upsert, {"user_id": user_id, "key": key, "value": value, "now": utcnow()})


class Preferences(Facade):
    """Per-user preferences: a key holding any JSON value, upserted, never duplicated.

    Values round-trip exactly: a ``str`` comes back a ``str``, a ``dict`` a ``dict``.
    """

    __slots__ = ()

    def set(self, user_id: str, key: str, value: Any) -> None:
        """Store ``value`` (any JSON value) under ``key`` for ``user_id``, replacing any.

        Raises:
            ValidationError: A blank or overlong id or key, or a value that is not JSON.
        """
        check_id("user_id", user_id)
        check_id("key", key)
        check_json("value", value)
        with self._store.unit(write=True, single=True) as driver:
            upsert(driver, user_id, key, value)

    def set_many(self, user_id: str, values: Mapping[str, Any]) -> None:
        """Store several preferences of one user in one transaction (all or none)."""
        check_id("user_id", user_id)
        if not isinstance(values, Mapping):
            raise ValidationError(f"values must be a mapping, not {type(values).__name__}")
        for key, value in values.items():
            check_id("key", key)
            check_json(f"values[{key!r}]", value)
        with self._store.unit(write=True) as driver:
            for key, value in values.items():
                upsert(driver, user_id, key, value)

    def get(self, user_id: str, key: str, default: Any = None) -> Any:
        """The value under ``key`` for ``user_id``, or ``default`` when there is none."""
        check_id("user_id", user_id)
        check_id("key", key)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_select_one, {"user_id": user_id, "key": key})
        return rows[0][0] if rows else default

    def all(self, user_id: str) -> dict[str, Any]:
        """Every preference of ``user_id``, by key."""
        check_id("user_id", user_id)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_select_all, {"user_id": user_id})
        return {key: value for key, value in rows}

    def delete(self, user_id: str, key: str) -> bool:
        """Remove one preference; ``True`` if it existed."""
        check_id("user_id", user_id)
        check_id("key", key)
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete, {"user_id": user_id, "key": key}) > 0

    def clear(self, user_id: str) -> int:
        """Remove every preference of ``user_id``; returns how many there were."""
        check_id("user_id", user_id)
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete_all, {"user_id": user_id})
