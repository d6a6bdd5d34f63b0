"""Portable column types: one definition, the best native type on each database."""

from __future__ import annotations

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


# JSONB on PostgreSQL (indexable, compact, compares by value); JSON text elsewhere.
# Python None is SQL NULL (not the JSON text 'null'), whichever way a row is written.
JSONType: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)

# SQLite only aliases the rowid (and so auto-increments) for exactly INTEGER PRIMARY KEY.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
