"""Conversations and metrics: arquivo against the raw driver doing the same work, side by side.

Every workload runs on the stdlib ``sqlite3`` in its best configuration and on arquivo, in
one process, and the table shows both, their ratio (arquivo / raw) and the target::

    .venv/bin/python benchmarks/conversations.py            # full size, a few minutes
    .venv/bin/python benchmarks/conversations.py --quick    # tiny sizes, CI smoke test

benchmarks/README.md describes the workloads and the flags.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import operator
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from embedded import postgres_url
from sqlalchemy import make_url

import arquivo
from arquivo import Arquivo, Settings

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    import psycopg

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("W1", "W2", "W3", "W4", "M1")
ROUNDS = 6  # W1/W2 alternate raw and arquivo this many times
PER_SESSION = 100  # messages in every session, in every workload
CONTENT = ("The quick brown fox jumps over the lazy dog, then asks the agent why. " * 4)[:256]
ROLES = ("user", "assistant")
RAW_TABLE = "bench_messages"
CONV_COLUMNS = ("user_id", "session_id", "role", "content", "created_at")
RAW_INSERT = f"INSERT INTO {RAW_TABLE} (user_id, session_id, role, content) VALUES (?, ?, ?, ?)"
RAW_HISTORY = (
    "SELECT id, user_id, session_id, role, content, model, workspace_path, extra_data, "
    f"created_at FROM {RAW_TABLE} WHERE session_id = ? ORDER BY id DESC LIMIT 20"
)
RAW_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} (id {{pk}}, user_id TEXT NOT NULL, "
    "session_id TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, model TEXT, "
    "workspace_path TEXT, extra_data {json}, created_at {ts} NOT NULL DEFAULT {now})"
)
RAW_INDEX = f"CREATE INDEX IF NOT EXISTS ix_bench_session ON {RAW_TABLE} (session_id, id)"
OPERATIONS = [f"agent.op_{n:02d}" for n in range(20)]
W4_WORKERS = 4
# side, appended, seconds, "locked" errors, other errors, the first error
W4Outcome = tuple[str, int, float, int, int, str]


def log(text: str) -> None:
    # Progress goes to stderr so that stdout holds only the table (and the JSON).
    print(text, file=sys.stderr, flush=True)


class Target(Protocol):
    """The calls the workloads make, on whichever side is being measured."""

    def append(self, session: str, role: str, content: str) -> None: ...
    def append_many(self, session: str, messages: list[dict[str, str]]) -> None: ...
    def history(self, session: str) -> Sequence[object]: ...
    def close(self) -> None: ...


class RawSqlite:
    """The stdlib driver at its best: WAL, one reused prepared INSERT, BEGIN IMMEDIATE."""

    def __init__(self, path: Path, synchronous: str) -> None:
        # isolation_level=None: the driver sends no BEGIN of its own. timeout is the
        # busy_timeout, so a writer queues for the lock instead of failing at once.
        self.con = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self.con.execute("PRAGMA journal_mode = WAL")
        self.con.execute(f"PRAGMA synchronous = {synchronous}")
        now = "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"
        self.con.execute(RAW_DDL.format(pk="INTEGER PRIMARY KEY", json="TEXT", ts="TEXT", now=now))
        self.con.execute(RAW_INDEX)
        # sqlite3 caches prepared statements by SQL text: one INSERT, prepared once.
        self.cur = self.con.cursor()

    def _write(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.cur.execute("BEGIN IMMEDIATE")
        try:
            if len(rows) == 1:
                self.cur.execute(RAW_INSERT, rows[0])
            else:
                self.cur.executemany(RAW_INSERT, rows)
            self.cur.execute("COMMIT")
        except BaseException:
            if self.con.in_transaction:
                self.cur.execute("ROLLBACK")
            raise

    def append(self, session: str, role: str, content: str) -> None:
        self._write([("raw", session, role, content)])

    def append_many(self, session: str, messages: list[dict[str, str]]) -> None:
        self._write([("raw", session, m["role"], m["content"]) for m in messages])

    def history(self, session: str) -> Sequence[object]:
        return self.cur.execute(RAW_HISTORY, (session,)).fetchall()[::-1]

    def close(self) -> None:
        self.con.close()


class RawPostgres:
    """psycopg at its best: server-side prepared statements, one transaction per write."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self.con = con
        con.execute(
            RAW_DDL.format(pk="bigserial PRIMARY KEY", json="jsonb", ts="timestamptz", now="now()")
        )
        con.execute(RAW_INDEX)
        self.insert, self.select = RAW_INSERT.replace("?", "%s"), RAW_HISTORY.replace("?", "%s")

    def append(self, session: str, role: str, content: str) -> None:
        with self.con.transaction():
            self.con.execute(self.insert, ("raw", session, role, content), prepare=True)

    def append_many(self, session: str, messages: list[dict[str, str]]) -> None:
        rows = [("raw", session, m["role"], m["content"]) for m in messages]
        with self.con.transaction(), self.con.cursor() as cur:
            cur.executemany(self.insert, rows)

    def history(self, session: str) -> Sequence[object]:
        return self.con.execute(self.select, (session,), prepare=True).fetchall()[::-1]

    def close(self) -> None:
        self.con.close()


class ArquivoTarget:
    def __init__(self, store: Arquivo, user_id: str) -> None:
        self.store, self.user_id = store, user_id

    def append(self, session: str, role: str, content: str) -> None:
        self.store.conversations.append(self.user_id, session, role, content)

    def append_many(self, session: str, messages: list[dict[str, str]]) -> None:
        self.store.conversations.append_many(self.user_id, session, messages)

    def history(self, session: str) -> Sequence[object]:
        return self.store.conversations.history(self.user_id, session, limit=20)

    def close(self) -> None:
        self.store.close()


class Backend(Protocol):
    """Where the databases of each workload live: ``name`` picks a fresh pair (raw, arquivo)."""

    label: str

    def raw(self, name: str) -> Target: ...
    def arquivo(self, name: str) -> Arquivo: ...
    def bulk(self, name: str, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None: ...


class SqliteBackend:
    label = ""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.folder, self.settings = folder, settings

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.db"

    def raw(self, name: str) -> RawSqlite:
        return RawSqlite(self.path(f"{name}-raw"), self.settings.sqlite_synchronous)

    def arquivo(self, name: str) -> Arquivo:
        return Arquivo.open(f"sqlite:///{self.path(name)}", settings=self.settings)

    def bulk(self, name: str, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None:
        if table == RAW_TABLE:
            name = f"{name}-raw"
        con = sqlite3.connect(self.path(name), isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" * len(columns))
            con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            con.execute("COMMIT")
            # Readers then find the pages in the database file, as in a database that has
            # been running a while, rather than in a long WAL.
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()


class PostgresBackend:
    """One schema per workload (via search_path) in the given database, dropped at the end."""

    label = "PG "

    def __init__(self, url: str, settings: Settings, run: str) -> None:
        parts = urlsplit(url)  # libpq knows "postgresql://", not "postgresql+psycopg://"
        self.conninfo = urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))
        self.url, self.run = url, run
        # Arquivo's own libpq "options" (a statement_timeout) would replace the search_path.
        self.settings = settings.model_copy(update={"statement_timeout_ms": 0})
        self.schemas: list[str] = []

    def _schema(self, name: str) -> str:
        schema = f"bench_{self.run}_{name}"
        if schema not in self.schemas:
            with self._connect() as con:
                con.execute(f"CREATE SCHEMA {schema}")
            self.schemas.append(schema)
        return schema

    def _connect(self, name: str | None = None) -> psycopg.Connection[Any]:
        import psycopg

        con = psycopg.connect(self.conninfo, autocommit=True)
        if name is not None:
            con.execute(f"SET search_path TO {self._schema(name)}")
        return con

    def raw(self, name: str) -> RawPostgres:
        return RawPostgres(self._connect(name))

    def arquivo(self, name: str) -> Arquivo:
        options = {"options": f"-csearch_path={self._schema(name)}"}
        return Arquivo.open(make_url(self.url).update_query_dict(options), settings=self.settings)

    def bulk(self, name: str, table: str, columns: Sequence[str], rows: Iterable[Any]) -> None:
        with self._connect(name) as con, con.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            # Autovacuum analyzes a table grown this much within a minute in production;
            # timing the planner before that would measure a passing state.
            cur.execute(f"ANALYZE {table}")

    def cleanup(self) -> None:
        with self._connect() as con:
            for schema in self.schemas:
                con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@dataclass
class Row:
    name: str
    unit: str
    raw: float | None
    arquivo: float | None
    ratio: float | None
    target: str
    ok: bool | None


CHECKS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


def judged(name: str, unit: str, raw: float | None, arq: float, target: str) -> Row:
    """A row checked against ``target``, e.g. "ratio >= 0.5" or "arquivo < 2"."""
    on, op, limit = target.split()
    ratio = arq / raw if on == "ratio" and raw else None
    ok = CHECKS[op](arq if ratio is None else ratio, float(limit))
    return Row(name, unit, raw, arq, ratio, target, ok)


def rates(
    backend: Backend, name: str, user: str, work: Callable[[Target, int], int], calls: int
) -> tuple[float, float]:
    """Messages per second of ``work(target, calls)`` on a fresh raw and arquivo database.

    The calls run in rounds that alternate between the two sides (raw first, then
    arquivo first), so drift in the machine's speed during the run hits both alike.
    """
    raw = backend.raw(name)
    arq = ArquivoTarget(backend.arquivo(name), user)
    try:
        targets = {"raw": raw, "arquivo": arq}
        done = {"raw": 0, "arquivo": 0}
        spent = {"raw": 0.0, "arquivo": 0.0}
        for target in targets.values():
            work(target, 1)  # untimed: the first call pays one-off costs (connect, prepare)
        rounds = max(1, min(ROUNDS, calls))
        for r in range(rounds):
            share = calls // rounds + (1 if r < calls % rounds else 0)
            for side in ("raw", "arquivo") if r % 2 == 0 else ("arquivo", "raw"):
                start = time.perf_counter()
                done[side] += work(targets[side], share)
                spent[side] += time.perf_counter() - start
    finally:
        raw.close()
        arq.close()
    return done["raw"] / spent["raw"], done["arquivo"] / spent["arquivo"]


def w1(backend: Backend, n_sessions: int, user: str) -> list[Row]:
    # Round-robin over the sessions, as concurrent chats interleave in a real table.
    order = [(f"w1-{s}", ROLES[m % 2]) for m in range(PER_SESSION) for s in range(n_sessions)]

    position = {"raw": 0, "arquivo": 0}

    def work(target: Target, calls: int) -> int:
        # Each side walks the same order across rounds.
        side = "raw" if isinstance(target, (RawSqlite, RawPostgres)) else "arquivo"
        start = position[side]
        for session, role in order[start : start + calls]:
            target.append(session, role, CONTENT)
        position[side] = start + calls
        return calls

    name = f"{backend.label}W1 append, 1 msg/txn, {len(order):,} msgs"
    found = rates(backend, "w1", user, work, len(order))
    return [judged(name, "msg/s", *found, "ratio >= 0.5")]


def w2(backend: Backend, n_calls: int, user: str) -> list[Row]:
    batch = [{"role": ROLES[m % 2], "content": CONTENT} for m in range(PER_SESSION)]

    def work(target: Target, calls: int) -> int:
        for c in range(calls):
            target.append_many(f"w2-{c}", batch)
        return calls * len(batch)

    name = f"{backend.label}W2 append_many x{PER_SESSION}, {n_calls:,} calls"
    found = rates(backend, "w2", user, work, n_calls)
    return [judged(name, "msg/s", *found, "ratio >= 0.5")]


def conversation_rows(user: str, n_sessions: int, start: datetime) -> Iterator[tuple[str, ...]]:
    # Sessions interleaved as in a live table (a session's rows spread over many pages).
    for i in range(n_sessions * PER_SESSION):
        created = (start + timedelta(milliseconds=i)).isoformat(" ", "microseconds")
        yield (user, f"w3-{i % n_sessions}", ROLES[i // n_sessions % 2], CONTENT, created)


def history_medians(
    targets: Sequence[tuple[Target, int]], calls: int, rng: random.Random
) -> list[float]:
    """Median µs of ``history`` on each target, on random sessions of its database."""
    times: list[list[float]] = [[] for _ in targets]
    for k in range(calls // 10 + calls):  # the first tenth warms caches up, untimed
        # Taking turns spreads any drift in machine load over every database equally.
        for (target, n_sessions), spent in zip(targets, times, strict=True):
            session = f"w3-{rng.randrange(n_sessions)}"
            start = time.perf_counter()
            got = target.history(session)
            elapsed = time.perf_counter() - start
            if len(got) != 20:
                raise RuntimeError(f"history({session!r}) returned {len(got)} messages, not 20")
            if k >= calls // 10:
                spent.append(elapsed)
    return [statistics.median(spent) * 1e6 for spent in times]


def w3(
    backend: Backend, sizes: tuple[int, int], calls: int, user: str, rng: random.Random
) -> list[Row]:
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=60)
    targets: list[tuple[Target, int]] = []
    try:
        for n_sessions in sizes:
            name = f"w3_{n_sessions}"
            # Opening first: arquivo creates its schema, the raw side its table.
            targets += [
                (backend.raw(name), n_sessions),
                (ArquivoTarget(backend.arquivo(name), user), n_sessions),
            ]
            log(f"  loading {n_sessions * PER_SESSION:,} rows into each database")
            for table in (RAW_TABLE, "conversation_history"):
                backend.bulk(name, table, CONV_COLUMNS, conversation_rows(user, n_sessions, start))
        raw_small, arq_small, raw_large, arq_large = history_medians(targets, calls, rng)
    finally:
        for target, _ in targets:
            target.close()
    small, large = (f"{n * PER_SESSION:,}" for n in sizes)
    label = f"{backend.label}W3 history(20)"
    return [
        judged(f"{label}, {small} msgs", "µs", raw_small, arq_small, "ratio <= 2.5"),
        judged(f"{label}, {large} msgs", "µs", raw_large, arq_large, "ratio <= 2.5"),
        judged(
            f"{label} median {large} / {small}",
            "x",
            raw_large / raw_small,
            arq_large / arq_small,
            "arquivo <= 1.5",
        ),
    ]


def w4_worker(
    paths: dict[str, str],
    synchronous: str,
    seconds: float,
    worker: int,
    user: str,
    barrier: Barrier,
    results: Queue[W4Outcome],
) -> None:
    # One set of processes runs both sides in turn: spawning (and importing) costs seconds.
    # Two half-length phases per side, in the order raw, arquivo, arquivo, raw, so that
    # drift in the machine's speed during the run hits both sides alike.
    seconds /= 2
    for kind in ("raw", "arquivo", "arquivo", "raw"):
        path = paths[kind]
        appended = locked = other = 0
        elapsed, first_error = 0.0, ""
        try:
            target: Target
            if kind == "raw":
                target = RawSqlite(Path(path), synchronous)
            else:
                settings = Settings(sqlite_synchronous=synchronous)
                target = ArquivoTarget(Arquivo.open(f"sqlite:///{path}", settings=settings), user)
            barrier.wait(timeout=120)  # every worker has its store open: all start at once
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                try:
                    target.append(f"w4-{worker}-{appended % 100}", ROLES[appended % 2], CONTENT)
                    appended += 1
                except Exception as exc:  # noqa: BLE001 - counting these is the point of W4
                    locked += "locked" in str(exc)
                    other += "locked" not in str(exc)
                    first_error = first_error or repr(exc)
            elapsed = time.perf_counter() - start
            target.close()
        except Exception as exc:  # noqa: BLE001 - set-up failures go to the parent to print
            barrier.abort()
            other, first_error = other + 1, repr(exc)
        results.put((kind, appended, elapsed, locked, other, first_error))


def w4(folder: Path, settings: Settings, seconds: float, user: str) -> list[Row]:
    paths = {"raw": folder / "w4-raw.db", "arquivo": folder / "w4.db"}
    # Create both schemas first, so that the workers race on appends, not on migrating.
    RawSqlite(paths["raw"], settings.sqlite_synchronous).close()
    Arquivo.open(f"sqlite:///{paths['arquivo']}", settings=settings).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(W4_WORKERS)
    results: Queue[W4Outcome] = ctx.Queue()
    args = ({k: str(v) for k, v in paths.items()}, settings.sqlite_synchronous, seconds)
    procs = [
        ctx.Process(target=w4_worker, args=(*args, n, user, barrier, results))
        for n in range(W4_WORKERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=2 * seconds + 300) for _ in range(4 * W4_WORKERS)]
    for proc in procs:
        proc.join()
    for kind, *_, error in outcomes:
        if error:
            log(f"  {kind} worker error: {error}")
    found: dict[str, tuple[float, int, int]] = {}
    for kind in paths:
        mine = [o for o in outcomes if o[0] == kind]
        # Each phase lasts as long as its slowest worker; a side's time is its two phases.
        phase_time = 2 * max(o[2] for o in mine) or 1.0
        rate = sum(o[1] for o in mine) / phase_time
        found[kind] = (rate, sum(o[3] for o in mine), sum(o[4] for o in mine))
    (raw, raw_locked, raw_other), (arq, arq_locked, arq_other) = found.values()
    return [
        judged(
            f"W4 {W4_WORKERS} processes append, {seconds:g} s", "msg/s", raw, arq, "ratio >= 0.5"
        ),
        judged("W4 errors containing 'locked'", "count", raw_locked, arq_locked, "arquivo == 0"),
        judged("W4 other errors", "count", raw_other, arq_other, "arquivo == 0"),
    ]


def metric_rows(n_rows: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    # The last 30 days, so that a summary over a recent window still sees most rows.
    step = timedelta(days=30) / n_rows
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    for i in range(n_rows):
        failed = rng.random() < 0.02
        yield (
            rng.choice(OPERATIONS),
            rng.lognormvariate(3.0, 1.0),
            int(not failed),
            "TimeoutError: upstream did not answer" if failed else None,
            (start + step * i).isoformat(" ", "microseconds"),
        )


def m1(backend: SqliteBackend, n_rows: int, rng: random.Random) -> list[Row]:
    store = backend.arquivo("m1")
    try:
        log(f"  loading {n_rows:,} metric rows")
        columns = ("operation", "duration_ms", "success", "error", "created_at")
        backend.bulk("m1", "system_metrics", columns, metric_rows(n_rows, rng))
        start = time.perf_counter()
        summary = store.metrics.summary()
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    if not summary:
        raise RuntimeError("metrics.summary() returned nothing")
    return [judged(f"M1 metrics.summary(), {n_rows:,} rows", "s", None, elapsed, "arquivo < 2")]


def conversation_plan(
    backend: Backend, scale: float, calls: int, user: str, rng: random.Random
) -> list[tuple[str, Callable[[], list[Row]]]]:
    def size(n: int) -> int:
        return max(1, round(n * scale))

    sizes = (size(1_000), max(2, size(10_000)))
    return [
        (f"{backend.label}W1", lambda: w1(backend, size(100), user)),
        (f"{backend.label}W2", lambda: w2(backend, size(100), user)),
        (f"{backend.label}W3", lambda: w3(backend, sizes, calls, user, rng)),
    ]


def run_plan(
    plan: Sequence[tuple[str, Callable[[], list[Row]]]], only: set[str], rows: list[Row]
) -> None:
    for name, work in plan:
        if name.split()[-1] not in only:
            continue
        log(f"{name}...")
        try:
            rows.extend(work())
        except Exception as exc:  # noqa: BLE001 - one broken workload must not hide the others
            log(f"{name} failed: {exc!r}")
            rows.append(
                Row(f"{name} failed: {type(exc).__name__}", "", None, None, None, "runs", False)
            )


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    spec = {"msg/s": ",.0f", "µs": ",.1f", "s": ".3f", "x": ".2f", "count": ".0f"}[unit]
    return f"{value:{spec}} {unit}"


def print_table(rows: Sequence[Row]) -> None:
    head = ("workload", "raw", "arquivo", "ratio", "target", "result")
    lines = [head] + [
        (
            r.name,
            fmt(r.raw, r.unit),
            fmt(r.arquivo, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            {True: "PASS", False: "FAIL", None: "-"}[r.ok],
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print(
            "  ".join(
                cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="arquivo's conversations and metrics vs raw drivers")
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test, < 30 s)")
    p.add_argument("--scale", type=float, help="multiply W1-W3 sizes (default 1; --quick 0.02)")
    p.add_argument("--only", default=",".join(WORKLOADS), help="e.g. W1,W3 (default: all)")
    p.add_argument(
        "--synchronous",
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        type=str.upper,
        help="PRAGMA synchronous on both sides (default NORMAL)",
    )
    p.add_argument("--seconds", type=float, help="W4 duration (default 5; --quick 1)")
    p.add_argument("--metrics-rows", type=int, help="M1 rows (default 1,000,000)")
    p.add_argument("--history-calls", type=int, help="W3 timed calls per database (2,000)")
    p.add_argument(
        "--postgres",
        default=os.environ.get("ARQUIVO_BENCH_POSTGRES_URL"),
        help="also run W1-W3 on this PostgreSQL URL ('auto': an embedded server)",
    )
    p.add_argument("--pg-scale", type=float, help="W1-W3 sizes on PostgreSQL (default 0.1)")
    p.add_argument("--json", action="store_true", help="also print all figures as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    args = p.parse_args(argv)
    defaults = {
        "scale": (0.02, 1.0),
        "seconds": (1.0, 5.0),
        "metrics_rows": (20_000, 1_000_000),
        "history_calls": (200, 2_000),
        "pg_scale": (0.01, 0.1),
    }
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.only = {w.strip().upper() for w in args.only.split(",") if w.strip()}
    if not args.only <= set(WORKLOADS):
        p.error(f"--only takes some of {','.join(WORKLOADS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(sqlite_synchronous=args.synchronous)
    rng = random.Random(20261125)
    run = uuid.uuid4().hex[:10]
    user = f"bench-{run}"
    log(
        f"arquivo {arquivo.__version__} from {Path(arquivo.__file__).parent}, SQLite "
        f"{sqlite3.sqlite_version}, synchronous={args.synchronous}, scale={args.scale:g}"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="arquivo-bench-") as tmp:
        sqlite = SqliteBackend(Path(tmp), settings)
        plan = [
            *conversation_plan(sqlite, args.scale, args.history_calls, user, rng),
            ("W4", lambda: w4(Path(tmp), settings, args.seconds, user)),
            ("M1", lambda: m1(sqlite, args.metrics_rows, rng)),
        ]
        run_plan(plan, args.only, rows)
    if args.postgres and args.only & {"W1", "W2", "W3"}:
        with postgres_url(args.postgres, "arquivo_bench") as url:
            if url is not None:
                pg = PostgresBackend(url, settings, run)
                try:
                    plan = conversation_plan(pg, args.pg_scale, args.history_calls, user, rng)
                    run_plan(plan, args.only, rows)
                finally:
                    pg.cleanup()
    print_table(rows)
    if args.json:
        given = {**vars(args), "only": sorted(args.only)}
        if args.postgres and args.postgres != "auto":
            given["postgres"] = make_url(args.postgres).render_as_string(hide_password=True)
        print(
            json.dumps(
                {"arguments": given, "results": [asdict(r) for r in rows]},
                indent=2,
                ensure_ascii=False,
            )
        )
    return 1 if args.check and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
