"""Corruption: random pages of a database overwritten are detected, never served as data.

SQLite: copies of a database with every kind of row get one to three random pages
overwritten with random bytes (the first one always gets page 1, the header). Each copy
must be refused at open, or fail the integrity check, or (when only unused pages were
hit) hold exactly the original rows; and every read through the store on it must either
succeed or raise ``CorruptDatabaseError`` whose hint points to backups and recovery.

PostgreSQL: a page of a table's file is overwritten while the server is stopped; after
the restart, reading it raises ``CorruptDatabaseError`` too.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, CorruptDatabaseError
from arquivo.db.dialects import translate_errors
from reliability.checks import fingerprint
from reliability.ledger import Tally, scaled, tally
from reliability.pgcontrol import PostgresControl

SESSIONS = 7


def populate(store: Arquivo) -> None:
    """Rows of every kind, some long enough to need overflow pages."""
    for i in range(300):
        store.conversations.append(
            "u", f"s{i % SESSIONS}", "user", f"m{i} " + "abc" * (i * 7 % 900)
        )
    for i in range(50):
        store.preferences.set("u", f"k{i}", {"value": i, "tags": ["a", "b"]})
    for i in range(200):
        store.metrics.record("op", float(i), extra_data={"i": i})
    for i in range(20):
        request = store.hitl.request("wf", f"step{i}", {"i": i})
        if i % 2:
            store.hitl.approve(request.id, actor="ana")
    store.agents.upsert("coder", "qwen", instructions="Be brief." * 50, tools=["fs"])


def reads(store: Arquivo) -> list[Callable[[], Any]]:
    """Every read a user would make on the populated store."""
    calls: list[Callable[[], Any]] = [
        lambda i=i: store.conversations.history("u", f"s{i}") for i in range(SESSIONS)
    ]
    calls += [
        lambda: store.conversations.sessions("u"),
        lambda: store.conversations.search("u", "abc"),
        lambda: store.preferences.all("u"),
        lambda: store.metrics.list("op", limit=1000),
        lambda: store.metrics.summary(),
        lambda: store.hitl.list(limit=100),
        lambda: store.agents.list(),
        lambda: store.agents.versions("coder"),
    ]
    return calls


def integrity_check(store: Arquivo) -> list[str]:
    """``PRAGMA integrity_check``, its failures translated like every other call's."""
    with translate_errors(store.dialect), store.engine.connect() as connection:
        rows = connection.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    return [] if rows == ["ok"] else [str(row) for row in rows]


def _assert_points_to_recovery(error: CorruptDatabaseError) -> None:
    assert "backup" in error.hint
    assert "recover" in error.hint


def _examine(url: str, original: str, ledger: Tally) -> str:
    """Open a damaged copy and use it; how the damage showed."""
    try:
        store = Arquivo.open(url)
    except CorruptDatabaseError as exc:
        _assert_points_to_recovery(exc)
        ledger.error(exc)
        return "refused at open"
    try:
        for read in reads(store):
            try:
                read()
            except CorruptDatabaseError as exc:
                _assert_points_to_recovery(exc)
                ledger.error(exc)
            # Any other error, ArquivoError or not, fails the test here.
        try:
            problems = integrity_check(store)
        except CorruptDatabaseError as exc:
            _assert_points_to_recovery(exc)
            return "integrity check"
        if problems:
            return "integrity check"
        assert fingerprint(store.engine) == original, "undetected corruption changed the data"
        return "unused page"
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_random_page_overwrites_are_detected(tmp_path: Path) -> None:
    ledger = tally("random page overwrites", "sqlite")
    source = tmp_path / "good.db"
    with Arquivo.open(f"sqlite:///{source}") as store:
        populate(store)
        original = fingerprint(store.engine)
    data = source.read_bytes()  # closed: the WAL is checkpointed into the file
    page_size = int.from_bytes(data[16:18], "big")
    pages = len(data) // page_size
    assert pages > 50
    rng = random.Random(5)
    outcomes: dict[str, int] = {}
    copy = tmp_path / "damaged.db"
    for round_ in range(scaled(25, 300)):
        damaged = bytearray(data)
        hit = [0] if round_ == 0 else rng.sample(range(pages), rng.randint(1, 3))
        for page in hit:
            damaged[page * page_size : (page + 1) * page_size] = rng.randbytes(page_size)
        copy.write_bytes(damaged)
        for suffix in ("-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
        ledger.faults += 1
        outcome = _examine(f"sqlite:///{copy}", original, ledger)
        if round_ == 0:
            assert outcome == "refused at open", "a damaged header was not refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        ledger.verified += 1
    assert outcomes.get("integrity check", 0) > outcomes.get("unused page", 0), outcomes
    # The original is untouched by all this.
    shutil.copy(source, copy)
    with Arquivo.open(f"sqlite:///{copy}") as store:
        assert integrity_check(store) == []


@pytest.mark.postgres_only
def test_postgres_damaged_table_page_is_reported_as_corruption(
    stoppable_postgres: tuple[str, PostgresControl],
) -> None:
    url, control = stoppable_postgres
    ledger = tally("table page overwritten", "postgresql")
    with Arquivo.open(url) as store:
        populate(store)
        with store.engine.connect() as connection:
            relative = connection.execute(
                sa.text("SELECT pg_relation_filepath('conversation_history')")
            ).scalar_one()
    control.stop("fast")
    heap = control.data / relative
    with heap.open("r+b") as file:
        file.write(random.Random(6).randbytes(8192))  # block 0: header and line pointers
    ledger.faults += 1
    control.start()
    with Arquivo.open(url) as store:
        with pytest.raises(CorruptDatabaseError) as caught:
            for session in range(SESSIONS):
                store.conversations.history("u", f"s{session}")
        ledger.error(caught.value)
        assert "backup" in caught.value.hint
        assert "recover" in caught.value.hint
        # The other tables are unharmed and still served.
        assert len(store.preferences.all("u")) == 50
        assert len(store.metrics.list("op", limit=1000)) == 200
        ledger.verified += 1
