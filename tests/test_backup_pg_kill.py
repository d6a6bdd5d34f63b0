"""PostgreSQL backups and restores killed with SIGKILL midway (the issue's reliability section).

The SQLite half is in ``test_backup_reliability.py``. Here: a ``pg_dump`` backup killed
midway is never listed (and its ``pg_dump`` dies with it), and a restore killed at any
moment leaves the target database usable, holding either its old rows or the backup's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.backup import Backups
from arquivo.backup.pgtools import connection_args
from conftest import Backend
from test_backup_reliability import FORK, _create, _kill_when, _restore

pytestmark = pytest.mark.postgres_only


def _libpq(url: str | sa.URL) -> str:
    return connection_args(sa.make_url(url))[0]


def _pg_ballast(url: str, megabytes: int) -> None:
    """Incompressible rows, so that ``pg_dump`` takes a moment to write them."""
    with Arquivo.open(url) as store:
        store.conversations.append("u1", "s1", "user", "keep me")
    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute("CREATE TABLE ballast (data bytea)")
        for _ in range(megabytes):
            connection.execute("INSERT INTO ballast VALUES (%s)", (os.urandom(1 << 20),))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_a_pg_backup_killed_midway_is_never_listed(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    _pg_ballast(postgres_backend.url, 24)
    folder = tmp_path / "backups"
    process = FORK.Process(target=_create, args=(postgres_backend.url, str(folder), "gzip"))
    _kill_when(process, lambda: any(p.stat().st_size > 0 for p in folder.glob(".partial-*/*")))
    # pg_dump was the killed process's child: it must die too, not finish the dump.
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(folder)):
        assert time.monotonic() < deadline, "pg_dump outlived the killed backup"
        time.sleep(0.05)
    backups = Backups(None, folder)
    assert backups.list() == []
    leftovers = backups.incomplete()
    assert len(leftovers) == 1
    assert not leftovers[0].in_progress
    assert backups.prune(keep_last=1).garbage == tuple(leftovers)
    assert list(folder.iterdir()) == []
    with Arquivo.open(postgres_backend.url) as store:
        assert [m.content for m in store.conversations.history("u1", "s1")] == ["keep me"]


def _state(url: str) -> str:
    """``old`` or ``new``: which complete content the target holds (it must open)."""
    with Arquivo.open(url) as store:
        old = [m.content for m in store.conversations.history("u1", "old", limit=100)]
        new = [m.content for m in store.conversations.history("u1", "new", limit=100)]
        store.preferences.set("probe", "writable", True)  # usable, not just readable
    if old == [f"old {i}" for i in range(10)] and not new:
        return "old"
    assert new == [f"new {i}" for i in range(10)], (old, new)
    assert not old, (old, new)
    return "new"


def _restore_databases(url: str) -> list[str]:
    admin = sa.make_url(url).set(database="postgres").render_as_string(False)
    with psycopg.connect(_libpq(admin), autocommit=True) as c:
        rows = c.execute("SELECT datname FROM pg_database WHERE datname LIKE '%%_arquivo_%%'")
        return [str(name) for (name,) in rows]


@pytest.mark.parametrize("source", ["postgresql", "sqlite"])
def test_a_pg_restore_killed_at_any_moment_leaves_a_usable_target(
    postgres_backend: Backend, tmp_path: Path, source: str
) -> None:
    """From a PostgreSQL backup (pg_restore) and from a SQLite one (across databases)."""
    url = postgres_backend.url
    folder = tmp_path / "backups"
    origin = url if source == "postgresql" else f"sqlite:///{tmp_path / 'origin.db'}"
    with Arquivo.open(origin) as store:
        for i in range(10):
            store.conversations.append("u1", "new", "user", f"new {i}")
        info = Backups(store.engine, folder).create()
    if source == "postgresql":
        with Arquivo.open(url) as store, store.transaction() as session:
            session.execute(sa.text("DELETE FROM conversation_history"))
    with Arquivo.open(url) as store:
        for i in range(10):
            store.conversations.append("u1", "old", "user", f"old {i}")
    assert _state(url) == "old"

    # Kill the restore later and later, until it gets to finish: at every moment the
    # target must open and hold one complete version.
    delay, killed = 0.15, 0
    while True:
        process = FORK.Process(target=_restore, args=(info.id, str(folder), url))
        process.start()
        time.sleep(delay)
        if process.exitcode is not None or not process.is_alive():
            process.join()
            assert process.exitcode == 0
            break
        os.kill(process.pid, 9)
        process.join(timeout=30)
        killed += 1
        if _state(url) == "new":  # killed after the swap committed
            break
        delay *= 1.5  # kills spread over every phase, in few rounds
        assert delay < 60, "the restore never finished"
    assert killed >= 2
    assert _state(url) == "new"
    # What kills leave behind: scratch databases under recognisable names, to drop.
    leftovers = _restore_databases(url)
    assert all("_arquivo_restore_" in n or "_arquivo_replaced_" in n for n in leftovers)
    admin = sa.make_url(url).set(database="postgres")
    with psycopg.connect(_libpq(admin.render_as_string(False)), autocommit=True) as c:
        for name in leftovers:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
