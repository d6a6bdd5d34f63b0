"""Backups: create, list, verify, prune, restore, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, BackupManager
from arquivo.backup import Backups
from arquivo.backup.manifest import MANIFEST
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.errors import (
    ConflictError,
    CorruptDatabaseError,
    MissingDependencyError,
    NotFoundError,
    SchemaTooNewError,
    ValidationError,
)
from conftest import Backend


def _fill(store: Arquivo, messages: int = 30) -> None:
    store.preferences.set("u1", "theme", "dark")
    for i in range(messages):
        store.conversations.append("u1", "s1", "user", f"message {i}")
    store.agents.upsert("coder", "qwen", instructions="Be brief.")


def _other_target(backend: Backend, tmp_path: Path) -> str:
    """A URL of a database that does not exist yet, on the backend's engine."""
    if backend.name == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'copy.db'}"
    url = sa.make_url(backend.url)
    return url.set(database=f"{url.database}_copy").render_as_string(hide_password=False)


def _drop(backend: Backend, url: str) -> None:
    if backend.name == "postgresql":
        from pg_server import drop_database

        parsed = sa.make_url(url)
        admin = parsed.set(database="postgres").render_as_string(hide_password=False)
        drop_database(admin, parsed.database or "")


def _messages(url: str) -> list[str]:
    with Arquivo.open(url) as store:
        return [m.content for m in store.conversations.history("u1", "s1", limit=1000)]


def test_create_list_verify_restore(backend: Backend, tmp_path: Path) -> None:
    backups_dir = tmp_path / "backups"
    with Arquivo.open(backend.url) as store:
        _fill(store)
        backups = Backups(store.engine, backups_dir)
        info = backups.create(label="first")
        store.conversations.append("u1", "s1", "user", "after the backup")

    assert info.label == "first"
    assert info.dialect == backend.name
    assert info.revision == migrate.head_revision()
    assert info.tables["conversation_history"] == 30
    assert info.tables["user_preferences"] == 1
    manifest = json.loads((info.path / MANIFEST).read_text())
    assert manifest["id"] == info.id
    assert manifest["components"][0]["name"] == "database"
    assert manifest["components"][0]["files"][0]["sha256"]
    assert [b.id for b in backups.list()] == [info.id]
    assert backups.get("latest").id == info.id

    report = backups.verify(info.id)
    assert report.ok, report.problems
    assert report.restored
    assert report.tables["conversation_history"] == 30

    target = _other_target(backend, tmp_path)
    try:
        restored = backups.restore(info.id, to=target)
        assert restored.safety_backup_id is None
        assert restored.migrated_from is None
        assert _messages(target) == [f"message {i}" for i in range(30)]
        with Arquivo.open(target) as copy:
            assert copy.preferences.get("u1", "theme") == "dark"
            assert copy.agents.get("coder").instructions == "Be brief."
    finally:
        _drop(backend, target)


def test_restore_refuses_a_database_with_rows_unless_forced(
    backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(backend.url) as store:
        _fill(store, messages=5)
        backups = Backups(store.engine, tmp_path / "backups")
        info = backups.create()
        store.conversations.append("u1", "s1", "user", "newer")

    with pytest.raises(ConflictError, match="holds") as refused:
        backups.restore(info.id, to=backend.url)
    assert "--force" in refused.value.hint
    assert len(_messages(backend.url)) == 6

    plan = backups.restore(info.id, to=backend.url, dry_run=True, force=True)
    assert plan.dry_run
    assert plan.replaced_rows > 0
    assert len(_messages(backend.url)) == 6
    assert backups.restore(info.id, to=backend.url, if_db_not_exists=True).skipped

    report = backups.restore(info.id, to=backend.url, force=True)
    assert report.safety_backup_id is not None
    assert _messages(backend.url) == [f"message {i}" for i in range(5)]
    safety = backups.get(report.safety_backup_id)
    assert safety.tables["conversation_history"] == 6
    assert safety.label.startswith("pre-restore")


def test_the_stores_own_restore_closes_the_store(backend: Backend, tmp_path: Path) -> None:
    store = Arquivo.open(backend.url, settings=None)
    _fill(store, messages=3)
    backups = Backups(store.engine, tmp_path / "b", before_restore=store.close)
    info = backups.create()
    store.conversations.append("u1", "s1", "user", "4th")
    backups.restore(info.id, force=True)
    assert _messages(backend.url) == ["message 0", "message 1", "message 2"]


def test_a_tampered_backup_fails_verify_and_is_not_restored(
    backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(backend.url) as store:
        _fill(store, messages=3)
        backups = Backups(store.engine, tmp_path / "backups")
        info = backups.create()
    data = info.path / info.components[0].files[0].path
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))

    report = backups.verify(info.id)
    assert not report.ok
    assert "checksum" in report.problems[0]
    target = _other_target(backend, tmp_path)
    with pytest.raises(CorruptDatabaseError, match="damaged"):
        backups.restore(info.id, to=target)


def test_a_backup_from_a_newer_arquivo_is_refused(sqlite_backend: Backend, tmp_path: Path) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        backups = Backups(store.engine, tmp_path / "backups")
        info = backups.create()
    manifest = json.loads((info.path / MANIFEST).read_text())
    manifest["revision"] = "9999"
    (info.path / MANIFEST).write_text(json.dumps(manifest))
    target = tmp_path / "fresh.db"
    with pytest.raises(SchemaTooNewError, match="9999"):
        backups.restore(info.id, to=f"sqlite:///{target}")
    assert not target.exists()


def test_an_older_backup_is_migrated_forward(backend: Backend, tmp_path: Path) -> None:
    engine = create_engine(backend.url)
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO user_preferences (user_id, key, value, created_at, updated_at) "
                "VALUES ('u1', 'theme', '\"dark\"', '2026-01-01', '2026-01-01')"
            )
        backups = Backups(engine, tmp_path / "backups")
        info = backups.create()
    finally:
        engine.dispose()
    assert info.revision == "0002"
    target = _other_target(backend, tmp_path)
    try:
        report = backups.restore(info.id, to=target)
        assert report.migrated_from == "0002"
        with Arquivo.open(target, auto_migrate=False) as copy:
            assert copy.preferences.get("u1", "theme") == "dark"
    finally:
        _drop(backend, target)


def test_backup_ids_are_validated(tmp_path: Path) -> None:
    backups = Backups(None, tmp_path)
    for bad in ("../etc", "", "a/b", ".partial-x", "x" * 200):
        with pytest.raises(ValidationError):
            backups.get(bad)
    with pytest.raises(NotFoundError):
        backups.get("20260101T000000Z-abcdef")
    with pytest.raises(NotFoundError, match="no backups"):
        backups.get("latest")


def test_a_folder_without_a_manifest_is_not_listed_and_is_pruned(tmp_path: Path) -> None:
    manager = BackupManager(backup_path=tmp_path, retention_days=30)
    info = asyncio.run(manager.backup_data(data={"a": 1}))
    (tmp_path / "20260101T000000Z-000000").mkdir()
    (tmp_path / ".partial-20260101T000000Z-111111-999999999").mkdir()
    backups = Backups(None, tmp_path)
    assert [b.id for b in backups.list()] == [info.id]
    assert {i.path.name for i in backups.incomplete()} == {
        "20260101T000000Z-000000",
        ".partial-20260101T000000Z-111111-999999999",
    }
    report = backups.prune(keep_last=5)
    assert len(report.garbage) == 2
    assert backups.incomplete() == []
    assert [b.id for b in backups.list()] == [info.id]


def test_prune_by_count_and_by_age(tmp_path: Path) -> None:
    backups = Backups(None, tmp_path)
    made = [backups.create_data({"n": n}) for n in range(5)]
    newest_first = [b.id for b in reversed(made)]
    assert [b.id for b in backups.list()] == newest_first

    with pytest.raises(ValidationError):
        backups.prune()
    with pytest.raises(ValidationError):
        backups.prune(keep_last=0)

    dry = backups.prune(keep_last=2, dry_run=True)
    assert [b.id for b in dry.removed] == newest_first[2:]
    assert len(backups.list()) == 5

    report = backups.prune(keep_last=3)
    assert [b.id for b in report.removed] == newest_first[3:]
    assert [b.id for b in backups.list()] == newest_first[:3]

    # A week later every backup is too old, but the newest is always kept.
    later = datetime.now(UTC) + timedelta(days=7)
    assert backups.prune(max_age=timedelta(days=30), now=later).removed == ()
    aged = backups.prune(max_age=timedelta(days=1), now=later)
    assert [b.id for b in aged.removed] == newest_first[1:3]
    assert [b.id for b in backups.list()] == newest_first[:1]


def test_backup_manager_as_the_seed_shows_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"

    async def scenario() -> None:
        manager = BackupManager(backup_path=str(tmp_path / "backups"), retention_days=30)
        agents_dict = {"coder": {"model": "qwen", "tools": ["fs"]}}
        metadata = await manager.backup_data(data={"agents": agents_dict}, backup_type="full")
        assert metadata.backup_type == "full"
        assert metadata.components[0].name == "data"
        assert metadata.path.is_dir()
        assert await manager.load_data(metadata.id) == {"agents": agents_dict}
        assert (await manager.verify(metadata.id)).ok
        removed = await manager.cleanup_old_backups()
        assert removed == []

        with Arquivo.open(url) as store:
            store.preferences.set("u1", "theme", "dark")
            whole = await BackupManager(tmp_path / "backups", store=store).backup(label="all")
        assert whole.tables["user_preferences"] == 1
        assert [b.id for b in await manager.list_backups()] == [whole.id, metadata.id]

    asyncio.run(scenario())
    with pytest.raises(ValidationError):
        BackupManager(tmp_path, retention_days=0)
    with pytest.raises(ValidationError):
        asyncio.run(BackupManager(tmp_path).backup_data(data={"x": object()}))


def test_pg_dump_missing_or_too_old_is_a_clear_error(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(postgres_backend.url) as store:
        missing = Backups(store.engine, tmp_path, pg_bin_dir=str(tmp_path / "nowhere"))
        with pytest.raises(MissingDependencyError, match="holds no pg_dump") as error:
            missing.create()
        assert "ARQUIVO_PG_BIN_DIR" in error.value.hint
        old = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_dump").exists()]
        old = [p for p in old if int(p.parent.name) < 18]
        if old:
            with pytest.raises(MissingDependencyError, match="older than the server") as error:
                Backups(store.engine, tmp_path, pg_bin_dir=str(old[0])).create()
            assert "postgresql-client-18" in error.value.hint
    assert Backups(None, tmp_path).list() == []


def test_an_in_progress_partial_of_a_live_process_is_kept(tmp_path: Path) -> None:
    import os

    (tmp_path / f".partial-20260101T000000Z-222222-{os.getpid()}").mkdir()
    backups = Backups(None, tmp_path)
    assert backups.incomplete()[0].in_progress
    backups.create_data({"x": 1})
    assert backups.prune(keep_last=1).garbage == ()
    assert len(backups.incomplete()) == 1


def test_sqlite_restore_ignores_a_stale_wal_of_the_replaced_file(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        _fill(store, messages=2)
        info = Backups(store.engine, tmp_path / "b").create()
    path = Path(sa.make_url(sqlite_backend.url).database or "")
    # A writer that died with committed frames still in the WAL (never checkpointed).
    crash = (
        "import os, sys; from arquivo import Arquivo; s = Arquivo.open(sys.argv[1]); "
        "s.conversations.append('u1', 's1', 'user', 'in the wal'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash, sqlite_backend.url], check=True, timeout=60)
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0
    Backups(None, tmp_path / "b").restore(info.id, to=sqlite_backend.url, force=True)
    assert not wal.exists() or wal.stat().st_size == 0
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _messages(sqlite_backend.url) == ["message 0", "message 1"]


def test_a_sqlite_backup_restores_into_postgresql(
    sqlite_backend: Backend, postgres_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        _fill(store, messages=4)
        info = Backups(store.engine, tmp_path / "b").create()
    with Arquivo.open(postgres_backend.url) as target:
        target.preferences.set("someone", "else", 1)
    backups = Backups(None, tmp_path / "b")
    with pytest.raises(ConflictError):
        backups.restore(info.id, to=postgres_backend.url)
    report = backups.restore(info.id, to=postgres_backend.url, force=True)
    assert report.safety_backup_id is not None
    assert backups.get(report.safety_backup_id).dialect == "postgresql"
    assert _messages(postgres_backend.url) == [f"message {i}" for i in range(4)]
    with Arquivo.open(postgres_backend.url) as copy:
        assert copy.preferences.get("u1", "theme") == "dark"
        assert copy.preferences.get("someone", "else") is None
        assert copy.agents.get("coder").instructions == "Be brief."
