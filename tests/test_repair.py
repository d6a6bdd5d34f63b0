"""Integrity checks, salvage of a corrupt SQLite file, vacuum."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from arquivo import Arquivo, CorruptDatabaseError, ValidationError
from arquivo.repair import check_integrity, recover_shell, recover_sqlite, vacuum
from conftest import Backend
from test_cli import run, run_json

PAGE = 4096
MESSAGES = 4_000


def test_a_healthy_database_passes_and_vacuums(store: Arquivo) -> None:
    for i in range(200):
        store.conversations.append("u", "s", "user", f"message {i} " * 20)
    report = check_integrity(store.engine, full=True)
    assert report.ok, report.problems
    assert report.checks
    store.conversations.delete_session("u", "s")
    done = vacuum(store.engine)
    assert done.size_after is not None
    assert done.size_before is not None
    if store.dialect == "sqlite":  # PostgreSQL's plain VACUUM keeps the space for reuse
        assert done.size_after < done.size_before
    assert check_integrity(store.engine).ok


def _messages(path: Path) -> dict[int, tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return {row[0]: row for row in db.execute("SELECT * FROM conversation_history")}
    finally:
        db.close()


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, dict[int, tuple[Any, ...]]]:
    """A database whose middle pages were overwritten with garbage, and its rows before."""
    path = tmp_path / "damaged.db"
    with Arquivo.open(f"sqlite:///{path}") as store:
        store.preferences.set("u1", "theme", {"dark": True})
        request = store.hitl.request("wf", "step", {"x": 1}, user_id="u1")
        store.hitl.approve(request.id, actor="ana")
        rng = random.Random(7)
        for start in range(0, MESSAGES, 500):
            store.conversations.append_many(
                "u1",
                f"s{start}",
                [
                    {"role": "user", "content": f"{i}: " + "".join(rng.choices("abcdef ", k=300))}
                    for i in range(start, start + 500)
                ],
            )
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")  # every page in the main file
    db.close()
    original = _messages(path)
    assert not path.with_name(path.name + "-wal").exists()
    pages = path.stat().st_size // PAGE
    garbage = random.Random(1)
    with open(path, "r+b") as file:
        for page in (pages // 3, pages // 3 + 1, pages // 2, (2 * pages) // 3):
            file.seek(page * PAGE)
            file.write(garbage.randbytes(PAGE))
    return path, original


@pytest.mark.sqlite_only
@pytest.mark.parametrize("method", ["salvage", "shell"])
def test_recover_gets_back_the_rows_of_undamaged_pages(
    damaged: tuple[Path, dict[int, tuple[Any, ...]]], tmp_path: Path, method: str
) -> None:
    if method == "shell" and recover_shell() is None:
        pytest.skip("no sqlite3 shell with a working .recover here")
    path, original = damaged
    assert not check_integrity_of(path).ok
    before = path.read_bytes()

    output = tmp_path / "recovered.db"
    report = recover_sqlite(path, output, method=method)
    assert path.read_bytes() == before  # the damaged file is never touched
    recovered = _messages(output)
    assert report.rows["conversation_history"] == len(recovered)
    assert len(recovered) >= 0.9 * len(original), (len(recovered), len(original))
    assert len(recovered) < len(original)  # the garbage did hit some rows
    wrong = [row_id for row_id, row in recovered.items() if original.get(row_id) != row]
    assert wrong == []
    assert report.rows["user_preferences"] == 1
    assert report.rows["hitl_sessions"] == 1
    with Arquivo.open(f"sqlite:///{output}") as store:  # a working, migrated database
        assert store.preferences.get("u1", "theme") == {"dark": True}
        assert check_integrity(store.engine, full=True).ok
    with pytest.raises(ValidationError, match="already exists"):
        recover_sqlite(path, output)


def check_integrity_of(path: Path) -> Any:
    from arquivo.db.engine import create_engine

    engine = create_engine(f"sqlite:///{path}")
    try:
        return check_integrity(engine, full=True)
    finally:
        engine.dispose()


@pytest.mark.sqlite_only
def test_the_cli_detects_damage_and_recovers(
    damaged: tuple[Path, dict[int, tuple[Any, ...]]], tmp_path: Path
) -> None:
    path, original = damaged
    checked = run("--url", f"sqlite:///{path}", "db", "integrity")
    assert checked.returncode == 1
    assert "damage:" in checked.stderr
    assert "arquivo db recover" in checked.stderr
    assert "arquivo backup" in checked.stderr
    output = tmp_path / "out.db"
    report = run_json("db", "recover", str(path), "--output", str(output), "--method", "salvage")
    assert report["method"] == "salvage"
    assert report["rows"]["conversation_history"] >= 0.9 * len(original)
    healthy = run("--url", f"sqlite:///{output}", "db", "integrity", "--full")
    assert healthy.returncode == 0, healthy.stderr
    assert "no problems found" in healthy.stdout


@pytest.mark.sqlite_only
def test_an_unreadable_schema_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"SQLite format 3\x00" + random.Random(3).randbytes(PAGE * 4))
    with pytest.raises(CorruptDatabaseError):
        recover_sqlite(path, tmp_path / "out.db", method="salvage")
    assert not (tmp_path / "out.db").exists()
    assert not check_integrity_of(path).ok


def test_the_cli_integrity_and_vacuum_on_each_backend(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        store.preferences.set("u", "k", 1)
    report = run_json("--url", backend.url, "db", "integrity")
    assert report["ok"] is True
    assert run_json("--url", backend.url, "db", "vacuum")["size_after"] > 0


@pytest.mark.postgres_only
def test_amcheck_verifies_the_indexes_when_installed(postgres_backend: Backend) -> None:
    import sqlalchemy as sa

    with Arquivo.open(postgres_backend.url) as store:
        store.conversations.append("u", "s", "user", "hi")
        without = check_integrity(store.engine)
        assert any("amcheck is not installed" in note for note in without.checks)
        try:
            with store.engine.begin() as connection:
                connection.execute(sa.text("CREATE EXTENSION amcheck"))
        except sa.exc.DBAPIError:
            pytest.skip("this PostgreSQL has no amcheck extension")
        report = check_integrity(store.engine, full=True)
        assert report.ok, report.problems
        assert any("bt_index_check" in note for note in report.checks)
