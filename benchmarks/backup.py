"""Backup and restore throughput beside ``cp`` (SQLite) and plain pg_dump/pg_restore.

::

    .venv/bin/python benchmarks/backup.py                   # SQLite, 1 GB database
    .venv/bin/python benchmarks/backup.py --size-mb 50      # quick
    .venv/bin/python benchmarks/backup.py --size-mb 200 --postgres auto --json

B1 ``cp`` of the database file (the seeds' backup), MB/s of database.
B2 ``store.backups.create()`` with nobody writing: MB/s of database, ratio to B1.
B3 the same while ``--writers`` processes append messages, beside a ``cp`` of the live
   file under the same writers (target >= 0.5), and the writers' messages/s meanwhile:
   a first backup (into an empty folder) and the next one (beside B2's backup, whose
   unchanged chunks it shares; what a schedule does).
B4 ``restore()`` into a new file, MB/s of database, ratio to ``cp``.
P1-P2 on PostgreSQL (same rows): ``store.backups.create()`` beside a plain
   ``pg_dump -Fc`` (default compression), and ``restore()`` beside a plain
   ``pg_restore`` into a fresh database.
Each timed step runs ``--rounds`` times, alternating sides; the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from embedded import postgres_url

from arquivo import Arquivo
from arquivo.backup import Backups
from arquivo.backup.pgtools import connection_args, find_tool

WORDS = [
    *[
        "the",
        "agent",
        "said",
        "hello",
        "model",
        "tool",
        "result",
        "error",
        "deploy",
        "and",
        "with",
        "user",
        "please",
        "answer",
    ],
    *[
        "context",
        "memory",
        "vector",
        "search",
        "retrieve",
        "summary",
        "plan",
        "step",
        "file",
        "code",
        "test",
        "run",
    ],
]
MB = 1_000_000


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _rows(count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 120)))
        yield (
            f"user{i % 100}",
            f"s{i % 2000}",
            "user" if i % 2 else "assistant",
            text,
            "qwen2.5-coder:14b",
            f'{{"tokens": {i % 997}}}',
            "2026-11-26 01:00:00.000000",
        )


INSERT = (
    "INSERT INTO conversation_history (user_id, session_id, role, content, model, extra_data, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def build_sqlite(path: Path, size_mb: int) -> int:
    """Fill a migrated SQLite file with chat messages until it reaches ``size_mb``."""
    with Arquivo.open(f"sqlite:///{path}"):
        pass
    rows = 0
    connection = sqlite3.connect(path)
    try:
        while path.stat().st_size < size_mb * MB:
            batch = 20_000
            connection.executemany(INSERT, _rows(batch, seed=rows))
            connection.commit()
            rows += batch
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return rows


@contextlib.contextmanager
def clock(into: list[float]) -> Iterator[None]:
    """Append the block's duration in seconds to ``into``."""
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)


def cp(source: Path, target: Path, *, fsync: bool = False) -> None:
    """``cp`` of the file (the baseline of record); ``fsync``: then flush the copy to disk
    too (informational: our backup flushes what it writes, ``cp`` does not)."""
    subprocess.run(["cp", str(source), str(target)], check=True)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    target.unlink()


class Stages:
    """A backup's progress callback that times its stages (copy, compression, the rest)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.current: str | None = None
        self.since = self.started
        self.seconds: dict[str, float] = {}

    def __call__(self, done: int, total: int | None, what: str) -> None:
        if what != self.current:
            self._close()
            self.current = what
        return

    def _close(self) -> None:
        now = time.perf_counter()
        key = "before" if self.current is None else self.current
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.since
        self.since = now

    def finish(self) -> float:
        """Close the last stage; the total seconds."""
        self._close()
        self.current = None
        return time.perf_counter() - self.started


CODEC: str | None = None


def timed_create(url: str, folder: Path) -> tuple[float, dict[str, float]]:
    """Seconds of one ``backups.create()`` and of each of its stages."""
    with Arquivo.open(url) as store:
        stages = Stages()
        Backups(store.engine, folder).create(codec=CODEC, progress=stages)
        return stages.finish(), stages.seconds


def breakdown(runs: list[dict[str, float]]) -> str:
    """Median seconds per stage, e.g. ``counting rows 0.01 s, compressing 1.1 s, ...``."""
    names = {
        "copying pages": "page copy (fallback path)",
        "compressing": "read+compress+sha256+write+fsync+manifest",
    }
    keys = [k for k in runs[0] if k != "before"]
    parts = [
        f"{names.get(k, k)} {statistics.median(r.get(k, 0.0) for r in runs):.2f} s" for k in keys
    ]
    parts.append(f"other {statistics.median(r.get('before', 0.0) for r in runs):.2f} s")
    return ", ".join(parts)


def writer(url: str, name: str, stop: Any, count: Any) -> None:
    with Arquivo.open(url) as store:
        while not stop.is_set():
            store.conversations.append("bench", name, "user", "written during the backup")
            count.value += 1


@dataclass
class UnderLoad:
    """One round of B3: what ran while the writers appended."""

    cp_s: float
    cp_fsync_s: float
    #: A first backup (into an empty folder: every chunk compressed).
    first_s: float
    first_rate: float
    #: The next backup (beside the idle one: unchanged chunks are shared).
    next_s: float
    next_rate: float
    next_stages: dict[str, float]
    shared: str


def backup_under_writers(url: str, folder: Path, writers: int, db: Path) -> UnderLoad:
    """Times, while ``writers`` processes append: a ``cp``, a ``cp`` + fsync, a first
    backup and a next one (with the writers' messages/s during each backup)."""
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    counts = [ctx.Value("q", 0) for _ in range(writers)]
    procs = [
        ctx.Process(target=writer, args=(url, f"w{k}", stop, counts[k])) for k in range(writers)
    ]
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 60
        while min(c.value for c in counts) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.perf_counter()
        cp(db, folder.with_name("copy-under-load.db"))
        cp_seconds = time.perf_counter() - started
        started = time.perf_counter()
        cp(db, folder.with_name("copy-under-load.db"), fsync=True)
        cp_fsync_seconds = time.perf_counter() - started
        empty = folder.with_name("first-under-load")
        before = sum(c.value for c in counts)
        first_s, _ = timed_create(url, empty)
        first_rate = (sum(c.value for c in counts) - before) / first_s
        shutil.rmtree(empty)
        before = sum(c.value for c in counts)
        next_s, stages = timed_create(url, folder)
        next_rate = (sum(c.value for c in counts) - before) / next_s
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=60)
    database = Backups(None, folder).list()[0].components[0]
    chunks = len(database.files)
    shared = f"{database.details.get('shared_chunks', 0)}/{chunks} chunks shared"
    return UnderLoad(
        cp_seconds, cp_fsync_seconds, first_s, first_rate, next_s, next_rate, stages, shared
    )


def sqlite_figures(size_mb: int, rounds: int, writers: int, work: Path) -> list[dict[str, Any]]:
    db = work / "bench.db"
    log(f"building a {size_mb} MB SQLite database...")
    rows = build_sqlite(db, size_mb)
    size = db.stat().st_size / MB
    url = f"sqlite:///{db}"
    folder = work / "backups"
    log(f"{rows} messages, {size:.0f} MB; timing {rounds} rounds")
    cps: list[float] = []
    creates: list[float] = []
    restores: list[float] = []
    loads: list[UnderLoad] = []
    idle_stages: list[dict[str, float]] = []
    info = None
    target = work / "restored.db"
    for _ in range(rounds):
        with clock(cps):
            cp(db, work / "copy.db")
        seconds, stages = timed_create(url, folder)
        creates.append(seconds)
        idle_stages.append(stages)
        info = Backups(None, folder).list()[0]
        with clock(restores):
            Backups(None, folder).restore(info.id, to=f"sqlite:///{target}")
        target.unlink()
        loads.append(backup_under_writers(url, folder, writers, db))
        shutil.rmtree(folder)
    cp_s, create_s = statistics.median(cps), statistics.median(creates)
    restore_s = statistics.median(restores)
    loaded_cp_s = statistics.median(load.cp_s for load in loads)
    loaded_cp_sync_s = statistics.median(load.cp_fsync_s for load in loads)
    first_s = statistics.median(load.first_s for load in loads)
    next_s = statistics.median(load.next_s for load in loads)
    assert info is not None
    ratio = info.size_bytes / info.components[0].raw_size_bytes
    return [
        {"name": "B1 cp of the file", "mb_s": size / cp_s, "baseline_mb_s": None, "ratio": None},
        {
            "name": "B2 backup create (idle)",
            "mb_s": size / create_s,
            "baseline_mb_s": size / cp_s,
            "ratio": cp_s / create_s,
            "note": f"{info.components[0].codec}: compressed to {ratio:.0%}; "
            f"{breakdown(idle_stages)}",
            "stages_s": idle_stages,
        },
        {
            "name": f"B3 first backup ({writers} writers)",
            "mb_s": size / first_s,
            "baseline_mb_s": size / loaded_cp_s,
            "ratio": loaded_cp_s / first_s,
            "target": ">= 0.5",
            "note": "into an empty folder: every chunk compressed; baseline: cp under the "
            f"same writers; vs cp+fsync under writers ({size / loaded_cp_sync_s:.0f} MB/s) "
            f"{loaded_cp_sync_s / first_s:.2f}; writers "
            f"{statistics.median(load.first_rate for load in loads):.0f} msg/s during it",
            "cp_fsync_mb_s": size / loaded_cp_sync_s,
        },
        {
            "name": f"B3 next backup ({writers} writers)",
            "mb_s": size / next_s,
            "baseline_mb_s": size / loaded_cp_s,
            "ratio": loaded_cp_s / next_s,
            "target": ">= 0.5",
            "note": "beside the idle backup: "
            f"{', '.join(load.shared for load in loads)}; vs cp+fsync under writers "
            f"{loaded_cp_sync_s / next_s:.2f}; writers "
            f"{statistics.median(load.next_rate for load in loads):.0f} msg/s during it; "
            f"{breakdown([load.next_stages for load in loads])}",
            "stages_s": [load.next_stages for load in loads],
        },
        {
            "name": "B4 restore (new file)",
            "mb_s": size / restore_s,
            "baseline_mb_s": size / cp_s,
            "ratio": cp_s / restore_s,
        },
        {
            "name": "database",
            "mb_s": size,
            "baseline_mb_s": None,
            "ratio": None,
            "note": f"{rows} messages",
        },
    ]


def postgres_figures(url: str, sqlite_db: Path, rounds: int, work: Path) -> list[dict[str, Any]]:
    log("loading the same rows into PostgreSQL...")
    with Arquivo.open(url) as store:
        raw = store.engine.raw_connection()
        try:
            with raw.cursor() as cursor, contextlib.closing(sqlite3.connect(sqlite_db)) as src:
                columns = "user_id, session_id, role, content, model, extra_data, created_at"
                with cursor.copy(f"COPY conversation_history ({columns}) FROM STDIN") as copy:
                    for row in src.execute(f"SELECT {columns} FROM conversation_history"):
                        copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        size = (
            store.engine.connect()
            .exec_driver_sql("SELECT pg_database_size(current_database())")
            .scalar_one()
            / MB
        )
        server = store.engine.connect().exec_driver_sql("SHOW server_version_num").scalar_one()
    parsed = sa.make_url(url)
    major = int(server) // 10_000
    pg_dump, pg_restore = find_tool("pg_dump", major), find_tool("pg_restore", major)
    conninfo, env = connection_args(parsed)
    env = {**os.environ, **env}
    folder = work / "pg-backups"
    plain_dump: list[float] = []
    ours_dump: list[float] = []
    plain_restore: list[float] = []
    ours_restore: list[float] = []
    admin = parsed.set(database="postgres")
    for n in range(rounds):
        dump = work / "plain.dump"
        with clock(plain_dump):
            subprocess.run(
                [str(pg_dump), "-Fc", "-f", str(dump), f"--dbname={conninfo}"], env=env, check=True
            )
        with Arquivo.open(url) as store, clock(ours_dump):
            info = Backups(store.engine, folder).create()
        fresh = f"{parsed.database}_plain_{n}"
        with sa.create_engine(admin, isolation_level="AUTOCOMMIT").connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{fresh}"')
        target, target_env = connection_args(parsed.set(database=fresh))
        with clock(plain_restore):
            subprocess.run(
                [str(pg_restore), "--no-owner", f"--dbname={target}", str(dump)],
                env={**env, **target_env},
                check=True,
            )
        restored = parsed.set(database=f"{parsed.database}_ours_{n}")
        with clock(ours_restore):
            Backups(None, folder).restore(info.id, to=restored)
        with sa.create_engine(admin, isolation_level="AUTOCOMMIT").connect() as c:
            for name in (fresh, restored.database):
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder)
    pd, od = statistics.median(plain_dump), statistics.median(ours_dump)
    pr, orr = statistics.median(plain_restore), statistics.median(ours_restore)
    return [
        {
            "name": "P1 backup create vs pg_dump -Fc",
            "mb_s": size / od,
            "baseline_mb_s": size / pd,
            "ratio": pd / od,
            "note": f"database {size:.0f} MB on disk",
        },
        {
            "name": "P2 restore vs pg_restore",
            "mb_s": size / orr,
            "baseline_mb_s": size / pr,
            "ratio": pr / orr,
            "note": "ours also checks row counts and swaps atomically",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="SQLite database size")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--writers", type=int, default=4, help="processes writing during B3")
    parser.add_argument("--postgres", help="a PostgreSQL URL, or auto (embedded server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--codec", help="our backups' compression (default: the library's)")
    args = parser.parse_args()
    global CODEC
    CODEC = args.codec
    work = Path(tempfile.mkdtemp(prefix="arquivo-bench-backup-"))
    try:
        results = sqlite_figures(args.size_mb, args.rounds, args.writers, work)
        if args.postgres:
            with postgres_url(args.postgres, "bench_backup") as pg:
                if pg is not None:
                    results += postgres_figures(pg, work / "bench.db", args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'figure':<36} {'MB/s':>9} {'baseline':>9} {'ratio':>7}  note")
    for row in results:
        base = "" if row["baseline_mb_s"] is None else f"{row['baseline_mb_s']:9.1f}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:7.2f}"
        note = " ".join(x for x in (row.get("target", ""), row.get("note", "")) if x)
        value = f"{row['mb_s']:9.1f}" if row["name"] != "database" else f"{row['mb_s']:7.0f}MB"
        print(f"{row['name']:<36} {value:>9} {base:>9} {ratio:>7}  {note}")
    if args.json:
        print(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
