"""``store.retention``: delete what is older than the policy says to keep, in short chunks.

Three rules, each off unless given a number of days:

- **metrics** older than N days;
- **conversations** inactive for N days: whole sessions whose *last* message is older
  (a session someone still writes to keeps all of its history);
- **HITL** sessions closed (decided, cancelled or expired) N days ago, with their audit
  trail.

Rows go in chunks of ``chunk_size`` ids, one transaction each, in key order (each chunk
resumes after the previous one's last key, so nothing is scanned twice). On SQLite a
writer therefore waits for one chunk at most (milliseconds), never for the whole job.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy import Table
from sqlalchemy.sql.expression import ColumnElement

from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import ValidationError
from arquivo.models import ConversationHistory, HITLAction, HITLSession, SystemMetric
from arquivo.validation import check_datetime

if TYPE_CHECKING:
    from arquivo.settings import Settings

__all__ = ["Retention", "RetentionPolicy", "RetentionReport"]

_METRICS = cast(Table, SystemMetric.__table__)
_MESSAGES = cast(Table, ConversationHistory.__table__)
_HITL = cast(Table, HITLSession.__table__)
_ACTIONS = cast(Table, HITLAction.__table__)
_OPEN_STATUS = "pending"


def _check_days(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"{field} must be a whole number of days (0 or more) or None, not {value!r}",
            hint="e.g. 30; None keeps the data forever",
        )
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    """How long to keep each kind of data; ``None`` keeps it forever.

    Attributes:
        metrics_days: Delete metrics recorded more than this many days ago.
        conversations_days: Delete sessions whose last message is older than this.
        hitl_days: Delete HITL sessions closed more than this many days ago.
    """

    metrics_days: int | None = None
    conversations_days: int | None = None
    hitl_days: int | None = None

    def __post_init__(self) -> None:
        for field in ("metrics_days", "conversations_days", "hitl_days"):
            _check_days(field, getattr(self, field))

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The policy of ``ARQUIVO_RETENTION_{METRICS,CONVERSATIONS,HITL}_DAYS``."""
        return cls(
            settings.retention_metrics_days,
            settings.retention_conversations_days,
            settings.retention_hitl_days,
        )

    @property
    def keeps_everything(self) -> bool:
        """Whether no rule is set (applying it deletes nothing)."""
        return (
            self.metrics_days is None
            and self.conversations_days is None
            and (self.hitl_days is None)
        )


@dataclass(frozen=True)
class RetentionReport:
    """What :meth:`Retention.apply` deleted (or, in a dry run, would delete).

    Attributes:
        rows: Rows per table (tables no rule touched are absent).
        total: The sum of ``rows``.
        cutoffs: Per rule (``metrics``, ``conversations``, ``hitl``), the moment before
            which data went; rules that are off are absent.
        dry_run: ``True`` when nothing was deleted.
    """

    rows: Mapping[str, int]
    total: int
    cutoffs: Mapping[str, datetime]
    dry_run: bool


class Retention(Facade):
    """Deletes what a :class:`RetentionPolicy` does not keep: ``apply``."""

    __slots__ = ()

    def apply(
        self,
        policy: RetentionPolicy,
        *,
        dry_run: bool = False,
        chunk_size: int = 2_000,
        now: datetime | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> RetentionReport:
        """Delete what ``policy`` does not keep, one short transaction per chunk.

        Args:
            policy: How long to keep each kind of data.
            dry_run: Count what would go, delete nothing.
            chunk_size: Rows (HITL: sessions) per transaction.
            now: The moment the ages are counted from (default: now).
            progress: Called with (table, rows so far) after every chunk.

        Returns:
            The rows deleted per table, and the cutoff of each rule.

        Raises:
            ValidationError: A bad ``chunk_size`` or ``now``.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValidationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
        now = utcnow() if now is None else check_datetime("now", now)
        report = _Run(self, dry_run, chunk_size, progress)
        cutoffs: dict[str, datetime] = {}
        if policy.metrics_days is not None:
            cutoff = cutoffs["metrics"] = now - timedelta(days=policy.metrics_days)
            report.delete(_METRICS, _METRICS.c.created_at < cutoff)
        if policy.conversations_days is not None:
            cutoff = cutoffs["conversations"] = now - timedelta(days=policy.conversations_days)
            report.delete(_MESSAGES, _stale_messages(cutoff))
        if policy.hitl_days is not None:
            cutoff = cutoffs["hitl"] = now - timedelta(days=policy.hitl_days)
            report.delete_hitl(_closed_before(cutoff))
        return RetentionReport(report.rows, sum(report.rows.values()), cutoffs, dry_run)


def _stale_messages(cutoff: datetime) -> ColumnElement[bool]:
    # A message of a session with no message at or after the cutoff. Checked again in
    # every chunk, so a session that comes back to life mid-run keeps what is left.
    newer = _MESSAGES.alias("newer")
    recent = (
        sa.select(newer.c.id)
        .where(
            newer.c.user_id == _MESSAGES.c.user_id,
            newer.c.session_id == _MESSAGES.c.session_id,
            newer.c.created_at >= cutoff,
        )
        .exists()
    )
    return sa.and_(_MESSAGES.c.created_at < cutoff, ~recent)


def _closed_before(cutoff: datetime) -> ColumnElement[bool]:
    closed_at = sa.func.coalesce(_HITL.c.completed_at, _HITL.c.updated_at)
    return sa.and_(_HITL.c.status != _OPEN_STATUS, closed_at < cutoff)


class _Run:
    """One application of a policy: chunked deletes (or counts) and their totals."""

    def __init__(
        self,
        facade: Retention,
        dry_run: bool,
        chunk_size: int,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        self.store = facade._store
        self.dry_run = dry_run
        self.chunk_size = chunk_size
        self.progress = progress
        self.rows: dict[str, int] = {}

    def _add(self, table: Table, count: int) -> None:
        self.rows[table.name] = self.rows.get(table.name, 0) + count
        if self.progress is not None:
            self.progress(table.name, self.rows[table.name])

    def _count(self, table: Table, where: ColumnElement[bool]) -> int:
        with self.store.transaction(read_only=True) as session:
            query = sa.select(sa.func.count()).select_from(table).where(where)
            return int(session.execute(query).scalar_one())

    def _next_keys(
        self, table: Table, where: ColumnElement[bool], after: Any
    ) -> builtins.list[Any]:
        (key,) = table.primary_key.columns
        query = sa.select(key).where(where).order_by(key).limit(self.chunk_size)
        if after is not None:
            query = query.where(key > after)
        with self.store.transaction(read_only=True) as session:
            return builtins.list(session.execute(query).scalars())

    def delete(self, table: Table, where: ColumnElement[bool]) -> None:
        """Delete the rows of ``table`` matching ``where``, a chunk per transaction."""
        self.rows.setdefault(table.name, 0)
        if self.dry_run:
            self._add(table, self._count(table, where))
            return
        (key,) = table.primary_key.columns
        after = None
        while keys := self._next_keys(table, where, after):
            after = keys[-1]
            with self.store.transaction() as session:
                # The condition is applied again under the write lock: a row that
                # changed since it was listed is left alone.
                result: Any = session.execute(sa.delete(table).where(key.in_(keys), where))
            self._add(table, int(result.rowcount))
            if len(keys) < self.chunk_size:
                break

    def delete_hitl(self, where: ColumnElement[bool]) -> None:
        """Delete closed HITL sessions and their audit trail, a chunk per transaction."""
        self.rows.setdefault(_ACTIONS.name, 0)
        self.rows.setdefault(_HITL.name, 0)
        if self.dry_run:
            owned = _ACTIONS.c.session_id.in_(sa.select(_HITL.c.id).where(where))
            self._add(_ACTIONS, self._count(_ACTIONS, owned))
            self._add(_HITL, self._count(_HITL, where))
            return
        after = None
        while keys := self._next_keys(_HITL, where, after):
            after = keys[-1]
            with self.store.transaction() as session:
                still = builtins.list(
                    session.execute(
                        sa.select(_HITL.c.id).where(_HITL.c.id.in_(keys), where)
                    ).scalars()
                )
                # The audit trail explicitly (the foreign key would cascade, uncounted).
                actions: Any = session.execute(
                    sa.delete(_ACTIONS).where(_ACTIONS.c.session_id.in_(still))
                )
                sessions: Any = session.execute(sa.delete(_HITL).where(_HITL.c.id.in_(still)))
            self._add(_ACTIONS, int(actions.rowcount))
            self._add(_HITL, int(sessions.rowcount))
            if len(keys) < self.chunk_size:
                break
