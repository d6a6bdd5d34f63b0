"""``agents`` and ``agent_versions``: agent definitions, keyed by name, and their history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from arquivo.db.types import JSONType
from arquivo.models.base import Base, CreatedAtMixin, TimestampMixin

__all__ = ["Agent", "AgentDefinition"]


class Agent(TimestampMixin, Base):
    """An agent's current definition (model, instructions, tools) and its memory.

    ``version`` is the number of the current definition in ``agent_versions``; it is
    kept here so reading an agent is one row. ``store.agents`` maintains both tables;
    rows written through the ORM or raw SQL are not versioned until the next
    ``store.agents.upsert`` records them.
    """

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(255))
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any] | None] = mapped_column(JSONType)
    memory: Mapped[Any] = mapped_column(JSONType, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    versions: Mapped[list[AgentDefinition]] = relationship(
        back_populates="agent",
        order_by="AgentDefinition.version",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model!r}, version={self.version!r})"


class AgentDefinition(CreatedAtMixin, Base):
    """One numbered version of an agent's definition; rows are never updated.

    Named for what a row holds rather than ``AgentVersion``, which is the plain value
    ``store.agents.versions()`` returns.
    """

    __tablename__ = "agent_versions"

    # The key (name, version) makes version numbers unique per agent, and its leading
    # column serves the foreign key's cascade and every "history of X" read.
    name: Mapped[str] = mapped_column(
        String(255), ForeignKey("agents.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(255))
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any] | None] = mapped_column(JSONType)

    agent: Mapped[Agent] = relationship(back_populates="versions")

    def __repr__(self) -> str:
        return f"AgentDefinition(name={self.name!r}, version={self.version!r})"
