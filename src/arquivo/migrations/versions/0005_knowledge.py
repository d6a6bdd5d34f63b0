"""knowledge: collections and embedded chunks for RAG, in the same database

Adds ``knowledge_collections`` and ``knowledge_chunks`` (text, metadata, owner, source
document and embedding in one row). On PostgreSQL the embedding is pgvector's ``vector``
(the extension is created if the server has it and this role may). Where it cannot be,
the embedding is a plain ``real[]`` instead, searched exactly in numpy like on SQLite
(``arquivo kb enable-ann`` converts the column once pgvector is installed): a server
without pgvector must not block every other table. On SQLite it is float32 bytes.
Wherever the exact index caches matrices in memory (SQLite, PostgreSQL without
pgvector), triggers keep each collection's change counters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from arquivo.db.dialects import get_dialect
from arquivo.db.types import Vector

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    bind = op.get_bind()
    support = get_dialect(bind.dialect.name)
    native_vectors = support.enable_vectors(bind)
    # Vector() is pgvector's type on PostgreSQL and a BLOB on SQLite; without pgvector,
    # PostgreSQL gets real[], which Vector's bound values also fit.
    embedding: sa.types.TypeEngine[Any] = Vector()
    if not native_vectors:
        embedding = sa.LargeBinary().with_variant(postgresql.ARRAY(sa.REAL()), "postgresql")
    op.create_table(
        "knowledge_collections",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("metric", sa.String(16), server_default="cosine", nullable=False),
        sa.Column("embedder", sa.String(255), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("epoch", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint(
            "metric = 'cosine' OR metric = 'l2' OR metric = 'ip'",
            name=op.f("ck_knowledge_collections_metric"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_collections")),
        sa.UniqueConstraint("name", name=op.f("uq_knowledge_collections_name")),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("collection_id", ID, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("document_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("embedding", embedding, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["knowledge_collections.id"],
            name=op.f("fk_knowledge_chunks_collection_id_knowledge_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_chunks")),
    )
    op.create_index(
        op.f("ix_knowledge_chunks_collection_id_key"),
        "knowledge_chunks",
        ["collection_id", "key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_knowledge_chunks_collection_id_document_id"),
        "knowledge_chunks",
        ["collection_id", "document_id"],
    )
    op.create_index(op.f("ix_knowledge_chunks_user_id"), "knowledge_chunks", ["user_id"])
    if not native_vectors:
        for statement in support.chunk_change_triggers():
            op.execute(statement)


def downgrade() -> None:
    # Triggers first: on PostgreSQL their function would outlive the table.
    for statement in get_dialect(op.get_bind().dialect.name).drop_chunk_change_triggers():
        op.execute(statement)
    # Dropping the tables drops their per-collection indexes too; the pgvector
    # extension stays (other schemas may use it).
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_collections")
