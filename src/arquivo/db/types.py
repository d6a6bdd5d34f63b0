"""Portable column types: one definition, the best native type on each database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["BigIntPK", "JSONType", "UTCDateTime", "utcnow"]


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone-aware type and PostgreSQL's ``timestamptz`` returns the
    session's zone; normalising both to UTC keeps ordering and comparisons right.
    Naive values are taken to be UTC already (as ``datetime.utcnow()`` and SQLite's
    ``CURRENT_TIMESTAMP`` produce).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite stores text; one C-level isoformat gives SQLAlchemy's own layout
        # ("YYYY-MM-DD HH:MM:SS.ffffff") at a fraction of the cost of its formatter.
        def process(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, datetime):
                raise TypeError(f"expected a datetime, got {type(value).__name__}")
            if value.tzinfo is not UTC and value.tzinfo is not None:
                value = value.astimezone(UTC)
            # [:26] drops the "+00:00" of an aware value: the column holds UTC by contract.
            text: str = value.isoformat(" ", "microseconds")
            return text[:26]

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            # Also reads SQLite's CURRENT_TIMESTAMP ("YYYY-MM-DD HH:MM:SS") from raw inserts.
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite stores text; drop the offset so every row has the same sortable shape.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _SQLiteJSON(JSON):
    """JSON text on SQLite, decoded in one call per value.

    SQLAlchemy's own SQLite JSON decoder wraps ``json.loads`` in two more layers; on a
    listing of a thousand rows that is a measurable share of the call.
    """

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        loads = json.loads

        def process(value: Any) -> Any:
            # Raw SQL may have stored a bare number, which SQLite hands back as one.
            return loads(value) if isinstance(value, (str, bytes)) else value

        return process


# JSONB on PostgreSQL (indexable, compact, compares by value); JSON text on SQLite.
# Python None is SQL NULL (not the JSON text 'null'), whichever way a row is written.
JSONType: TypeEngine[Any] = (
    JSON(none_as_null=True)
    .with_variant(_SQLiteJSON(none_as_null=True), "sqlite")
    .with_variant(JSONB(none_as_null=True), "postgresql")
)

# SQLite only aliases the rowid (and so auto-increments) for exactly INTEGER PRIMARY KEY.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
