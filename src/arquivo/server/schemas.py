"""Request bodies (validated by pydantic: a 422 names the field) and response shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionOut",
    "AgentIn",
    "AgentOut",
    "AgentVersionOut",
    "ApproveIn",
    "BackupComponentOut",
    "BackupFileOut",
    "BackupIn",
    "BackupOut",
    "BucketOut",
    "CancelIn",
    "CommentIn",
    "HITLIn",
    "HITLOut",
    "HistoryOut",
    "MessageIn",
    "MessageOut",
    "MetricIn",
    "MetricOut",
    "PreferenceIn",
    "PreferenceOut",
    "RejectIn",
    "RespondIn",
    "SessionOut",
    "StatsOut",
    "VerifyOut",
    "WhoAmI",
]

_ID = Field(min_length=1, max_length=255)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreferenceIn(_In):
    """A preference's new value (any JSON)."""

    value: Any = Field(description="Any JSON value (at most 1 MB encoded).")


class PreferenceOut(BaseModel):
    """One preference."""

    user_id: str
    key: str
    value: Any


class MessageIn(_In):
    """A message to append to a session."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=1_000_000)
    model: str | None = Field(default=None, max_length=255)
    workspace_path: str | None = Field(default=None, max_length=4096)
    extra_data: Any = None


class MessageOut(BaseModel):
    """A stored message."""

    id: int
    user_id: str
    session_id: str
    role: str
    content: str
    model: str | None
    workspace_path: str | None
    extra_data: Any
    created_at: datetime


class HistoryOut(BaseModel):
    """A page of a session's messages, oldest first.

    ``next_before`` is the cursor of the page before this one (pass it as ``before``),
    or null when this page reaches the start of the session.
    """

    messages: list[MessageOut]
    next_before: int | None


class SessionOut(BaseModel):
    """A user's conversation session, summarised."""

    session_id: str
    message_count: int
    first_at: datetime
    last_at: datetime


class MetricIn(_In):
    """One measurement."""

    operation: str = _ID
    duration_ms: float = Field(ge=0, allow_inf_nan=False)
    success: bool = True
    error: str | None = Field(default=None, max_length=10_000)
    extra_data: Any = None


class MetricOut(BaseModel):
    """A stored measurement."""

    id: int
    operation: str
    duration_ms: float
    success: bool
    error: str | None
    extra_data: Any
    created_at: datetime


class StatsOut(BaseModel):
    """Aggregates of one operation."""

    operation: str
    count: int
    errors: int
    error_rate: float
    avg_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


class BucketOut(BaseModel):
    """One time bucket of an operation's measurements."""

    start: datetime
    count: int
    errors: int
    avg_ms: float
    max_ms: float


class AgentIn(_In):
    """An agent's whole definition (a change makes a new version)."""

    model: str = _ID
    instructions: str | None = Field(default=None, max_length=1_000_000)
    tools: list[Any] | None = None
    memory: Any = None


class AgentOut(BaseModel):
    """An agent's current definition."""

    name: str
    model: str
    instructions: str | None
    tools: Any
    memory: Any
    version: int
    created_at: datetime
    updated_at: datetime


class AgentVersionOut(BaseModel):
    """One numbered version of an agent's definition."""

    name: str
    version: int
    model: str
    instructions: str | None
    tools: Any
    created_at: datetime


class HITLIn(_In):
    """Ask a person: a pending HITL session."""

    workflow_id: str = _ID
    step_id: str = _ID
    request_data: Any = Field(description="What to show the person (JSON).")
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Who should answer; a user key may only ask its own user (the default).",
    )
    kind: Literal["approval", "input", "review"] = "approval"
    expires_in: float | None = Field(default=None, gt=0, le=366 * 86400, allow_inf_nan=False)


class HITLOut(BaseModel):
    """A HITL session as it stands."""

    id: str
    workflow_id: str | None
    step_id: str | None
    user_id: str | None
    kind: str
    status: str
    request_data: Any
    response_data: Any
    decided_by: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None


class ActionOut(BaseModel):
    """One event of a session's audit trail."""

    id: str
    session_id: str
    action_type: str
    actor: str | None
    data: Any
    created_at: datetime


class ApproveIn(_In):
    """Approve (optionally with data handed back and a comment)."""

    response_data: Any = None
    comment: str | None = Field(default=None, max_length=10_000)


class RejectIn(_In):
    """Reject, saying why."""

    reason: str = Field(min_length=1, max_length=10_000)


class RespondIn(_In):
    """Answer an input session, or a review with edited data."""

    response_data: Any


class CancelIn(_In):
    """Withdraw a pending session."""

    reason: str | None = Field(default=None, max_length=10_000)


class CommentIn(_In):
    """A remark for the audit trail."""

    text: str = Field(min_length=1, max_length=10_000)


class WhoAmI(BaseModel):
    """The caller, as its key says."""

    key_id: str
    user_id: str
    is_admin: bool
    name: str | None


class BackupIn(_In):
    """A backup to take now."""

    label: str = Field(default="", max_length=500, description="A note kept in the manifest.")
    codec: Literal["lz4", "zstd", "gzip", "none"] | None = Field(
        default=None, description="SQLite only; default lz4 when installed, else zstd, gzip."
    )


class BackupFileOut(BaseModel):
    """One file of a backup, with its checksum."""

    path: str
    size_bytes: int
    sha256: str


class BackupComponentOut(BaseModel):
    """One part of a backup (the database snapshot, a data payload...)."""

    name: str
    kind: str
    codec: str
    raw_size_bytes: int
    details: dict[str, Any]
    files: list[BackupFileOut]


class BackupOut(BaseModel):
    """A complete backup, as its manifest describes it."""

    format: int
    id: str
    created_at: datetime
    label: str
    backup_type: str
    dialect: str | None
    revision: str | None
    arquivo_version: str
    source: str
    tables: dict[str, int]
    components: list[BackupComponentOut]
    size_bytes: int
    duration_s: float


class VerifyOut(BaseModel):
    """What checking a backup found."""

    backup_id: str
    ok: bool
    files_checked: int
    restored: bool
    tables: dict[str, int]
    problems: list[str]
    collections: dict[str, int] = Field(
        default_factory=dict, description="Chunks per collection of a Chroma folder in it."
    )
