"""The ``arquivo`` command through its real console-script entry point."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from arquivo.cli import app
from arquivo.db import migrate
from arquivo.models import Base
from conftest import Backend

ARQUIVO = Path(sys.executable).with_name("arquivo")
VERSIONS = Path(migrate.__file__).resolve().parents[1] / "migrations" / "versions"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ARQUIVO), *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
        check=False,
        timeout=120,
    )


def run_json(*args: str, **kwargs: Any) -> Any:
    result = run(*args, "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for info in group.registered_groups:
        assert info.name
        assert info.typer_instance
        paths.extend(_commands(info.typer_instance, (*prefix, info.name)))
    for command in group.registered_commands:
        assert command.callback is not None
        assert command.callback.__doc__, f"{command.callback.__name__} has no help text"
        paths.append((*prefix, command.name or command.callback.__name__))
    return paths


@pytest.mark.parametrize("path", _commands(app), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3


def test_version() -> None:
    from arquivo import __version__

    assert run("--version").stdout.strip() == f"arquivo {__version__}"


def test_the_migration_commands_on_each_backend(backend: Backend) -> None:
    url = ("--url", backend.url)
    first = run(*url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded empty database -> " in first.stdout
    assert "already at" in run(*url, "db", "upgrade").stdout

    current = run_json(*url, "db", "current")
    assert current == {
        "current": migrate.head_revision(),
        "head": migrate.head_revision(),
        "up_to_date": True,
    }
    info = run_json(*url, "db", "info")
    assert info["dialect"] == backend.name
    assert info["revision"] == migrate.head_revision()
    assert info["size_bytes"] > 0
    tables = {row["table"]: row["rows"] for row in run_json(*url, "db", "tables")}
    assert set(Base.metadata.tables) <= set(tables)
    assert tables[migrate.VERSION_TABLE] == 1
    assert run(*url, "db", "check").returncode == 0

    # Destructive: refused without --yes when nobody answers the question.
    refused = run(*url, "db", "downgrade", "-1")
    assert refused.returncode != 0
    assert run_json(*url, "db", "current")["current"] == migrate.head_revision()

    down = run(*url, "db", "downgrade", "-1", "--yes")
    assert down.returncode == 0, down.stderr
    assert run_json(*url, "db", "current")["current"] == migrate.history()[0].down_revision
    behind = run(*url, "db", "check")
    assert behind.returncode == 1
    assert "arquivo db upgrade" in behind.stderr

    assert run(*url, "db", "downgrade", "base", "--yes").returncode == 0
    assert run_json(*url, "db", "current")["current"] is None
    assert run(*url, "db", "upgrade", "head").returncode == 0
    assert run_json(*url, "db", "current")["up_to_date"] is True


def test_history() -> None:
    out = run("db", "history").stdout
    assert f"<base> -> {migrate.history()[-1].id}" in out
    assert "(head)" in out
    assert run_json("db", "history")[0]["is_head"] is True


def test_the_default_database_is_the_seeds_sqlite_file(tmp_path: Path) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    info = run_json("db", "info", cwd=tmp_path)
    assert info["url"] == "sqlite:///./data/arquivo.db"
    with sqlite3.connect(tmp_path / "data" / "arquivo.db") as db:
        db.execute(
            "INSERT INTO user_preferences (user_id, key, value) "
            "VALUES ('user123', 'theme', '\"dark\"')"
        )
        rows = db.execute("SELECT * FROM user_preferences;").fetchall()
    assert rows[0][1:4] == ("user123", "theme", '"dark"')


def test_a_file_name_that_is_not_utf8_is_printed_escaped(tmp_path: Path) -> None:
    # Found by the hostile CLI test: the export worked, then printing its name crashed.
    target = tmp_path / "a\udc80\udcfe.jsonl"  # the bytes a\x80\xfe.jsonl on disk
    done = run("--url", f"sqlite:///{tmp_path / 'db.sqlite'}", "export", "--to", str(target))
    assert done.returncode == 0, done.stderr
    assert "a\\udc80\\udcfe.jsonl" in "".join(done.stdout.split())  # (the table wraps it)
    assert os.listdir(os.fsencode(tmp_path)).count(b"a\x80\xfe.jsonl") == 1


def test_dot_env_and_environment_choose_the_database(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///./from_env_file.db\n")
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert (tmp_path / "from_env_file.db").is_file()
    env = {"DATABASE_URL": "sqlite:///./from_environment.db"}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "from_environment.db").is_file()


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DATABASE_URL": "mysql://u:p@localhost/db"}, "unsupported database"),
        ({"DATABASE_URL": "not a url"}, "is not a URL"),
        ({"DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/db"}, "cannot reach PostgreSQL"),
        ({"ARQUIVO_AUTO_MIGRATE": "perhaps"}, "invalid Arquivo settings"),
        ({"DATABASE_URL": "sqlite:///./garbage.db"}, "damaged"),
    ],
)
def test_bad_configuration_is_one_clear_error(
    tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    (tmp_path / "garbage.db").write_bytes(b"\x00\x01 not sqlite " * 100)
    result = run("db", "info", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert fragment in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "pw@" not in result.stderr


def test_autogenerated_revision_is_written_into_the_package(sqlite_backend: Backend) -> None:
    url = ("--url", sqlite_backend.url)
    assert run(*url, "db", "upgrade").returncode == 0
    before = set(VERSIONS.glob("*.py"))
    result = run(*url, "db", "revision", "-m", "nothing to do", "--autogenerate")
    created = set(VERSIONS.glob("*.py")) - before
    try:
        assert result.returncode == 0, result.stderr
        assert len(created) == 1
        (path,) = created
        text = path.read_text()
        assert path.name.endswith("_nothing_to_do.py")
        assert f"down_revision: str | Sequence[str] | None = '{migrate.head_revision()}'" in text
        assert "def downgrade() -> None:" in text
    finally:
        for path in created:
            path.unlink()
