"""hitl workflow: who a session is for, its kind, deadline and decider; action actors

Adds ``hitl_sessions.user_id``, ``kind`` (``approval`` for existing rows),
``expires_at`` and ``decided_by``, an index on ``(status, expires_at)`` for the expiry
sweep, and ``hitl_actions.actor``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only ADD COLUMNs: SQLite does them in place, so batch mode rebuilds nothing.
    with op.batch_alter_table("hitl_sessions") as batch:
        batch.add_column(sa.Column("user_id", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("kind", sa.String(16), server_default="approval", nullable=False)
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(255), nullable=True))
    op.create_index(
        op.f("ix_hitl_sessions_status_expires_at"), "hitl_sessions", ["status", "expires_at"]
    )
    with op.batch_alter_table("hitl_actions") as batch:
        batch.add_column(sa.Column("actor", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_index(op.f("ix_hitl_sessions_status_expires_at"), table_name="hitl_sessions")
    with op.batch_alter_table("hitl_actions") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("hitl_sessions") as batch:
        batch.drop_column("decided_by")
        batch.drop_column("expires_at")
        batch.drop_column("kind")
        batch.drop_column("user_id")
