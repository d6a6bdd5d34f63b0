"""Human-in-the-loop: request throughput, wait() wake-up latency across processes, pending().

::

    .venv/bin/python benchmarks/hitl.py                     # SQLite, full size
    .venv/bin/python benchmarks/hitl.py --postgres auto     # + the embedded PostgreSQL
    .venv/bin/python benchmarks/hitl.py --quick --json      # tiny sizes (CI smoke test)

H1 ``request()`` calls per second (one committed session + audit row each).
H2 decision-to-wake-up latency of ``wait()``: this process waits while a second process
   (spawned, with its own store) decides; measured from just before the decider calls
   ``approve()`` (so it includes that write and its commit) to ``wait()`` returning.
   Target p50 <= 20 ms on PostgreSQL, <= poll interval (50 ms) + 10 ms on SQLite.
H3 ``pending()`` with 100,000 closed and 1,000 pending sessions (median of 20 calls,
   all 1,000 rows returned); target < 10 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from embedded import postgres_url

from arquivo import Arquivo, HITLSession

ROOT = Path(__file__).resolve().parents[1]
POLL_INTERVAL = 0.05


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def decider(url: str, conn: Any) -> None:
    """Child process: for each id received, pause a little, approve it, report the time."""
    with Arquivo.open(url) as store:
        conn.send("ready")
        while (session_id := conn.recv()) is not None:
            time.sleep(0.03)  # let the parent get into wait()
            started = time.time()
            store.hitl.approve(session_id, actor="bench")
            conn.send(started)


def h1(store: Arquivo, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        store.hitl.request("bench-wf", f"step-{i}", {"tool": "search", "i": i})
    return n / (time.perf_counter() - started)


def h2(store: Arquivo, url: str, rounds: int) -> list[float]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=decider, args=(url, child))
    process.start()
    latencies = []
    try:
        assert parent.recv() == "ready"
        for i in range(rounds):
            made = store.hitl.request("bench-wf", f"wait-{i}", None)
            parent.send(made.id)
            result = store.hitl.wait(made.id, timeout=30, poll_interval=POLL_INTERVAL)
            woke = time.time()
            decided: float = parent.recv()
            assert result.status == "approved"
            latencies.append((woke - decided) * 1000)
    finally:
        parent.send(None)
        process.join(timeout=30)
    return latencies


def h3(store: Arquivo, closed: int, pending: int) -> float:
    table = cast(sa.Table, HITLSession.__table__)
    now = datetime.now(UTC)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "workflow_id": "bulk",
            "step_id": f"s{i}",
            "status": "pending" if i < pending else "approved",
            "request_data": {"i": i},
            "created_at": now - timedelta(seconds=closed + pending - i),
            "updated_at": now,
        }
        for i in range(closed + pending)
    ]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(sa.insert(table), rows[start : start + 5000])
        with contextlib.suppress(sa.exc.DBAPIError):
            connection.exec_driver_sql("ANALYZE")
    times = []
    for _ in range(20):
        started = time.perf_counter()
        found = store.hitl.pending(limit=pending)
        times.append((time.perf_counter() - started) * 1000)
        assert len(found) == pending
    return statistics.median(times)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(url: str, label: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with Arquivo.open(url) as store:
        log(f"{label} H1...")
        results.append(
            {
                "name": f"{label} H1 requests",
                "value": h1(store, args.requests),
                "unit": "req/s",
                "target": "-",
                "ok": None,
            }
        )
        log(f"{label} H2...")
        latencies = h2(store, url, args.rounds)
        limit = 20.0 if label == "postgresql" else POLL_INTERVAL * 1000 + 10
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        results.append(
            {
                "name": f"{label} H2 wake p50",
                "value": p50,
                "unit": "ms",
                "target": f"<= {limit:g} ms",
                "ok": p50 <= limit,
            }
        )
        results.append(
            {"name": f"{label} H2 wake p99", "value": p99, "unit": "ms", "target": "-", "ok": None}
        )
        log(f"{label} H3...")
        median = h3(store, args.closed, args.pending)
        results.append(
            {
                "name": f"{label} H3 pending()",
                "value": median,
                "unit": "ms",
                "target": "< 10 ms",
                "ok": median < 10,
            }
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="arquivo's HITL figures")
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    p.add_argument("--postgres", help="also run on this PostgreSQL URL ('auto': embedded)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    args.requests = 100 if args.quick else 2000
    args.rounds = 5 if args.quick else 100
    args.closed = 2000 if args.quick else 100_000
    args.pending = 100 if args.quick else 1000
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        results += run(f"sqlite:///{Path(folder) / 'hitl.db'}", "sqlite", args)
    with postgres_url(args.postgres, "arquivo_hitl") as url:
        if url:
            results += run(url, "postgresql", args)
    for row in results:
        verdict = {True: "PASS", False: "FAIL", None: ""}[row["ok"]]
        print(
            f"{row['name']:<28} {row['value']:>12,.2f} {row['unit']:<6} "
            f"{row['target']:<12} {verdict}"
        )
    if args.json:
        print("\n" + json.dumps({"results": results}, indent=2))
    return 1 if args.check and any(row["ok"] is False for row in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
