"""``conversation_history``: every message of every session, in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import BigIntPK, JSONType
from arquivo.models.base import Base, CreatedAtMixin, one_of

__all__ = ["ROLES", "ConversationHistory"]

#: The roles a message may have (the chat-completions vocabulary).
ROLES = ("system", "user", "assistant", "tool")


class ConversationHistory(CreatedAtMixin, Base):
    """One message in a user's conversation session."""

    __tablename__ = "conversation_history"
    __table_args__ = (
        CheckConstraint(one_of("role", ROLES), name="role"),
        # The one index: a session's history in append order ("the last N" are read
        # from its end), a user's sessions, and any lookup by user. Each extra index
        # would tax every append, the hottest write there is.
        Index(None, "user_id", "session_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255))
    session_id: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(255))
    workspace_path: Mapped[str | None] = mapped_column(Text)
    extra_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def __repr__(self) -> str:
        return (
            f"ConversationHistory(id={self.id!r}, session_id={self.session_id!r}, "
            f"role={self.role!r})"
        )
