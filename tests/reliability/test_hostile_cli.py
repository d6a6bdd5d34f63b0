"""Hostile arguments to every ``arquivo`` command: a clean error or success, nothing changed.

Hypothesis draws each command's arguments and options from hostile text (any unicode,
lone surrogates as ``surrogateescape`` makes them from undecodable argv bytes, NUL
bytes, SQL-looking and path-traversal ids, malformed JSON and URLs). The commands run
in-process through click (a subprocess per example would cost a second each); the
rendering of errors through the real entry point is checked separately for a sample.
A command must end normally, with a usage error, or with an ``ArquivoError`` (which
``arquivo``'s entry point prints as a message and a hint); one that failed must leave
every table as it was. SQLite only: the CLI is the same code on both databases, whose
own handling of hostile values ``test_hostile.py`` covers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from arquivo import Arquivo, ArquivoError
from arquivo.cli.main import app
from reliability.checks import fingerprint
from reliability.hostile import SPECIAL_TEXT, any_text
from reliability.ledger import long_run, tally

# Commands that must not run with made-up arguments, and why.
SKIPPED = {
    ("db", "revision"): "writes a migration script into the installed package",
    ("serve",): "serves until stopped",
    ("backup", "schedule"): "installs a schedule on the machine",
}
MALFORMED = [
    "postgresql://[::1",
    "postgresql://u:p@localhost:notaport/db",
    "mysql://u@localhost/db",
    "sqlite:////proc/no/such/dir/x.db",
    "sqlite:///" + "a" * 5000,
    "http://example.com",
    "{not json",
    '{"a": NaN}',
    "[" * 5000,
    "1e999999",
]
argument_text = st.one_of(
    st.sampled_from([t for t in SPECIAL_TEXT if len(t) < 100_000]),
    st.sampled_from(MALFORMED),
    any_text,
    st.text(st.sampled_from("\udc80\udcff\udcfeab"), min_size=1, max_size=5),
)


# typer ships its own copy of click; its classes are reached through typer, duck-typed.
def _commands() -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.append((path, command))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = [(path, command) for path, command in _commands() if path not in SKIPPED]


_PATHLIKE = {"dir", "to", "folder", "path", "file", "output", "target", "source", "destination"}


def _inside(text: str) -> str:
    # Paths stay inside the test's own working directory: the hostile part is the name,
    # not a folder made or removed elsewhere on the machine (the tests run as root).
    return "./" + text.lstrip("/").replace("..", "__")


def argv(path: tuple[str, ...], command: Any) -> st.SearchStrategy[list[str]]:
    """The command's arguments, hostile, and a random subset of its options."""
    parts: list[st.SearchStrategy[list[str]]] = [st.just(list(path))]
    for param in command.params:
        values = argument_text
        kind = str(getattr(getattr(param, "type", None), "name", "")).lower()
        if kind == "path" or (param.name or "") in _PATHLIKE or set(param.opts) & {"--dir", "--to"}:
            values = argument_text.map(_inside)
        if param.param_type_name == "argument":
            parts.append(values.map(lambda text: [text]))
        elif param.param_type_name == "option" and "--help" not in param.opts:
            name = param.opts[-1] if param.opts[-1].startswith("--") else param.opts[0]
            if param.is_flag:
                parts.append(st.sampled_from([[], [name]]))
            else:
                parts.append(st.one_of(st.just([]), values.map(lambda t, n=name: [n, t])))
    return st.tuples(*parts).map(lambda chunks: [word for chunk in chunks for word in chunk])


@pytest.fixture(scope="module")
def cli_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile-cli') / 'arquivo.db'}"
    with Arquivo.open(url) as store:
        store.preferences.set("u1", "theme", "dark")
        store.conversations.append("u1", "s1", "user", "hello")
        store.metrics.record("op", 1.0)
        store.agents.upsert("coder", "qwen")
        store.hitl.request("wf", "step", {"tool": "rm"})
    return url


_LEDGER = tally("hostile input (CLI)", "sqlite")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_hostile_command_line(cli_database: str, path: tuple[str, ...], command: Any) -> None:
    runner = CliRunner()
    engine_store = Arquivo.open(cli_database)

    @settings(
        max_examples=100 if long_run() else 3,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(words=argv(path, command))
    def check(words: list[str]) -> None:
        before = fingerprint(engine_store.engine)
        _LEDGER.faults += 1
        result = runner.invoke(app, ["--url", cli_database, *words], input="n\n")
        error = result.exception
        if isinstance(error, SystemExit):
            error = None  # click's usage errors and typer.Exit
        if error is not None and not isinstance(error, ArquivoError):
            _LEDGER.error(error)
            raise AssertionError(f"arquivo {' '.join(map(repr, words))}: {error!r}") from error
        if error is not None:
            _LEDGER.error(error)
            assert error.message.strip()
        if result.exit_code != 0:
            assert fingerprint(engine_store.engine) == before, "a failed command changed data"
        else:
            _LEDGER.acknowledged += 1
        _LEDGER.verified += 1

    try:
        check()
    finally:
        engine_store.close()


ARQUIVO = Path(sys.executable).with_name("arquivo")


@pytest.mark.parametrize(
    "words",
    [
        ["prefs", "get", "'; DROP TABLE user_preferences; --", "k"],
        ["prefs", "get", "u1\u202e", "k"],
        ["hitl", "approve", "../../../etc/passwd", "--actor", "[bold]x[/]"],
        ["metrics", "summary", "--since", "1e999999"],
    ],
    ids=lambda words: " ".join(words)[:40],
)
def test_errors_through_the_real_entry_point(cli_database: str, words: list[str]) -> None:
    """The console script prints one error line and a hint, exit code 1, no traceback."""
    result = subprocess.run(
        [str(ARQUIVO), "--url", cli_database, *words],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
        timeout=120,
    )
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr
    assert "unexpected error" not in result.stderr
    assert result.stderr.strip(), "failed without saying why"
    if result.stderr.startswith("error: "):
        assert "\nhint: " in result.stderr, result.stderr


@pytest.mark.parametrize("url", MALFORMED[:6])
def test_malformed_urls_are_configuration_or_availability_errors(url: str) -> None:
    """``Arquivo.open`` on a malformed or unreachable URL: an ArquivoError, quickly."""
    with pytest.raises(ArquivoError) as caught:
        Arquivo.open(url).close()
    assert caught.value.hint
