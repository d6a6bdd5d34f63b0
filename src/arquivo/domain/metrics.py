"""``store.metrics``: operation timings, successes and errors, with aggregates."""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.sql.expression import ClauseElement, ColumnElement

from arquivo.db.dialects import DialectSupport, get_dialect
from arquivo.db.fastpath import Builder, Prepared
from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import ArquivoError, ValidationError
from arquivo.models import SystemMetric
from arquivo.validation import check_datetime, check_id, check_json, check_limit, check_text, shown
from arquivo.values import MetricBucket, MetricRecord, OperationStats

__all__ = [
    "MAX_ERROR_CHARS",
    "PERCENTILES",
    "Metrics",
    "Timer",
    "parse_duration",
    "percentile_cont",
]

#: Longest error text a measurement keeps (a timer cuts longer ones to fit).
MAX_ERROR_CHARS = 10_000
#: The percentiles :meth:`Metrics.summary` reports, as fractions.
PERCENTILES = (0.5, 0.95, 0.99)

_log = logging.getLogger(__name__)
_T = cast(sa.Table, SystemMetric.__table__)
_COLUMNS = (
    _T.c.id,
    _T.c.operation,
    _T.c.duration_ms,
    _T.c.success,
    _T.c.error,
    _T.c.extra_data,
    _T.c.created_at,
)
_DURATION = re.compile(r"\s*(\d{1,12})\s*([smhdw])\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Ten years: wider buckets make no sense, and the width must fit a 32-bit integer.
_MAX_SECONDS = 3650 * 86400
_F = TypeVar("_F", bound=Callable[..., Any])


def _raw(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    # Values the driver already returns as wanted. The fast path resolves result
    # processors without the driver's column type, which psycopg's float processors
    # require, and SQLite's bool processor would cost a call per row in a full scan.
    return sa.type_coerce(expr, sa.types.NullType())


def _failures(success: ColumnElement[Any]) -> ColumnElement[int]:
    return sa.func.count().filter(sa.not_(success))


def _where(by_operation: bool, since: bool, until: bool) -> builtins.list[ColumnElement[bool]]:
    clauses: builtins.list[ColumnElement[bool]] = []
    if by_operation:
        clauses.append(_T.c.operation == sa.bindparam("operation"))
    # Only the bounds given are in the statement: an open range then needs no index at
    # all (SQLite would otherwise walk the created_at index for the whole table).
    if since:
        clauses.append(_T.c.created_at >= sa.bindparam("since", type_=_T.c.created_at.type))
    if until:
        clauses.append(_T.c.created_at < sa.bindparam("until", type_=_T.c.created_at.type))
    return clauses


def _insert(_: DialectSupport) -> ClauseElement:
    values = {
        name: sa.bindparam(name, type_=_T.c[name].type)
        for name in ("operation", "duration_ms", "success", "error", "extra_data", "created_at")
    }
    return sa.insert(_T).values(**values).returning(_T.c.id)


# One prepared statement per combination of filters, built on first use.
@functools.cache
def _list(by_operation: bool, since: bool, until: bool) -> Builder:
    def build(_: DialectSupport) -> ClauseElement:
        columns = [_raw(c) if c is _T.c.duration_ms else c for c in _COLUMNS]
        return (
            sa.select(*columns)
            .where(*_where(by_operation, since, until))
            .order_by(_T.c.created_at.desc(), _T.c.id.desc())
            .limit(sa.bindparam("limit"))
        )

    return build


@functools.cache
def _summary(by_operation: bool, since: bool, until: bool) -> Builder:
    def build(support: DialectSupport) -> ClauseElement:
        duration = _T.c.duration_ms
        percentiles = [support.percentile_cont(p, duration) for p in PERCENTILES]
        return (
            sa.select(
                _T.c.operation,
                sa.func.count(),
                _failures(_T.c.success),
                _raw(sa.func.avg(duration)),
                _raw(sa.func.min(duration)),
                _raw(sa.func.max(duration)),
                *(_raw(p) for p in percentiles if p is not None),
            )
            .where(*_where(by_operation, since, until))
            .group_by(_T.c.operation)
            .order_by(_T.c.operation)
        )

    return build


@functools.cache
def _durations(by_operation: bool, since: bool, until: bool) -> Builder:
    # Every duration, then one row with a NULL duration per failure. A third column
    # tested on every row costs a quarter of the scan; the few failure rows cost
    # little, and one statement reads both halves from the same snapshot.
    def build(_: DialectSupport) -> ClauseElement:
        where = _where(by_operation, since, until)
        return sa.union_all(
            sa.select(_T.c.operation, _raw(_T.c.duration_ms)).where(*where),
            sa.select(_T.c.operation, _raw(sa.null())).where(*where, sa.not_(_T.c.success)),
        )

    return build


@functools.cache
def _timeseries(since: bool, until: bool) -> Builder:
    def build(support: DialectSupport) -> ClauseElement:
        width = sa.bindparam("width", type_=sa.Integer)
        rows = (
            sa.select(
                support.epoch_bucket(_T.c.created_at, width).label("bucket"),
                _T.c.duration_ms,
                _T.c.success,
            )
            .where(*_where(True, since, until))
            .subquery()
        )
        return (
            sa.select(
                rows.c.bucket,
                sa.func.count(),
                _failures(rows.c.success),
                _raw(sa.func.avg(rows.c.duration_ms)),
                _raw(sa.func.max(rows.c.duration_ms)),
            )
            .group_by(rows.c.bucket)
            .order_by(rows.c.bucket)
        )

    return build


def _delete_before(_: DialectSupport) -> ClauseElement:
    return sa.delete(_T).where(_T.c.created_at < sa.bindparam("cutoff", type_=_T.c.created_at.type))


def percentile_cont(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted values, interpolated like PostgreSQL's.

    The same float operations in the same order as PostgreSQL's ``percentile_cont``
    (``lo + (pos - floor(pos)) * (hi - lo)`` at ``pos = fraction * (n - 1)``), so both
    give the same bits for the same values.

    Args:
        ordered: The values, sorted ascending; at least one.
        fraction: Between 0 and 1.
    """
    position = fraction * (len(ordered) - 1)
    first = math.floor(position)
    second = math.ceil(position)
    if first == second:
        return ordered[first]
    low = ordered[first]
    return low + (position - first) * (ordered[second] - low)


def parse_duration(value: str | timedelta, *, field: str = "duration") -> timedelta:
    """A whole number of seconds from 1s to ten years: ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``...

    Args:
        value: The text (units s, m, h, d, w), or a ``timedelta`` to check.
        field: The name the error message gives the value.

    Raises:
        ValidationError: Not of that form, not whole seconds, or out of range.
    """
    hint = 'use a number and a unit s, m, h, d or w, e.g. "30s", "5m", "1h", "7d"'
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = int(match[1]) * _UNIT_SECONDS[match[2].lower()]
    else:
        raise ValidationError(
            f"{field} must be like 30s, 5m, 1h or 7d, not {shown(value)}", hint=hint
        )
    if not 1 <= seconds <= _MAX_SECONDS or seconds != int(seconds):
        raise ValidationError(
            f"{field} must be a whole number of seconds from 1s to ten years, not {shown(value)}",
            hint=hint,
        )
    return timedelta(seconds=int(seconds))


def _check_duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f"duration_ms must be a number of milliseconds, not {type(value).__name__}",
            hint="pass an int or float, e.g. (time.perf_counter() - start) * 1000",
        )
    try:
        duration = float(value)
    except OverflowError:
        raise ValidationError("duration_ms is too large for a float") from None
    if not math.isfinite(duration) or duration < 0:
        raise ValidationError(
            f"duration_ms must be finite and not negative, not {shown(value)}",
            hint="measure with time.perf_counter(), which never goes backwards",
        )
    return duration + 0.0  # -0.0 becomes 0.0, so it sorts and prints like 0


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a broken __str__ must not replace the caller's error
        text = f"{type(exc).__name__}: <str() failed>"
    # The text must be storable whatever the exception held: no NUL, no lone surrogates.
    text = text.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


class Timer:
    """Measures a block or a function and records it; made by :meth:`Metrics.timer`.

    Use it as ``with``, ``async with``, or as a decorator of sync and async functions.
    The duration is measured with :func:`time.perf_counter`. When the block raises, the
    measurement is recorded with ``success=False`` and the error's type and message, and
    the exception propagates unchanged; if the measurement cannot be stored then, the
    failure is logged and added as a note to the caller's exception, never raised in its
    place. When the block succeeds, a failure to store raises ``ArquivoError``.

    Attributes:
        recorded: The measurement the last ``with`` block recorded (``None`` before; a
            decorator measures every call with a timer of its own).
    """

    __slots__ = ("_extra", "_metrics", "_operation", "_starts", "recorded")

    def __init__(self, metrics: Metrics, operation: str, extra: dict[str, Any] | None) -> None:
        self._metrics = metrics
        self._operation = operation
        self._extra = extra
        # A stack, so the same timer can time nested blocks on one thread.
        self._starts: builtins.list[float] = []
        self.recorded: MetricRecord | None = None

    def __enter__(self) -> Timer:
        self._starts.append(time.perf_counter())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._save((time.perf_counter() - self._starts.pop()) * 1000.0, exc)

    async def __aenter__(self) -> Timer:
        self._starts.append(time.perf_counter())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = (time.perf_counter() - self._starts.pop()) * 1000.0
        # Off the event loop: a write to a remote server must not stall other tasks.
        await asyncio.to_thread(self._save, elapsed, exc)

    def __call__(self, function: _F) -> _F:
        """Time every call of ``function`` (a plain or an ``async`` function)."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await function(*args, **kwargs)

            return cast(_F, timed_coroutine)

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return function(*args, **kwargs)

        return cast(_F, timed)

    def _fresh(self) -> Timer:
        # Calls may overlap (threads, tasks, recursion): each gets its own start time.
        return Timer(self._metrics, self._operation, self._extra)

    def _save(self, elapsed_ms: float, exc: BaseException | None) -> None:
        metrics, operation, extra = self._metrics, self._operation, self._extra
        if exc is None:
            self.recorded = metrics._write(operation, elapsed_ms, True, None, extra)
            return
        try:
            self.recorded = metrics._write(operation, elapsed_ms, False, _describe(exc), extra)
        except ArquivoError as failure:
            # The caller's exception is what matters here; keep this one visible beside it.
            _log.warning("could not record the metric %r: %s", operation, failure)
            exc.add_note(f"arquivo: could not record the metric {operation!r}: {failure}")

    def __repr__(self) -> str:
        return f"Timer({self._operation!r})"


class Metrics(Facade):
    """System metrics: how long each operation took and whether it failed, with summaries.

    Record with :meth:`record` or :meth:`timer`; read back with :meth:`list`,
    :meth:`summary` (count, error rate, mean, min, max and exact p50/p95/p99 per
    operation) and :meth:`timeseries`. Times are UTC; naive datetimes are taken as UTC.
    """

    __slots__ = ()

    def record(
        self,
        operation: str,
        duration_ms: float,
        *,
        success: bool = True,
        error: str | None = None,
        extra_data: Any = None,
    ) -> MetricRecord:
        """Store one measurement of ``operation`` and return it.

        Args:
            operation: What was measured (e.g. ``"llm_call"``); at most 255 characters.
            duration_ms: How long it took, in milliseconds (finite, not negative).
            success: Whether it succeeded.
            error: The error text when it failed (at most ``MAX_ERROR_CHARS``).
            extra_data: Any JSON metadata (model, tokens...).

        Raises:
            ValidationError: A bad operation, duration, success flag, error or extra data.
        """
        check_id("operation", operation)
        duration = _check_duration(duration_ms)
        if not isinstance(success, bool):
            raise ValidationError(
                f"success must be True or False, not {shown(success)}", hint="pass a bool"
            )
        if error is not None:
            check_text("error", error, max_chars=MAX_ERROR_CHARS)
        if extra_data is not None:
            check_json("extra_data", extra_data)
        return self._write(operation, duration, success, error, extra_data)

    def timer(self, operation: str, **extra: Any) -> Timer:
        """A timer that records how long a block or function takes (see :class:`Timer`).

        ::

            with store.metrics.timer("llm_call", model="gpt-4o"):
                ...

            @store.metrics.timer("tool_call")
            async def call_tool(): ...

        Args:
            operation: What is measured.
            **extra: JSON metadata stored as the measurement's ``extra_data``.

        Raises:
            ValidationError: A bad operation or extra data (checked here, up front).
        """
        check_id("operation", operation)
        if extra:
            check_json("extra_data", extra)
        return Timer(self, operation, extra or None)

    def list(
        self,
        operation: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[MetricRecord]:
        """Measurements, newest first.

        Args:
            operation: Only this operation's.
            since: Only those recorded at or after this time.
            until: Only those recorded before this time.
            limit: At most this many (1 to 10,000).
        """
        values = self._filters(operation, since, until)
        values["limit"] = check_limit("limit", limit)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_list(*self._shape(values)), values)
        return [MetricRecord(*row) for row in rows]

    def summary(
        self,
        operation: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, OperationStats]:
        """Aggregates per operation: count, errors, mean, min, max, p50, p95 and p99.

        Percentiles are exact, interpolated as PostgreSQL's ``percentile_cont`` does, on
        every database.

        Args:
            operation: Only this operation.
            since: Only measurements recorded at or after this time.
            until: Only measurements recorded before this time.

        Returns:
            The statistics by operation name, in name order; operations with no
            measurement in the range are absent.
        """
        values = self._filters(operation, since, until)
        shape = self._shape(values)
        support = get_dialect(self._store.dialect)
        if support.percentile_cont(0.5, _T.c.duration_ms) is None:
            return self._summary_in_python(support, shape, values)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_summary(*shape), values)
        return {
            row[0]: OperationStats(row[0], row[1], row[2], row[2] / row[1], *row[3:])
            for row in rows
        }

    def timeseries(
        self,
        operation: str,
        *,
        bucket: str | timedelta = "1h",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> builtins.list[MetricBucket]:
        """An operation's measurements in fixed-width time buckets, oldest first.

        Buckets start at whole multiples of their width since the Unix epoch (UTC), so
        ``"1h"`` buckets start on the hour and ``"1d"`` ones at midnight UTC. Buckets with
        no measurement are left out.

        Args:
            operation: The operation.
            bucket: The width: ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``... or a timedelta
                of whole seconds.
            since: Only measurements recorded at or after this time.
            until: Only measurements recorded before this time.

        Raises:
            ValidationError: A bad operation, bucket width or time range.
        """
        check_id("operation", operation)
        width = int(parse_duration(bucket, field="bucket").total_seconds())
        values = self._filters(operation, since, until)
        values["width"] = width
        _, has_since, has_until = self._shape(values)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_timeseries(has_since, has_until), values)
        return [
            MetricBucket(datetime.fromtimestamp(index * width, UTC), count, errors, avg, peak)
            for index, count, errors, avg, peak in rows
        ]

    def delete_before(self, cutoff: datetime) -> int:
        """Delete the measurements recorded before ``cutoff`` (retention); returns how many."""
        check_datetime("cutoff", cutoff)
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete_before, {"cutoff": cutoff})

    def _write(
        self,
        operation: str,
        duration_ms: float,
        success: bool,
        error: str | None,
        extra_data: Any,
    ) -> MetricRecord:
        now = utcnow()
        values = {
            "operation": operation,
            "duration_ms": duration_ms,
            "success": success,
            "error": error,
            "extra_data": extra_data,
            "created_at": now,
        }
        with self._store.unit(write=True) as driver:
            ((metric_id,),) = driver.execute(_insert, values)
        return MetricRecord(metric_id, operation, duration_ms, success, error, extra_data, now)

    @staticmethod
    def _filters(
        operation: str | None, since: datetime | None, until: datetime | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if operation is not None:
            values["operation"] = check_id("operation", operation)
        if since is not None:
            values["since"] = check_datetime("since", since)
        if until is not None:
            values["until"] = check_datetime("until", until)
        if since is not None and until is not None and _utc(since) > _utc(until):
            raise ValidationError(
                f"since ({since}) is after until ({until})",
                hint="since is the start of the range (inclusive), until its end (exclusive)",
            )
        return values

    @staticmethod
    def _shape(values: dict[str, Any]) -> tuple[bool, bool, bool]:
        return "operation" in values, "since" in values, "until" in values

    def _summary_in_python(
        self, support: DialectSupport, shape: tuple[bool, bool, bool], values: dict[str, Any]
    ) -> dict[str, OperationStats]:
        # Streamed, not fetched at once: only one float per row is held, in its
        # operation's list. Compiled per call: the cost is nothing next to the scan.
        prepared = Prepared(_durations(*shape)(support), self._store.engine.dialect)
        durations: dict[str, builtins.list[float | None]] = {}
        appenders: dict[str, Callable[[float | None], None]] = {}
        with self._store.unit(write=False) as driver:
            cursor = driver.connection.cursor()
            try:
                cursor.execute(prepared.sql, prepared.parameters(values))
                for operation, duration in cursor:
                    try:
                        appenders[operation](duration)
                    except KeyError:
                        durations[operation] = [duration]
                        appenders[operation] = durations[operation].append
            finally:
                cursor.close()
        stats = {}
        for operation in sorted(durations):
            measured = durations.pop(operation)
            errors = measured.count(None)
            ordered = (
                [d for d in measured if d is not None]
                if errors
                else cast(builtins.list[float], measured)
            )
            ordered.sort()
            count = len(ordered)
            stats[operation] = OperationStats(
                operation,
                count,
                errors,
                errors / count,
                sum(ordered) / count,
                ordered[0],
                ordered[-1],
                *(percentile_cont(ordered, p) for p in PERCENTILES),
            )
        return stats
