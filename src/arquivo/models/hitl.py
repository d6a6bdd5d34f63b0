"""``hitl_sessions`` and ``hitl_actions``: requests waiting for a person, and their audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from arquivo.db.types import JSONType, UTCDateTime
from arquivo.models.base import Base, CreatedAtMixin, TimestampMixin, one_of

__all__ = ["HITL_KINDS", "HITL_STATUSES", "HITLAction", "HITLSession"]

#: Every status a HITL session can have; only ``pending`` is open.
HITL_STATUSES = ("pending", "approved", "rejected", "completed", "cancelled", "expired")
#: What a session asks of a person: a yes/no, a value, or a review of proposed data.
HITL_KINDS = ("approval", "input", "review")


def _new_id() -> str:
    return str(uuid.uuid4())


class HITLSession(TimestampMixin, Base):
    """A workflow step waiting for (or holding) a person's decision."""

    __tablename__ = "hitl_sessions"
    __table_args__ = (
        CheckConstraint(one_of("status", HITL_STATUSES), name="status"),
        Index(None, "status", "created_at"),
        Index(None, "workflow_id", "step_id"),
        # expire_due() finds the pending sessions past their deadline through it.
        Index(None, "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=_new_id)
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    step_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    request_data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    response_data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_id: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="approval", server_default="approval")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(255))

    actions: Mapped[list[HITLAction]] = relationship(
        back_populates="session",
        order_by="HITLAction.created_at",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"HITLSession(id={self.id!r}, status={self.status!r})"


class HITLAction(CreatedAtMixin, Base):
    """One event in a HITL session's append-only audit trail."""

    __tablename__ = "hitl_actions"
    __table_args__ = (Index(None, "session_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=_new_id)
    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("hitl_sessions.id", ondelete="CASCADE")
    )
    action_type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)

    session: Mapped[HITLSession] = relationship(back_populates="actions")

    def __repr__(self) -> str:
        return f"HITLAction(session_id={self.session_id!r}, action_type={self.action_type!r})"
