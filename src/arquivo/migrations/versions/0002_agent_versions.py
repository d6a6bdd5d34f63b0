"""agent versions: numbered history of agent definitions

Adds ``agents.version`` (the number of the current definition) and the table
``agent_versions``. Agents that already exist get their current definition recorded
as version 1, so every agent's history starts complete.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types are spelled out here rather than imported from the models, so this revision
# keeps creating the same schema whatever the models become later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    # The server default fills the new column of existing rows: each is at version 1.
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )

    op.create_table(
        "agent_versions",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("tools", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["name"],
            ["agents.name"],
            name=op.f("fk_agent_versions_name_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_agent_versions")),
    )

    # Backfill: an agent's row is the only place its definition was known to be in
    # effect, as of its updated_at, so that is when its version 1 is dated. Copying
    # column to column keeps the stored JSON byte for byte (no round trip through Python).
    op.execute(
        "INSERT INTO agent_versions (name, version, model, instructions, tools, created_at) "
        "SELECT name, 1, model, instructions, tools, updated_at FROM agents"
    )


def downgrade() -> None:
    op.drop_table("agent_versions")
    # SQLite rebuilds the table to drop a column; batch mode does that (and is a plain
    # ALTER TABLE on PostgreSQL).
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("version")
