"""``agents``: the registry of agent definitions, keyed by name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import JSONType
from arquivo.models.base import Base, TimestampMixin

__all__ = ["Agent"]


class Agent(TimestampMixin, Base):
    """An agent's definition: model, instructions, tools and memory."""

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(255))
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any] | None] = mapped_column(JSONType)
    memory: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model!r})"
