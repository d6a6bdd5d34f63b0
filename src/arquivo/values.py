"""The plain, frozen values the domain methods return (never live ORM objects)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = [
    "AgentRecord",
    "AgentVersion",
    "HITLActionRecord",
    "HITLRequest",
    "Message",
    "MetricBucket",
    "MetricRecord",
    "OperationStats",
    "SessionInfo",
    "from_rows",
]


def from_rows(cls: type[_T]) -> Callable[[Sequence[Any]], _T]:
    """A constructor of the frozen, slotted dataclass ``cls`` from a row in field order.

    It fills the slots directly: a frozen ``__init__`` sets each field through
    ``object.__setattr__``, which on listings of a thousand rows is a visible cost.
    The values are the row's as they are (the domain has validated them already).
    """
    setters = [getattr(cls, field.name).__set__ for field in fields(cls)]  # type: ignore[arg-type]
    new = object.__new__

    def make(row: Sequence[Any]) -> _T:
        instance: _T = new(cls)
        for set_field, value in zip(setters, row, strict=True):
            set_field(instance, value)
        return instance

    return make


@dataclass(frozen=True, slots=True)
class Message:
    """One stored conversation message.

    Attributes:
        id: Its unique, increasing id (use it as the ``before`` cursor when paging).
        user_id: The user it belongs to.
        session_id: The conversation session.
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: The text.
        model: The model that produced or received it, if known.
        workspace_path: The workspace it concerned, if any.
        extra_data: Any JSON metadata (token counts, tool calls...).
        created_at: When it was stored (UTC).
    """

    id: int
    user_id: str
    session_id: str
    role: str
    content: str
    model: str | None
    workspace_path: str | None
    extra_data: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A conversation session of one user, summarised.

    Attributes:
        session_id: The session.
        message_count: How many messages it holds.
        first_at: When its first message was stored.
        last_at: When its last message was stored.
    """

    session_id: str
    message_count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One recorded measurement.

    Attributes:
        id: Its id.
        operation: What was measured.
        duration_ms: How long it took, in milliseconds.
        success: Whether it succeeded.
        error: The error text when it failed.
        extra_data: Any JSON metadata.
        created_at: When it was recorded (UTC).
    """

    id: int
    operation: str
    duration_ms: float
    success: bool
    error: str | None
    extra_data: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Aggregates of one operation's measurements over a time range.

    Attributes:
        operation: The operation.
        count: How many measurements.
        errors: How many failed.
        error_rate: ``errors / count``.
        avg_ms: Mean duration.
        min_ms: Shortest duration.
        max_ms: Longest duration.
        p50_ms: Median duration (exact, interpolated like ``percentile_cont``).
        p95_ms: 95th percentile duration.
        p99_ms: 99th percentile duration.
    """

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


@dataclass(frozen=True, slots=True)
class MetricBucket:
    """One time bucket of an operation's measurements, for plots.

    Attributes:
        start: The bucket's start (UTC).
        count: Measurements in the bucket.
        errors: Failed measurements in the bucket.
        avg_ms: Mean duration.
        max_ms: Longest duration.
    """

    start: datetime
    count: int
    errors: int
    avg_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent's current definition.

    Attributes:
        name: Its unique name.
        model: The model it runs on.
        instructions: Its system instructions.
        tools: The tools it may call (any JSON list).
        memory: Its memory (any JSON value).
        version: The number of the definition version this is.
        created_at: When the agent was first registered.
        updated_at: When it last changed.
    """

    name: str
    model: str
    instructions: str | None
    tools: Any
    memory: Any
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AgentVersion:
    """One numbered version of an agent's definition.

    Attributes:
        name: The agent.
        version: The version number (1, 2, ...).
        model: The model in that version.
        instructions: The instructions in that version.
        tools: The tools in that version.
        created_at: When the version was made.
    """

    name: str
    version: int
    model: str
    instructions: str | None
    tools: Any
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HITLRequest:
    """A human-in-the-loop session: a workflow step waiting for (or holding) a decision.

    Attributes:
        id: Its unique id (a UUID).
        workflow_id: The workflow that asked.
        step_id: The step of that workflow.
        user_id: The person (or team) it is for, if any.
        kind: ``approval``, ``input`` or ``review``.
        status: ``pending``, ``approved``, ``rejected``, ``completed``, ``cancelled``
            or ``expired``. A pending session past ``expires_at`` reads as ``expired``
            even before ``expire_due()`` has recorded it.
        request_data: What the workflow asks about (JSON).
        response_data: What the person answered (JSON), once decided.
        decided_by: Who closed it (``system`` for an expiry).
        created_at: When it was requested (UTC).
        updated_at: When it last changed (UTC).
        expires_at: When it stops accepting decisions, if ever.
        completed_at: When it left ``pending``.
    """

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

    @property
    def is_pending(self) -> bool:
        """Whether it still waits for a decision."""
        return self.status == "pending"


@dataclass(frozen=True, slots=True)
class HITLActionRecord:
    """One event of a HITL session's append-only audit trail.

    Attributes:
        id: Its unique id.
        session_id: The session.
        action_type: ``created``, ``viewed``, ``commented``, ``decided``, ``cancelled``
            or ``expired``.
        actor: Who did it (``system`` for an expiry).
        data: Details (JSON): for ``decided``, the status and the response.
        created_at: When it happened (UTC).
    """

    id: str
    session_id: str
    action_type: str
    actor: str | None
    data: Any
    created_at: datetime
