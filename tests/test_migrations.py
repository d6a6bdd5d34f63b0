"""Migrations shipped in the package: up, down, checks, concurrency and plain alembic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from arquivo import (
    Arquivo,
    MigrationError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    UserPreference,
)
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.models import Base
from conftest import Backend

REPO = Path(__file__).resolve().parents[1]
ARQUIVO_TABLES = set(Base.metadata.tables)


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_a_fresh_database_matches_the_models(store: Arquivo) -> None:
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert migrate.check(store.engine) == []
    assert ARQUIVO_TABLES | {migrate.VERSION_TABLE} <= _tables(store.engine)


def test_check_reports_a_drift(store: Arquivo) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text("DROP INDEX ix_system_metrics_created_at"))
    diffs = migrate.check(store.engine)
    assert any("ix_system_metrics_created_at" in diff for diff in diffs)


def test_check_on_a_database_behind_head_says_to_upgrade(backend: Backend) -> None:
    engine = create_engine(backend.url)
    try:
        with pytest.raises(SchemaOutOfDateError, match="not at the head"):
            migrate.check(engine)
    finally:
        engine.dispose()


def test_upgrade_downgrade_cycle_with_rows_present(backend: Backend) -> None:
    engine = create_engine(backend.url)
    try:
        migrate.upgrade(engine)
        with Arquivo(engine).transaction() as session:
            session.add(UserPreference(user_id="u", key="k", value={"v": 1}))
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert not (_tables(engine) & ARQUIVO_TABLES)
        migrate.upgrade(engine, "head")
        migrate.downgrade(engine, "-1")
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.check(engine) == []
        with Arquivo(engine).transaction() as session:
            session.add(UserPreference(user_id="u", key="k", value=[2]))
        with Arquivo(engine).transaction(read_only=True) as session:
            assert session.scalars(sa.select(UserPreference.value)).all() == [[2]]
    finally:
        engine.dispose()


def test_auto_migrate_off_only_checks(backend: Backend) -> None:
    with pytest.raises(SchemaOutOfDateError) as caught:
        Arquivo.open(backend.url, auto_migrate=False)
    assert "arquivo db upgrade" in caught.value.hint
    engine = create_engine(backend.url)
    try:
        assert _tables(engine) & ARQUIVO_TABLES == set()
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    with Arquivo.open(backend.url, auto_migrate=False) as store:
        assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_auto_migrate_setting_from_the_environment(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARQUIVO_AUTO_MIGRATE", "false")
    with pytest.raises(SchemaOutOfDateError):
        Arquivo.open(backend.url)


def test_a_database_from_a_newer_arquivo_is_refused(store: Arquivo) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(SchemaTooNewError, match="9999"):
        Arquivo.open(store.engine.url)


def test_a_failed_migration_leaves_the_schema_as_it_was(backend: Backend) -> None:
    engine = create_engine(backend.url)
    try:
        # A host application already has a table with one of our names.
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE agents (id INTEGER PRIMARY KEY)"))
        with pytest.raises(MigrationError, match="rolled back") as caught:
            Arquivo.open(backend.url)
        assert "outside Arquivo" in caught.value.hint
        assert _tables(engine) == {"agents"}
        assert migrate.current_revision(engine) is None
    finally:
        engine.dispose()


def test_a_host_applications_tables_are_left_alone(backend: Backend) -> None:
    engine = create_engine(backend.url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE host_notes (id INTEGER PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO host_notes (id) VALUES (7)"))
        migrate.upgrade(engine)
        assert migrate.check(engine) == []
        migrate.downgrade(engine, "base")
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT id FROM host_notes")).scalar() == 7
    finally:
        engine.dispose()


_OPENER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
from arquivo import Arquivo
from arquivo.db.migrate import current_revision
with Arquivo.open(sys.argv[1]) as store:
    print(current_revision(store.engine))
"""


def test_processes_opening_a_fresh_database_at_once(backend: Backend, tmp_path: Path) -> None:
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, backend.url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)  # let every interpreter import and wait at the start line
    go.touch()
    results = [p.communicate(timeout=120) for p in processes]
    head = migrate.head_revision()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == head
    engine = create_engine(backend.url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(
                sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")
            ).all()
        assert [v[0] for v in versions] == [head]
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def _alembic(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": backend.url}
    alembic = Path(sys.executable).with_name("alembic")
    return subprocess.run(
        [str(alembic), *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )


def test_plain_alembic_works_from_the_repository_root(backend: Backend) -> None:
    upgraded = _alembic(backend, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    engine = create_engine(backend.url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        current = _alembic(backend, "current")
        assert migrate.head_revision() in current.stdout
        downgraded = _alembic(backend, "downgrade", "-1")
        assert downgraded.returncode == 0, downgraded.stderr
        assert migrate.current_revision(engine) == migrate.history()[0].down_revision
        assert _alembic(backend, "downgrade", "base").returncode == 0
        assert migrate.current_revision(engine) is None
    finally:
        engine.dispose()


def test_the_head_constant_is_the_single_head_of_the_shipped_revisions() -> None:
    assert migrate.script_heads() == [migrate.head_revision()]


def test_opening_a_current_store_does_not_import_alembic(backend: Backend) -> None:
    with Arquivo.open(backend.url):
        pass
    script = (
        "import sys\n"
        "from arquivo import Arquivo\n"
        f"with Arquivo.open({backend.url!r}) as store:\n"
        "    store.preferences.set('u', 'k', 1)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_history_lists_the_shipped_revisions() -> None:
    revisions = migrate.history()
    assert revisions[0].is_head
    assert revisions[-1].down_revision is None
    assert revisions[0].id == migrate.head_revision()
    assert all(r.message for r in revisions)
