"""Defects the reliability suite found, each pinned by the smallest test that shows it."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arquivo import Arquivo, ConfigurationError, ValidationError
from arquivo.cli.main import app
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.settings import Settings
from reliability.processes import say, spawn


def _load_settings_as_nobody(out: int, folder: str) -> None:
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    os.chdir(folder)
    try:
        Settings.load()
    except ConfigurationError as exc:
        say(out, "E", type(exc).__name__, exc.message)
    except Exception as exc:
        say(out, "X", type(exc).__name__, exc)
    else:
        say(out, "K")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_an_unreadable_dot_env_is_a_configuration_error() -> None:
    """Found by the read-only test: a .env that cannot be read raised PermissionError."""
    folder = Path(tempfile.mkdtemp(prefix="arquivo-env-"))
    try:
        folder.chmod(0o755)
        (folder / ".env").write_text("ARQUIVO_ECHO=false\n")
        (folder / ".env").chmod(0o600)  # root's: unreadable for nobody
        child = spawn(_load_settings_as_nobody, str(folder))
        assert child.wait() == 0, child.lines
        assert child.events("X") == []
        ((name, message),) = child.events("E")
        assert name == "ConfigurationError"
        assert ".env" in message
    finally:
        (folder / ".env").unlink()
        folder.rmdir()


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def test_input_too_deep_to_repr_is_a_validation_error(store: Arquivo) -> None:
    """Found by the hostile-input tests: quoting a 2,000-deep list raised RecursionError."""
    closed = store.hitl.request("wf", "step", {})
    store.hitl.approve(closed.id, actor="ana")
    with pytest.raises(ValidationError, match="timeout must be a number") as caught:
        store.hitl.wait(closed.id, timeout=_nested(2000))  # type: ignore[arg-type]
    assert "too large to show" in caught.value.message


def test_a_huge_integer_is_quoted_briefly(store: Arquivo) -> None:
    """Found by the hostile-input tests: a 5,000-digit limit was echoed in full."""
    with pytest.raises(ValidationError) as caught:
        store.hitl.pending(limit=10**5000)
    assert len(str(caught.value)) < 300


def test_json_with_an_integer_too_large_to_write_is_a_validation_error(store: Arquivo) -> None:
    """Found by the hostile-input tests: json.dumps raised ValueError past 4,300 digits."""
    with pytest.raises(ValidationError, match=r"more than 4,000 digits at memory\.huge"):
        store.agents.update_memory("coder", {"huge": 10**5000})


ROUND_TRIP = [
    1.0,
    -0.0,
    0.1 + 0.2,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**3000,
    -7,
    True,
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_numbers_stored_as_json_round_trip_exactly(store: Arquivo, value: object) -> None:
    """Found by the hostile-input tests: on SQLite a JSON column's NUMERIC affinity turned
    1.0 into 1, -0.0 into 0 and integers past 64 bits into rounded floats (or inf)."""
    store.preferences.set("u", "n", value)
    message = store.conversations.append("u", "s", "user", "x", extra_data=value)
    assert message.extra_data == value
    for got in (
        store.preferences.get("u", "n"),
        store.conversations.history("u", "s")[0].extra_data,
    ):
        if store.dialect == "sqlite" or not isinstance(value, float):
            assert repr(got) == repr(value)
        else:
            # PostgreSQL's JSONB keeps numbers as numeric: -0.0 reads back as 0.0, and a
            # float with no fraction (1e308) as an integer with its decimal digits.
            assert float(got) == value


@pytest.mark.parametrize("revision", ["", "\ud800", "head; rm -rf /", "x" * 100])
def test_a_bad_revision_argument_is_a_validation_error(tmp_path: Path, revision: str) -> None:
    """Found by the hostile CLI tests: Alembic failed on '' with a bare AssertionError, and
    `db downgrade` crashed showing a lone surrogate in its question."""
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        for action in (migrate.upgrade, migrate.downgrade):
            with pytest.raises(ValidationError, match="not a revision"):
                action(engine, revision)
    finally:
        engine.dispose()
    result = CliRunner().invoke(
        app, ["--url", f"sqlite:///{tmp_path / 'a.db'}", "db", "downgrade", revision]
    )
    assert isinstance(result.exception, ValidationError)


@pytest.mark.parametrize(
    "words",
    [
        ["prefs", "set", "u", "k", "[" * 5000, "--json"],
        ["hitl", "approve", "x", "--actor", "a", "--data", "[" * 5000],
    ],
)
def test_cli_json_nested_too_deeply_is_a_validation_error(tmp_path: Path, words: list[str]) -> None:
    """Found by the hostile CLI tests: json.loads raised RecursionError."""
    result = CliRunner().invoke(app, ["--url", f"sqlite:///{tmp_path / 'a.db'}", *words])
    assert isinstance(result.exception, ValidationError)
    assert "nested too deeply" in result.exception.message


def test_a_sqlite_path_too_long_is_a_configuration_error() -> None:
    """Found by the hostile-input tests: the path check raised OSError (name too long)."""
    with pytest.raises(ConfigurationError, match="not usable"):
        Arquivo.open("sqlite:///" + "a" * 5000)
