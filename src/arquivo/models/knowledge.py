"""``knowledge_collections`` and ``knowledge_chunks``: the native vector store for RAG.

A chunk's text, metadata, owner and embedding are one row, so they commit, roll back,
back up and are forgotten together. ``version`` and ``epoch`` on a collection change with
every write to its chunks (SQLite triggers keep them, whoever writes); the SQLite index
caches a collection's matrix in memory and reloads what changed when they move.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from arquivo.db.types import BigIntPK, JSONType, Vector
from arquivo.models.base import Base, CreatedAtMixin, TimestampMixin, one_of

__all__ = ["METRICS", "KnowledgeChunk", "KnowledgeCollection"]

#: Distance functions a collection can rank by.
METRICS = ("cosine", "l2", "ip")


class KnowledgeCollection(CreatedAtMixin, Base):
    """A named set of chunks embedded by one model, of one width, ranked by one metric."""

    __tablename__ = "knowledge_collections"
    __table_args__ = (CheckConstraint(one_of("metric", METRICS), name="metric"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # NULL until the first embeddings fix it (when no dimension was given up front).
    dimensions: Mapped[int | None] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16), default="cosine", server_default="cosine")
    embedder: Mapped[str | None] = mapped_column(String(255))
    # Bumped on every chunk change; epoch only when existing chunks change or go.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class KnowledgeChunk(TimestampMixin, Base):
    """One embedded piece of text; ``document_id`` names the document it was cut from."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        Index(None, "collection_id", "key", unique=True),
        Index(None, "collection_id", "document_id"),
        Index(None, "user_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("knowledge_collections.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    document_id: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    # "metadata" is taken by the declarative base.
    meta: Mapped[Any] = mapped_column("metadata", JSONType, nullable=True)
    embedding: Mapped[Any] = mapped_column(Vector())

    def __repr__(self) -> str:
        return f"KnowledgeChunk(collection_id={self.collection_id!r}, key={self.key!r})"
