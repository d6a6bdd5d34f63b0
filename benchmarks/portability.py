"""Export and import: rows per second and peak memory, at two sizes, against a naive baseline.

::

    .venv/bin/python benchmarks/portability.py                     # SQLite, 100k and 400k rows
    .venv/bin/python benchmarks/portability.py --postgres auto     # + the embedded PostgreSQL
    .venv/bin/python benchmarks/portability.py --quick --json      # tiny sizes (CI smoke test)

For each database and size, a store is filled with conversation messages (80%) and
metrics (20%); then, each in a fresh process so its peak memory can be read:

- ``export``: ``arquivo.portability.export_data`` to a ``.jsonl`` file;
- ``import``: ``import_data`` of that file into an empty database (validate into a
  scratch file, then write, a transaction per batch);
- ``import --atomic``: the same with ``atomic=True`` (one pass, one transaction);
- ``naive export``: what one writes by hand: the driver's ``fetchall()`` of each table,
  ``json.dumps`` per row (no types handled: timestamps as text via ``default=str``);
- ``naive import``: ``json.loads`` per line and the driver's ``executemany``.

Figures: rows/s (target >= 50,000 for export and import), rows per CPU-second of the
measured process (what the job costs, whatever else the machine is running; on SQLite it
includes the database's own work, on PostgreSQL the server's work is not in it), and the
peak RSS growth of the process over its start (target: about the same at both sizes,
i.e. memory stays flat). The ratio columns are arquivo / naive. Each job runs
``--rounds`` times (default 3), the rounds interleaving the jobs; speeds are the median
of the rounds and the peak is the highest.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing as mp
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.models import ConversationHistory, SystemMetric
from arquivo.portability import export_data, import_data, schema_tables

ROOT = Path(__file__).resolve().parents[1]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fill(url: str, rows: int) -> None:
    """``rows`` rows: 80% messages (about 200 characters each), 20% metrics."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    messages = rows * 4 // 5
    with Arquivo.open(url) as store, store.transaction() as session:
        for first in range(0, messages, 10_000):
            session.execute(
                sa.insert(ConversationHistory),
                [
                    {
                        "user_id": f"user{i % 50}",
                        "session_id": f"s{i % 997}",
                        "role": "user" if i % 2 else "assistant",
                        "content": f"message {i}: " + "lorem ipsum dolor sit amet " * 7,
                        "model": "qwen2.5",
                        "extra_data": {"tokens": i % 500, "cost": i / 1e6},
                        "created_at": start + timedelta(seconds=i),
                    }
                    for i in range(first, min(first + 10_000, messages))
                ],
            )
        for first in range(0, rows - messages, 10_000):
            session.execute(
                sa.insert(SystemMetric),
                [
                    {
                        "operation": f"op{i % 7}",
                        "duration_ms": i / 3,
                        "success": i % 10 != 0,
                        "created_at": start + timedelta(seconds=i),
                    }
                    for i in range(first, min(first + 10_000, rows - messages))
                ],
            )


# --- the measured jobs (each runs in a fresh process) --------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """The process's peak RSS since the last reset (Linux's VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_peak() -> bool:
    """Start the kernel's peak-RSS count afresh (Linux >= 4.0); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        _peak_mb()
    except OSError:
        return False
    return True


class Meter:
    """Wall time, CPU time and peak RSS growth of the block.

    The peak is the kernel's own high-water mark, reset on entry: nothing runs beside
    the measured code. (An RSS-sampling thread waking every 5 ms took the GIL from the
    job thousands of times a run, and cost it 10-15% of its speed.) Where the mark
    cannot be reset, RSS is sampled every 5 ms instead.

    Processes the job forks (the import checking a large file in ranges) count too:
    their CPU time is added, and so is their peak RSS beyond the job's RSS at the start
    (an over-count: a fork starts with its parent's pages, grown a little by then).
    """

    def __enter__(self) -> Meter:
        self.base = self.peak = _rss_mb()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if not _reset_peak():
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self.started = time.perf_counter()
        self.cpu_started = time.process_time() + _children_cpu()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu = time.process_time() + _children_cpu() - self.cpu_started
        children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if self._thread is None:
            self.peak = max(self.peak, _peak_mb())
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        if children_peak > self.base:
            self.peak += children_peak - self.base


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def job_export(url: str, path: str) -> tuple[int, Meter]:
    with Arquivo.open(url) as store, Meter() as meter:
        rows = export_data(store, path).total_rows
    return rows, meter


def job_import(url: str, path: str) -> tuple[int, Meter]:
    with Arquivo.open(url) as store, Meter() as meter:
        rows = sum(import_data(store, path).inserted.values())
    return rows, meter


def job_import_atomic(url: str, path: str) -> tuple[int, Meter]:
    with Arquivo.open(url) as store, Meter() as meter:
        rows = sum(import_data(store, path, atomic=True).inserted.values())
    return rows, meter


def _raw(url: str) -> Any:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite3.connect(parsed.database or ":memory:")
    import psycopg

    query = dict(parsed.query)
    return psycopg.connect(
        dbname=parsed.database,
        user=parsed.username,
        host=query.get("host"),
        port=query.get("port") or parsed.port,
    )


def job_naive_export(url: str, path: str) -> tuple[int, Meter]:
    connection = _raw(url)
    count = 0
    with Meter() as meter, open(path, "w", encoding="utf-8") as out:
        for table in schema_tables():
            cursor = connection.cursor()
            cursor.execute(f"SELECT * FROM {table.name}")
            names = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                line = {"table": table.name, "row": dict(zip(names, row, strict=True))}
                out.write(json.dumps(line, default=str) + "\n")
                count += 1
    connection.close()
    return count, meter


def job_naive_import(url: str, path: str) -> tuple[int, Meter]:
    with Arquivo.open(url):
        pass  # the schema
    connection = _raw(url)
    mark = "?" if isinstance(connection, sqlite3.Connection) else "%s"
    count = 0
    batch: list[tuple[Any, ...]] = []
    statement = ""

    def flush() -> None:
        if batch:
            connection.cursor().executemany(statement, batch)
            batch.clear()

    with Meter() as meter, open(path, encoding="utf-8") as lines:
        for line in lines:
            value = json.loads(line)
            row = value["row"]
            for key, item in row.items():
                if isinstance(item, (dict, list)):
                    row[key] = json.dumps(item)
            text = (
                f"INSERT INTO {value['table']} ({', '.join(row)}) "
                f"VALUES ({', '.join(mark for _ in row)})"
            )
            if text != statement or len(batch) >= 2_000:
                flush()
                statement = text
            batch.append(tuple(row.values()))
            count += 1
        flush()
        connection.commit()
    connection.close()
    return count, meter


JOBS: dict[str, Callable[[str, str], tuple[int, Meter]]] = {
    "export": job_export,
    "import": job_import,
    "import --atomic": job_import_atomic,
    "naive export": job_naive_export,
    "naive import": job_naive_import,
}


def _child(name: str, url: str, path: str, pipe: Any) -> None:
    rows, meter = JOBS[name](url, path)
    pipe.send((rows, meter.seconds, meter.cpu, meter.peak - meter.base))


def measure(name: str, url: str, path: Path) -> tuple[int, float, float, float]:
    """(rows, seconds, CPU seconds, peak RSS growth in MB) of one job in a fresh process."""
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(name, url, str(path), child))
    process.start()
    result: tuple[int, float, float, float] = parent.recv()
    process.join()
    return result


# --- databases ----------------------------------------------------------------------


@contextlib.contextmanager
def databases(postgres: str | None, folder: Path) -> Iterator[Callable[[str], str]]:
    """A factory of fresh database URLs: SQLite files, or databases on PostgreSQL."""
    if postgres is None:
        yield lambda name: f"sqlite:///{folder / (name + '.db')}"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    pg_server = importlib.import_module("pg_server")
    with contextlib.ExitStack() as stack:
        admin = postgres
        if postgres == "auto":
            admin = stack.enter_context(pg_server.embedded_postgres())
        yield lambda name: str(
            pg_server.create_database(admin, f"bench_{name}_{uuid.uuid4().hex[:6]}")
        )


def run(
    label: str, new_url: Callable[[str], str], sizes: list[int], folder: Path, rounds: int
) -> list[dict[str, Any]]:
    results = []
    for size in sizes:
        source = new_url(f"src{size}")
        log(f"[{label}] filling {size} rows")
        fill(source, size)
        path = folder / f"{label}-{size}.jsonl"
        naive_path = folder / f"{label}-{size}-naive.jsonl"
        # (job, the prefix of a new database to import into, or None: the source; file)
        jobs = (
            ("export", None, path),
            ("naive export", None, naive_path),
            ("import", "dst", path),
            ("import --atomic", "atomic", path),
            ("naive import", "naive", naive_path),
        )
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in jobs}
        # Rounds interleave the jobs, so a slow spell of the machine hits all of them;
        # each figure is the median of its rounds (imports get a new database each).
        for round_ in range(rounds):
            for name, prefix, file in jobs:
                url = source if prefix is None else new_url(f"{prefix}{size}r{round_}")
                rows, seconds, cpu, mb = measure(name, url, file)
                assert rows == size, (name, rows, size)
                runs[name].append((rows / seconds, rows / cpu, mb))
                log(
                    f"[{label}] {size:>9} rows {name:<15} {rows / seconds:>10,.0f} rows/s "
                    f"{rows / cpu:>10,.0f} rows/CPU-s  peak +{mb:6.1f} MB"
                )
        figures = {
            name: (
                statistics.median(r[0] for r in found),
                statistics.median(r[1] for r in found),
                max(r[2] for r in found),
            )
            for name, found in runs.items()
        }
        for step in ("export", "import", "import --atomic"):
            speed, cpu_speed, mb = figures[step]
            naive_speed, naive_cpu_speed, naive_mb = figures[f"naive {step.split()[0]}"]
            results.append(
                {
                    "name": f"{step} {label} {size} rows",
                    "rows_per_s": round(speed),
                    "naive_rows_per_s": round(naive_speed),
                    "speed_ratio": round(speed / naive_speed, 2),
                    "rows_per_cpu_s": round(cpu_speed),
                    "naive_rows_per_cpu_s": round(naive_cpu_speed),
                    "cpu_ratio": round(cpu_speed / naive_cpu_speed, 2),
                    "peak_mb": round(mb, 1),
                    "naive_peak_mb": round(naive_mb, 1),
                    "memory_ratio": round(mb / naive_mb, 2) if naive_mb > 0 else None,
                    "target_rows_per_s": 50_000,
                }
            )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description="arquivo's export/import figures")
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    p.add_argument("--rows", help="two sizes, e.g. 100000,400000")
    p.add_argument("--postgres", help="also run on this PostgreSQL URL ('auto': embedded)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--rounds", type=int, default=3, help="runs of each job (median; 1 if --quick)")
    args = p.parse_args()
    rounds = 1 if args.quick else max(1, args.rounds)
    sizes = [2_000, 8_000] if args.quick else [100_000, 400_000]
    if args.rows:
        sizes = [int(part) for part in args.rows.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="arquivo-bench-") as folder:
        with databases(None, Path(folder)) as new_url:
            results += run("sqlite", new_url, sizes, Path(folder), rounds)
        if args.postgres:
            try:
                with databases(args.postgres, Path(folder)) as new_url:
                    results += run("postgresql", new_url, sizes, Path(folder), rounds)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional: say why
                log(f"--postgres: skipped ({type(exc).__name__}: {exc})")
    print(
        f"{'figure':<38} {'rows/s':>9} {'naive':>9} {'ratio':>6} {'rows/CPU-s':>10} "
        f"{'naive':>9} {'ratio':>6} {'peak MB':>8} {'naive':>7} {'ratio':>6}"
    )
    for row in results:
        print(
            f"{row['name']:<38} {row['rows_per_s']:>9,} {row['naive_rows_per_s']:>9,} "
            f"{row['speed_ratio']:>6} {row['rows_per_cpu_s']:>10,} "
            f"{row['naive_rows_per_cpu_s']:>9,} {row['cpu_ratio']:>6} "
            f"{row['peak_mb']:>8} {row['naive_peak_mb']:>7} {row['memory_ratio']!s:>6}"
        )
    if args.json:
        print("\n" + json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
