"""``user_preferences``: per user, a key holding any JSON value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import JSONType
from arquivo.models.base import Base, TimestampMixin

__all__ = ["UserPreference"]


class UserPreference(TimestampMixin, Base):
    """One preference of one user.

    The seed declared ``user_id`` unique on its own, which allows a single preference
    per user; the key of the table is ``(user_id, key)``, whose unique index also serves
    every lookup by user.
    """

    __tablename__ = "user_preferences"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)

    def __repr__(self) -> str:
        return f"UserPreference(user_id={self.user_id!r}, key={self.key!r}, value={self.value!r})"
