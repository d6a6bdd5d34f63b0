"""Reliability-suite hooks: print the table of faults at the end of the run.

``ARQUIVO_RELIABILITY=long`` runs the long version; ``ARQUIVO_RELIABILITY_LEDGER=FILE``
also writes the tallies to ``FILE`` (what ``python -m tests.reliability.report`` reads).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability import ledger


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    entries = ledger.recorded()
    if not entries:
        return
    mode = "long" if ledger.long_run() else "short (CI)"
    terminalreporter.section(f"reliability report, {mode} version")
    terminalreporter.write_line(ledger.table(entries))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(ledger.LEDGER_ENV)
    if target:
        ledger.save(Path(target))
