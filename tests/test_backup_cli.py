"""``arquivo backup`` and ``arquivo db reset`` through the real entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from arquivo import Arquivo
from arquivo.backup import Backups
from conftest import Backend
from test_backup import _drop, _other_target
from test_cli import ARQUIVO, run, run_json

# Each CLI run costs seconds of imports on a busy machine: the full tour runs on SQLite,
# PostgreSQL gets create + verify (the library tests cover the rest on both).


def test_backup_create_and_verify_on_each_backend(backend: Backend, tmp_path: Path) -> None:
    env = {"DATABASE_URL": backend.url, "ARQUIVO_BACKUP_DIR": str(tmp_path)}
    with Arquivo.open(backend.url) as store:
        store.preferences.set("u1", "theme", "dark")
    created = run_json("backup", "create", "--label", "cli", env=env)
    assert created["label"] == "cli"
    assert created["dialect"] == backend.name
    assert created["tables"]["user_preferences"] == 1
    assert Path(created["path"]).parent == tmp_path
    verified = run("backup", "verify", "latest", env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"backup {created['id']} is good" in verified.stdout


def test_backup_commands_end_to_end(sqlite_backend: Backend, tmp_path: Path) -> None:
    backend = sqlite_backend
    folder = tmp_path / "backups"
    env = {"DATABASE_URL": backend.url, "ARQUIVO_BACKUP_DIR": str(folder)}
    with Arquivo.open(backend.url) as store:
        store.preferences.set("u1", "theme", "dark")
        Backups(store.engine, folder).create(label="older")

    created = run("backup", "create", "--label", "cli", env=env)
    assert created.returncode == 0, created.stderr
    assert "created in" in created.stdout
    newest, older = Backups(None, folder).list()
    # Nothing was written in between: the new backup's chunks are the older one's files.
    assert f"shared with backup {older.id}" in created.stdout
    table = run("backup", "list", "--dir", str(folder), env={**env, "COLUMNS": "200"})
    assert newest.id in table.stdout
    assert "older" in table.stdout
    assert "(0 B new)" in table.stdout

    refused = run("backup", "restore", "latest", env=env)
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.stderr

    target = _other_target(backend, tmp_path)
    try:
        restored = run_json("backup", "restore", older.id, "--to", target, env=env)
        assert restored["safety_backup_id"] is None
        with Arquivo.open(target) as copy:
            assert copy.preferences.get("u1", "theme") == "dark"
    finally:
        _drop(backend, target)

    dry = run_json("backup", "prune", "--keep-last", "1", "--dry-run", env=env)
    assert dry["removed"] == [older.id]
    assert len(Backups(None, folder).list()) == 2
    pruned = run("backup", "prune", "--keep-last", "1", env=env)
    assert "removed 1 backups" in pruned.stdout
    assert [b.id for b in Backups(None, folder).list()] == [newest.id]

    reset = run("db", "reset", "--yes", env=env)
    assert reset.returncode == 0, reset.stderr
    assert "backed up as" in reset.stdout
    with Arquivo.open(backend.url) as store:
        assert store.preferences.get("u1", "theme") is None


def test_backup_cli_errors_are_clear(tmp_path: Path) -> None:
    env = {"ARQUIVO_BACKUP_DIR": str(tmp_path)}
    bad = run("backup", "verify", "../../etc", env=env)
    assert bad.returncode == 1
    assert "is not a backup id" in bad.stderr
    age = run("backup", "prune", "--max-age", "soon", env=env)
    assert age.returncode == 1
    assert "not a duration" in age.stderr
    # A folder name the OS refuses (found by the hostile CLI test): said, not a traceback.
    long = run("backup", "list", "--dir", str(tmp_path / ("a" * 5000)))
    assert long.returncode == 1
    assert "File name too long" in long.stderr
    assert "Traceback" not in bad.stderr + age.stderr + long.stderr


def test_a_tampered_backup_fails_verify_in_the_cli(sqlite_backend: Backend, tmp_path: Path) -> None:
    env = {"DATABASE_URL": sqlite_backend.url, "ARQUIVO_BACKUP_DIR": str(tmp_path / "b")}
    with Arquivo.open(sqlite_backend.url) as store:
        created = Backups(store.engine, tmp_path / "b").create()
    data = next(p for p in created.path.iterdir() if p.name != "manifest.json")
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    result = run("backup", "verify", created.id, env=env)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr


@pytest.mark.sqlite_only
def test_schedule_runs_and_stops_cleanly(sqlite_backend: Backend, tmp_path: Path) -> None:
    with Arquivo.open(sqlite_backend.url):
        pass
    folder = tmp_path / "b"
    env = {"DATABASE_URL": sqlite_backend.url, "ARQUIVO_BACKUP_DIR": str(folder)}
    bounded = run(
        "backup", "schedule", "--every", "1s", "--max-runs", "3", "--keep-last", "2", env=env
    )
    assert bounded.returncode == 0, bounded.stderr
    assert bounded.stdout.count("] backup ") == 3
    assert "stopped after 3 backups" in bounded.stdout
    assert len(Backups(None, folder).list()) == 2

    forever = subprocess.Popen(
        [str(ARQUIVO), "backup", "schedule", "--every", "1h"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(Backups(None, folder).list()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    forever.send_signal(signal.SIGTERM)
    out, err = forever.communicate(timeout=60)
    assert forever.returncode == 0, err
    assert "stopped after 1 backups" in out
    assert Backups(None, folder).incomplete() == []
