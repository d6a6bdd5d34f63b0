"""Backups under stress: live writers, SIGKILL mid-backup and mid-restore, a full disk."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.backup import Backups
from arquivo.errors import StorageFullError
from conftest import Backend
from test_backup import _drop, _other_target

# Forked, not spawned: a fresh interpreter spends seconds importing on a busy machine.
FORK = multiprocessing.get_context("fork")


def _writer(url: str, name: str, stop: Any, committed: Any) -> None:
    with Arquivo.open(url) as store:
        while not stop.is_set():
            store.conversations.append("writer", name, "user", str(committed.value))
            committed.value += 1


def _create(url: str, folder: str, codec: str) -> None:
    with Arquivo.open(url) as store:
        Backups(store.engine, folder).create(codec=codec)


def _restore(backup_id: str, folder: str, url: str) -> None:
    Backups(None, folder).restore(backup_id, to=url, force=True)


def _count(url: str, session: str) -> int:
    with Arquivo.open(url) as store:
        return len(store.conversations.history("writer", session, limit=1_000_000))


def test_a_backup_under_four_writers_restores_a_prefix_of_each(
    backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(backend.url):
        pass  # migrate once, before the writers race to do it
    stop = FORK.Event()
    names = [f"w{k}" for k in range(4)]
    counters = {name: FORK.Value("q", 0) for name in names}
    writers = [
        FORK.Process(target=_writer, args=(backend.url, name, stop, counters[name]))
        for name in names
    ]
    for writer in writers:
        writer.start()
    try:
        with Arquivo.open(backend.url) as store:
            deadline = time.monotonic() + 60
            while min(len(store.conversations.history("writer", n, limit=5)) for n in names) < 5:
                assert time.monotonic() < deadline, "the writers did not start"
                time.sleep(0.05)
            info = Backups(store.engine, tmp_path / "backups").create()
        time.sleep(0.2)  # writers keep committing after the snapshot
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
    assert all(writer.exitcode == 0 for writer in writers)
    committed = {name: int(counters[name].value) for name in names}
    target = _other_target(backend, tmp_path)
    try:
        Backups(None, tmp_path / "backups").restore(info.id, to=target)
        with Arquivo.open(target) as restored:
            for name in names:
                contents = [
                    m.content for m in restored.conversations.history("writer", name, limit=10**6)
                ]
                assert len(contents) >= 5
                assert contents == [str(i) for i in range(len(contents))], name
                assert len(contents) <= committed[name]
        assert info.tables["conversation_history"] == sum(_count(target, n) for n in names)
        assert sum(committed.values()) > info.tables["conversation_history"]
        if backend.name == "sqlite":
            path = sa.make_url(target).database or ""
            with contextlib.closing(sqlite3.connect(path)) as check:
                assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        _drop(backend, target)


def _ballast(url: str, megabytes: int) -> None:
    """Make the database big (incompressible rows) so a backup takes a while."""
    with Arquivo.open(url) as store:
        store.conversations.append("u1", "s1", "user", "keep me")
    path = sa.make_url(url).database or ""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE ballast (data BLOB)")
        connection.executemany(
            "INSERT INTO ballast VALUES (?)", ((os.urandom(1 << 20),) for _ in range(megabytes))
        )
        connection.commit()


def _kill_when(process: Any, appears: Callable[[], bool]) -> None:
    process.start()
    deadline = time.monotonic() + 60
    while not appears():
        assert process.is_alive(), "finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=30)
    assert process.exitcode == -signal.SIGKILL


@pytest.mark.sqlite_only
def test_a_backup_killed_midway_is_never_listed(sqlite_backend: Backend, tmp_path: Path) -> None:
    _ballast(sqlite_backend.url, 16)
    folder = tmp_path / "backups"
    process = FORK.Process(target=_create, args=(sqlite_backend.url, str(folder), "gzip"))
    _kill_when(process, lambda: any(p.stat().st_size > 0 for p in folder.glob(".partial-*/*")))
    backups = Backups(None, folder)
    assert backups.list() == []
    leftovers = backups.incomplete()
    assert len(leftovers) == 1
    assert not leftovers[0].in_progress
    assert backups.prune(keep_last=1).garbage == tuple(leftovers)
    assert list(folder.iterdir()) == []


@pytest.mark.sqlite_only
def test_a_restore_killed_midway_leaves_the_old_database(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    _ballast(sqlite_backend.url, 16)
    folder = tmp_path / "backups"
    with Arquivo.open(sqlite_backend.url) as store:
        info = Backups(store.engine, folder, pg_bin_dir=None).create(codec="gzip")
    target = tmp_path / "target.db"
    target_url = f"sqlite:///{target}"
    with Arquivo.open(target_url) as store:
        for i in range(10):
            store.conversations.append("u1", "old", "user", f"old {i}")
    process = FORK.Process(target=_restore, args=(info.id, str(folder), target_url))
    _kill_when(
        process, lambda: any(p.stat().st_size > 0 for p in tmp_path.glob(".target.db.restore-*"))
    )
    with contextlib.closing(sqlite3.connect(target)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Arquivo.open(target_url) as store:
        assert [m.content for m in store.conversations.history("u1", "old")] == [
            f"old {i}" for i in range(10)
        ]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.sqlite_only
def test_a_restore_onto_a_full_disk_fails_cleanly(sqlite_backend: Backend, tmp_path: Path) -> None:
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "3m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        _ballast(sqlite_backend.url, 8)
        folder = tmp_path / "backups"
        with Arquivo.open(sqlite_backend.url) as store:
            info = Backups(store.engine, folder).create()
        target_url = f"sqlite:///{small / 'app.db'}"
        with Arquivo.open(target_url) as store:
            store.preferences.set("u1", "theme", "dark")
        before = sorted(p.name for p in small.iterdir())
        with pytest.raises(StorageFullError, match="disk is full"):
            Backups(None, folder).restore(info.id, to=target_url, force=True)
        assert sorted(p.name for p in small.iterdir()) == before
        with Arquivo.open(target_url) as store:
            assert store.preferences.get("u1", "theme") == "dark"
        with contextlib.closing(sqlite3.connect(small / "app.db")) as check:
            assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        # Lazily: this process keeps a read descriptor of every database file it backed
        # up (arquivo.backup.sqlite_frozen), which would keep a plain umount busy.
        subprocess.run(["umount", "--lazy", str(small)], check=False)
