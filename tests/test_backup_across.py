"""Restoring a backup into the other kind of database (SQLite <-> PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.backup import Backups
from arquivo.backup.manifest import MANIFEST
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.errors import ConflictError, MissingDependencyError, ValidationError
from conftest import Backend
from test_backup import _fill, _messages
from test_cli import run_json


def _leftover_databases(url: str) -> list[str]:
    engine = sa.create_engine(sa.make_url(url).set(database="postgres"))
    try:
        with engine.connect() as connection:
            names = connection.exec_driver_sql("SELECT datname FROM pg_database").scalars()
            return [str(n) for n in names if "_arquivo_" in str(n)]
    finally:
        engine.dispose()


def _file(url: str) -> Path:
    return Path(sa.make_url(url).database or "")


def test_a_postgresql_backup_restores_into_sqlite(
    sqlite_backend: Backend, postgres_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(postgres_backend.url) as store:
        _fill(store, messages=5)
        asked = store.hitl.request("wf1", "deploy", {"to": "prod"}, user_id="u1")
        store.hitl.approve(asked.id, actor="ana")
        info = Backups(store.engine, tmp_path / "b").create()
    with Arquivo.open(sqlite_backend.url) as target:
        target.preferences.set("someone", "else", 1)
    backups = Backups(None, tmp_path / "b")

    with pytest.raises(ConflictError, match="holds"):
        backups.restore(info.id, to=sqlite_backend.url)
    dry = backups.restore(info.id, to=sqlite_backend.url, force=True, dry_run=True)
    assert dry.dry_run
    assert dry.replaced_rows > 0
    with Arquivo.open(sqlite_backend.url) as unchanged:
        assert unchanged.preferences.get("someone", "else") == 1

    # No bound database and no --via: the server named in the manifest unpacks it.
    report = backups.restore(info.id, to=sqlite_backend.url, force=True)
    assert report.safety_backup_id is not None
    assert backups.get(report.safety_backup_id).dialect == "sqlite"
    assert report.migrated_from is None
    assert report.method == "logical"
    assert _messages(sqlite_backend.url) == [f"message {i}" for i in range(5)]
    with Arquivo.open(sqlite_backend.url) as copy:
        assert copy.preferences.get("u1", "theme") == "dark"
        assert copy.preferences.get("someone", "else") is None
        assert copy.agents.get("coder").instructions == "Be brief."
        assert copy.hitl.get(asked.id).status == "approved"
        copy.conversations.append("u1", "s1", "user", "ids keep counting")
    path = _file(sqlite_backend.url)
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Nothing left behind: no temporary file beside the target, no database on the server.
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []
    assert _leftover_databases(postgres_backend.url) == []
    assert not list((tmp_path / "b").glob(".across-*"))


def test_a_pg_backup_needs_a_server_and_pg_restore(
    sqlite_backend: Backend, postgres_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(postgres_backend.url) as store:
        _fill(store, messages=2)
        info = Backups(store.engine, tmp_path / "b").create()
    manifest = json.loads((info.path / MANIFEST).read_text())
    manifest["source"] = "unknown"
    (info.path / MANIFEST).write_text(json.dumps(manifest))
    target = tmp_path / "new" / "copy.db"
    url = f"sqlite:///{target}"
    backups = Backups(None, tmp_path / "b")
    with pytest.raises(ValidationError, match="needs a PostgreSQL server") as error:
        backups.restore(info.id, to=url)
    assert "--via" in (error.value.hint or "")
    nowhere = Backups(None, tmp_path / "b", pg_bin_dir=str(tmp_path / "nowhere"))
    with pytest.raises(MissingDependencyError, match="pg_restore") as missing:
        nowhere.restore(info.id, to=url, via=postgres_backend.url)
    assert "ARQUIVO_PG_BIN_DIR" in (missing.value.hint or "")
    assert not target.exists()

    # Through the CLI, as an operator would, naming the server with --via.
    env = {"ARQUIVO_BACKUP_DIR": str(tmp_path / "b"), "DATABASE_URL": url}
    report = run_json("backup", "restore", info.id, "--via", postgres_backend.url, env=env)
    assert report["method"] == "logical"
    assert report["safety_backup_id"] is None
    assert _messages(url) == ["message 0", "message 1"]
    assert _leftover_databases(postgres_backend.url) == []


def test_an_older_sqlite_backup_crosses_into_postgresql_migrated(
    sqlite_backend: Backend, postgres_backend: Backend, tmp_path: Path
) -> None:
    engine = create_engine(sqlite_backend.url)
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO user_preferences (user_id, key, value, created_at, updated_at) "
                "VALUES ('u1', 'theme', '\"dark\"', '2026-01-01', '2026-01-01')"
            )
        info = Backups(engine, tmp_path / "b").create()
    finally:
        engine.dispose()
    backups = Backups(None, tmp_path / "b")
    report = backups.restore(info.id, to=postgres_backend.url)
    assert report.migrated_from == "0002"
    assert report.safety_backup_id is None
    with Arquivo.open(postgres_backend.url, auto_migrate=False) as copy:
        assert copy.preferences.get("u1", "theme") == "dark"
    # The target exists now: --if-db-not-exists leaves it alone.
    assert backups.restore(info.id, to=postgres_backend.url, if_db_not_exists=True).skipped
    assert _leftover_databases(postgres_backend.url) == []
