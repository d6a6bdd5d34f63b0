"""The README's two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_the_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    run, test = commands
    assert run.endswith("arquivo serve")  # the main job is the service
    assert "pytest" in test


def test_ci_runs_both_readme_commands_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in _readme_commands():
        assert command in ci


def test_ci_runs_the_service_and_stops_it() -> None:
    # The main job serves for ever: CI runs its line inside a function started in the
    # background, waits for readiness, talks to it, and stops it before the tests.
    ci = (REPO / ".ci" / "run").read_text()
    serve = _readme_commands()[0]
    function = re.search(r"^(\w+)\(\) \{\n" + re.escape(serve) + r"\n\}$", ci, re.MULTILINE)
    assert function, "the README's main command must be the whole body of a function"
    name = function.group(1)
    assert re.search(rf"^{name} .*&$", ci, re.MULTILINE), "the function runs in the background"
    started = ci.index(f"\n{name} ")
    assert ci.index("/readyz", started) < ci.index("\nstop_server\n", started)
    assert ci.index("\nstop_server\n", started) < ci.index(_readme_commands()[1])
