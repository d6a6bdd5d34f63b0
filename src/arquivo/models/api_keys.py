"""``api_keys``: who may use the HTTP service, stored as hashes of their tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import UTCDateTime
from arquivo.models.base import Base, CreatedAtMixin

__all__ = ["ApiKey"]


class ApiKey(CreatedAtMixin, Base):
    """One API key: its public id, owner, role and the SHA-256 of its secret token.

    The token itself is shown once, when the key is created, and never stored: a
    leaked database does not leak working keys.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())
    token_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, user_id={self.user_id!r}, is_admin={self.is_admin!r})"
