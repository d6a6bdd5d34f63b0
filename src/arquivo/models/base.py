"""The declarative base shared by every Arquivo table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from arquivo.db.types import UTCDateTime, utcnow

__all__ = ["NAMING_CONVENTION", "Base", "CreatedAtMixin", "TimestampMixin", "one_of"]

# Deterministic constraint names, so migrations can drop or alter them on every
# database (SQLite batch mode cannot touch an unnamed constraint).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression allowing only ``values`` in ``column``.

    Written as ``col = 'a' OR col = 'b'`` rather than ``col IN (...)``: SQLite evaluates
    a CHECK on every insert, and its IN list costs twice as much (measured on the
    conversation append path).
    """
    return " OR ".join(f"{column} = '{value}'" for value in values)


class Base(DeclarativeBase):
    """Declarative base of the Arquivo schema (its ``metadata`` is what migrations track)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CreatedAtMixin:
    """A ``created_at`` column set by Python, with a server default for raw SQL inserts."""

    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.current_timestamp(), nullable=False
    )


class TimestampMixin(CreatedAtMixin):
    """``created_at`` plus an ``updated_at`` that every ORM update refreshes."""

    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        default=utcnow,
        onupdate=utcnow,
        server_default=func.current_timestamp(),
        nullable=False,
    )
