"""``store.metrics`` on every backend: records, timers, exact summaries, time series, the CLI."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, ArquivoError, SystemMetric, ValidationError
from arquivo.values import MetricRecord
from conftest import Backend

ARQUIVO = Path(sys.executable).with_name("arquivo")
T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)


def reference_percentile(values: Iterable[float], p: float) -> float:
    """percentile_cont as PostgreSQL documents and computes it, written out independently."""
    x = sorted(values)
    pos = p * (len(x) - 1)
    lower = math.floor(pos)
    upper = math.ceil(pos)
    if lower == upper:
        return x[lower]
    return x[lower] + (pos - lower) * (x[upper] - x[lower])


def count_rows(store: Arquivo) -> int:
    with store.transaction(read_only=True) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(SystemMetric)) or 0


def insert_at(store: Arquivo, rows: Iterable[tuple[str, float, bool, datetime]]) -> None:
    """Rows with chosen times, written through the ORM (not the code under test)."""
    with store.transaction() as session:
        session.add_all(
            SystemMetric(operation=op, duration_ms=d, success=ok, created_at=at)
            for op, d, ok, at in rows
        )


def test_record_and_list_round_trip_newest_first(store: Arquivo) -> None:
    first = store.metrics.record("llm_call", 120.5, extra_data={"model": "m1", "tokens": 42})
    second = store.metrics.record("tool_call", 3, success=False, error="TimeoutError: slow")
    third = store.metrics.record("llm_call", 0)

    assert isinstance(first, MetricRecord)
    assert (second.duration_ms, second.success, second.error) == (3.0, False, "TimeoutError: slow")
    assert first.created_at.tzinfo is not None
    assert store.metrics.list() == [third, second, first]
    assert store.metrics.list("llm_call") == [third, first]
    assert store.metrics.list(limit=1) == [third]
    assert store.metrics.list("nothing") == []


def test_list_time_range_since_inclusive_until_exclusive(store: Arquivo) -> None:
    insert_at(store, [("op", float(i), True, T0 + timedelta(minutes=i)) for i in range(5)])

    def durations(operation: str | None = None, **kwargs: Any) -> list[float]:
        return [r.duration_ms for r in store.metrics.list(operation, **kwargs)]

    assert durations() == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert durations(since=T0 + timedelta(minutes=1)) == [4.0, 3.0, 2.0, 1.0]
    assert durations(until=T0 + timedelta(minutes=3)) == [2.0, 1.0, 0.0]
    # A naive datetime is UTC; an aware one in another zone means the same instant.
    naive = (T0 + timedelta(minutes=1)).replace(tzinfo=None)
    plus_two = (T0 + timedelta(minutes=3)).astimezone(timezone(timedelta(hours=2)))
    assert durations("op", since=naive, until=plus_two) == [2.0, 1.0]
    assert durations(since=T0, until=T0) == []


BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({"operation": ""}, "operation"),
    ({"operation": "   "}, "operation"),
    ({"operation": 5}, "operation"),
    ({"operation": "x" * 256}, "operation"),
    ({"operation": "a\nb"}, "operation"),
    ({"duration_ms": -0.5}, "duration_ms"),
    ({"duration_ms": math.nan}, "duration_ms"),
    ({"duration_ms": math.inf}, "duration_ms"),
    ({"duration_ms": 10**400}, "duration_ms"),
    ({"duration_ms": True}, "duration_ms"),
    ({"duration_ms": "5"}, "duration_ms"),
    ({"duration_ms": None}, "duration_ms"),
    ({"success": "yes"}, "success"),
    ({"success": 1}, "success"),
    ({"error": 5}, "error"),
    ({"error": "a\x00b"}, "error"),
    ({"error": "x" * 10_001}, "error"),
    ({"extra_data": {1: "a"}}, "extra_data"),
    ({"extra_data": {"a": {1, 2}}}, "extra_data"),
    ({"extra_data": [math.nan]}, "extra_data"),
]


def test_bad_input_is_a_validation_error_and_nothing_is_written(store: Arquivo) -> None:
    for override, field in BAD_RECORDS:
        arguments: dict[str, Any] = {"operation": "op", "duration_ms": 1.0, **override}
        operation, duration = arguments.pop("operation"), arguments.pop("duration_ms")
        with pytest.raises(ValidationError, match=field) as info:
            store.metrics.record(operation, duration, **arguments)
        assert info.value.hint, override
    reads: list[tuple[Any, str]] = [
        (lambda: store.metrics.list(limit=0), "limit"),
        (lambda: store.metrics.list(limit=True), "limit"),
        (lambda: store.metrics.list(since="yesterday"), "since"),
        (lambda: store.metrics.list(until=0), "until"),
        (lambda: store.metrics.list(since=T0, until=T0 - timedelta(seconds=1)), "since"),
        (lambda: store.metrics.summary(""), "operation"),
        (lambda: store.metrics.timeseries(None), "operation"),  # type: ignore[arg-type]
        (lambda: store.metrics.delete_before("2020-01-01"), "cutoff"),
        (lambda: store.metrics.timer(""), "operation"),
        (lambda: store.metrics.timer("op", model=object()), "extra_data"),
    ]
    for bucket in ("1x", "0s", "1.5h", "h", "-1h", "99999d", "", 60, timedelta(milliseconds=500)):
        reads.append((lambda b=bucket: store.metrics.timeseries("op", bucket=b), "bucket"))
    for call, field in reads:
        with pytest.raises(ValidationError, match=field):
            call()
    assert count_rows(store) == 0


def test_duration_accepts_ints_and_normalises_negative_zero(store: Arquivo) -> None:
    assert store.metrics.record("op", 7).duration_ms == 7.0
    zero = store.metrics.record("op", -0.0)
    assert math.copysign(1.0, zero.duration_ms) == 1.0
    assert [r.duration_ms for r in store.metrics.list()] == [0.0, 7.0]


def test_a_record_inside_a_transaction_rolls_back_with_it(store: Arquivo) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.metrics.record("op", 1.0)
        raise RuntimeError("undo")
    assert count_rows(store) == 0


def test_timer_as_context_manager_and_decorator(store: Arquivo) -> None:
    with store.metrics.timer("block", model="m1") as timer:
        time.sleep(0.02)
    assert timer.recorded is not None
    assert timer.recorded.success
    assert timer.recorded.error is None
    assert timer.recorded.extra_data == {"model": "m1"}
    assert 20.0 <= timer.recorded.duration_ms < 5000

    with pytest.raises(KeyError), store.metrics.timer("block"):
        raise KeyError("missing")

    @store.metrics.timer("double")
    def double(x: int) -> int:
        """Doubles."""
        if x < 0:
            raise ValueError(f"negative: {x}")
        return 2 * x

    assert (double.__name__, double.__doc__) == ("double", "Doubles.")
    assert double(3) == 6
    with pytest.raises(ValueError, match="negative"):
        double(-1)

    records = store.metrics.list()
    assert [(r.operation, r.success, r.error) for r in records] == [
        ("double", False, "ValueError: negative: -1"),
        ("double", True, None),
        ("block", False, "KeyError: 'missing'"),
        ("block", True, None),
    ]


def test_timer_with_async_code(store: Arquivo) -> None:
    @store.metrics.timer("fetch", source="web")
    async def fetch(delay: float) -> str:
        await asyncio.sleep(delay)
        if delay > 0.5:
            raise TimeoutError("too slow")
        return "page"

    async def main() -> float:
        async with store.metrics.timer("turn") as timer:
            assert await fetch(0.01) == "page"
            with pytest.raises(TimeoutError):
                await fetch(0.6)
        assert timer.recorded is not None
        return timer.recorded.duration_ms

    turn_ms = asyncio.run(main())
    records = {(r.operation, r.success): r for r in store.metrics.list()}
    assert set(records) == {("fetch", True), ("fetch", False), ("turn", True)}
    assert records["fetch", False].error == "TimeoutError: too slow"
    assert records["fetch", True].extra_data == {"source": "web"}
    assert 600 <= records["fetch", False].duration_ms <= turn_ms


def test_a_failed_recording_never_masks_the_callers_exception(store: Arquivo) -> None:
    timer = store.metrics.timer("op")
    store.close()  # from now on every write fails with an ArquivoError
    with pytest.raises(ValueError, match="mine") as info, timer:
        raise ValueError("mine")
    assert any("could not record the metric 'op'" in note for note in info.value.__notes__)
    with pytest.raises(ArquivoError, match="closed"), timer:
        pass


def _check_stats(store: Arquivo, data: dict[str, list[tuple[float, bool]]], **kwargs: Any) -> None:
    stats = store.metrics.summary(**kwargs)
    assert list(stats) == sorted(data)
    for operation, rows in data.items():
        values = [d for d, _ in rows]
        errors = sum(1 for _, ok in rows if not ok)
        s = stats[operation]
        assert (s.operation, s.count, s.errors) == (operation, len(values), errors)
        assert s.error_rate == errors / len(values)
        assert (s.min_ms, s.max_ms) == (min(values), max(values))
        assert s.avg_ms == pytest.approx(statistics.fmean(values), rel=1e-12)
        # Exact: the same bits as the reference (and as PostgreSQL's percentile_cont).
        got = (s.p50_ms, s.p95_ms, s.p99_ms)
        assert got == tuple(reference_percentile(values, p) for p in (0.5, 0.95, 0.99))
        if len(values) > 1:  # a second, unrelated oracle, up to rounding
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            assert got == pytest.approx((cuts[49], cuts[94], cuts[98]), rel=1e-12, abs=1e-12)


def test_summary_is_exact_against_an_independent_computation(store: Arquivo) -> None:
    rng = random.Random(7)
    data: dict[str, list[tuple[float, bool]]] = {
        "one": [(42.125, False)],
        "two": [(10.0, True), (0.1, True)],
        "ties": [(5.0, True), (5.0, False), (5.0, True), (1.0, True), (9.0, True), (5.0, True)],
        "decimals": [(v, True) for v in (0.1, 0.2, 0.3, 0.7, 1e-9, 123456.789)],
        "many": [(rng.lognormvariate(3, 1), rng.random() > 0.1) for _ in range(301)],
    }
    for operation, rows in data.items():
        for duration, ok in rows:
            store.metrics.record(operation, duration, success=ok)
    _check_stats(store, data)
    _check_stats(store, {"ties": data["ties"]}, operation="ties")
    assert store.metrics.summary("absent") == {}
    assert store.metrics.summary(since=datetime.now(UTC) + timedelta(hours=1)) == {}


def test_summary_time_range(store: Arquivo) -> None:
    rows = [
        (op, float(i * 7 % 11), i % 3 != 0, T0 + timedelta(minutes=i))
        for i in range(30)
        for op in ("a", "b")
    ]
    insert_at(store, rows)
    since, until = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    expected: dict[str, list[tuple[float, bool]]] = {}
    for op, d, ok, at in rows:
        if since <= at < until:
            expected.setdefault(op, []).append((d, ok))
    _check_stats(store, expected, since=since, until=until)
    assert store.metrics.summary("a", until=T0) == {}


def test_timeseries_buckets_are_aligned_to_the_epoch(store: Arquivo) -> None:
    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    insert_at(
        store,
        [
            ("op", 10.0, True, at + timedelta(seconds=5)),
            ("op", 30.0, False, at + timedelta(seconds=59, microseconds=999_999)),
            ("op", 20.0, True, at + timedelta(minutes=1)),
            ("op", 40.0, True, at + timedelta(minutes=59, seconds=59)),
            ("op", 50.0, True, at + timedelta(hours=1)),
            ("op", 60.0, True, (at + timedelta(hours=3)).astimezone(timezone(timedelta(hours=2)))),
            ("other", 99.0, True, at),
        ],
    )
    hourly = store.metrics.timeseries("op")
    assert [(b.start, b.count, b.errors, b.avg_ms, b.max_ms) for b in hourly] == [
        (at, 4, 1, 25.0, 40.0),
        (at + timedelta(hours=1), 1, 0, 50.0, 50.0),
        (at + timedelta(hours=3), 1, 0, 60.0, 60.0),
    ]
    per_minute = store.metrics.timeseries("op", bucket="1m", until=at + timedelta(hours=1))
    assert [(b.start, b.count) for b in per_minute] == [
        (at, 2),
        (at + timedelta(minutes=1), 1),
        (at + timedelta(minutes=59), 1),
    ]
    # An odd width: buckets start at multiples of it since 1970-01-01, not at the data.
    seven = 7 * 60
    first = datetime.fromtimestamp((at + timedelta(seconds=5)).timestamp() // seven * seven, UTC)
    by_seven = store.metrics.timeseries("op", bucket=timedelta(minutes=7), since=at)
    assert (by_seven[0].start, by_seven[0].count) == (first, 2)
    assert sum(b.count for b in by_seven) == 6
    daily = store.metrics.timeseries("op", bucket="1d", since=at + timedelta(minutes=1))
    assert [(b.start, b.count) for b in daily] == [(datetime(2026, 3, 1, tzinfo=UTC), 4)]
    assert store.metrics.timeseries("absent") == []


def test_delete_before(store: Arquivo) -> None:
    insert_at(store, [("op", 1.0, True, T0 + timedelta(days=i)) for i in range(4)])
    assert store.metrics.delete_before(T0 + timedelta(days=2)) == 2
    assert [r.created_at for r in store.metrics.list()] == [
        T0 + timedelta(days=3),
        T0 + timedelta(days=2),
    ]


def run_cli(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ARQUIVO), "--url", backend.url, "metrics", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
        timeout=120,
    )


def test_cli(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        store.metrics.record("llm", 100.0, extra_data={"model": "m"})
        store.metrics.record("llm", 300.0, success=False, error="RateLimit: [429]")
        store.metrics.record("tool", 5.0)
        expected = store.metrics.summary()

    result = run_cli(backend, "summary", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {name: asdict(s) for name, s in expected.items()}

    listed = run_cli(backend, "list", "--operation", "llm", "--limit", "1", "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert (record["operation"], record["error"]) == ("llm", "RateLimit: [429]")
    assert datetime.fromisoformat(record["created_at"]).tzinfo is not None

    series = run_cli(backend, "timeseries", "llm", "--bucket", "5m", "--since", "1h", "--json")
    assert series.returncode == 0, series.stderr
    (bucket,) = json.loads(series.stdout)
    assert (bucket["count"], bucket["errors"], bucket["max_ms"]) == (2, 1, 300.0)

    table = run_cli(backend, "summary", "--since", "7d")
    assert table.returncode == 0, table.stderr
    assert "llm" in table.stdout
    assert "200.0" in table.stdout  # the p50 of 100 and 300

    bad = run_cli(backend, "summary", "--since", "yesterday")
    assert bad.returncode == 1
    assert "--since" in bad.stderr
    assert "hint:" in bad.stderr
