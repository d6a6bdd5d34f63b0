"""initial schema: the seed documents' six tables

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types are spelled out here rather than imported from the models, so this revision
# keeps creating the same schema whatever the models become later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")


def _timestamps(*, updated: bool) -> list[sa.Column[object]]:
    columns: list[sa.Column[object]] = []
    if updated:
        columns.append(
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)
        )
    columns.append(
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)
    )
    return columns


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", JSON, nullable=True),
        *_timestamps(updated=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_preferences")),
        sa.UniqueConstraint("user_id", "key", name=op.f("uq_user_preferences_user_id_key")),
    )

    op.create_table(
        "conversation_history",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("workspace_path", sa.Text(), nullable=True),
        sa.Column("extra_data", JSON, nullable=True),
        *_timestamps(updated=False),
        sa.CheckConstraint(
            "role = 'system' OR role = 'user' OR role = 'assistant' OR role = 'tool'",
            name=op.f("ck_conversation_history_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_history")),
    )
    op.create_index(
        op.f("ix_conversation_history_user_id_session_id_id"),
        "conversation_history",
        ["user_id", "session_id", "id"],
    )

    op.create_table(
        "system_metrics",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("operation", sa.String(255), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("success", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("extra_data", JSON, nullable=True),
        *_timestamps(updated=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_metrics")),
    )
    op.create_index(
        op.f("ix_system_metrics_operation_created_at"),
        "system_metrics",
        ["operation", "created_at"],
    )
    op.create_index(op.f("ix_system_metrics_created_at"), "system_metrics", ["created_at"])

    op.create_table(
        "agents",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("tools", JSON, nullable=True),
        sa.Column("memory", JSON, nullable=True),
        *_timestamps(updated=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_agents")),
    )

    op.create_table(
        "hitl_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=True),
        sa.Column("step_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("request_data", JSON, nullable=True),
        sa.Column("response_data", JSON, nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(updated=True),
        sa.CheckConstraint(
            "status = 'pending' OR status = 'approved' OR status = 'rejected' "
            "OR status = 'completed' OR status = 'cancelled' OR status = 'expired'",
            name=op.f("ck_hitl_sessions_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hitl_sessions")),
    )
    op.create_index(
        op.f("ix_hitl_sessions_status_created_at"), "hitl_sessions", ["status", "created_at"]
    )
    op.create_index(
        op.f("ix_hitl_sessions_workflow_id_step_id"), "hitl_sessions", ["workflow_id", "step_id"]
    )

    op.create_table(
        "hitl_actions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("action_type", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=True),
        *_timestamps(updated=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["hitl_sessions.id"],
            name=op.f("fk_hitl_actions_session_id_hitl_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hitl_actions")),
    )
    op.create_index(
        op.f("ix_hitl_actions_session_id_created_at"), "hitl_actions", ["session_id", "created_at"]
    )


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "hitl_actions",
        "hitl_sessions",
        "agents",
        "system_metrics",
        "conversation_history",
        "user_preferences",
    ):
        op.drop_table(table)
