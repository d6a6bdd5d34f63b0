"""Reliability-suite hooks: print the table of faults at the end of the run.

``ARQUIVO_RELIABILITY=long`` runs the long version; ``ARQUIVO_RELIABILITY_LEDGER=FILE``
also writes the tallies to ``FILE`` (what ``python -m tests.reliability.report`` reads).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import provided_postgres
from reliability import ledger
from reliability.pgcontrol import PostgresControl


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


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[str]:
    """An admin URL of a PostgreSQL server of its own, which a test may stop and restart."""
    if os.environ.get("ARQUIVO_TEST_DATABASE_URL"):
        pytest.skip("stopping the server needs the embedded one, not ARQUIVO_TEST_DATABASE_URL")
    yield from provided_postgres()


@pytest.fixture
def stoppable_postgres(private_postgres: str) -> Iterator[tuple[str, PostgresControl]]:
    """A fresh database on the private server, and the means to stop and start that server."""
    from pg_server import scratch_database

    control = PostgresControl.of(private_postgres)
    with scratch_database(private_postgres, "arquivo_fault") as url:
        try:
            yield url, control
        finally:
            with contextlib.suppress(Exception):  # a test that failed with the server down
                control.start()
