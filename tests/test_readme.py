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
    assert "arquivo db upgrade" in run
    assert "pytest" in test


def test_ci_runs_both_readme_commands_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in _readme_commands():
        assert command in ci
