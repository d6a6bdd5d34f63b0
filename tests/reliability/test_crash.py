"""``kill -9`` at random moments: every acknowledged write survives, exactly once.

Two child processes write to one database (single messages, batches of three, metrics,
and preferences in pairs) and report each write before it starts and once it returned;
the parent kills both at random moments, sometimes while they are still opening the
store. After every kill the parent opens the store, runs the database's integrity check,
and checks that every acknowledged write is present exactly once, that nothing is present
twice or was never attempted, and that each session's messages are in the order written.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import pytest
import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.models import ConversationHistory, SystemMetric, UserPreference
from arquivo.settings import Settings
from conftest import Backend
from reliability.checks import integrity_problems
from reliability.ledger import Tally, scaled, tally
from reliability.processes import Child, run_until, say, spawn

USER = "crash"
WRITERS = 2  # per round; both are killed
_MESSAGES = cast(sa.Table, ConversationHistory.__table__)
_METRICS = cast(sa.Table, SystemMetric.__table__)
_PREFS = cast(sa.Table, UserPreference.__table__)


def writer(out: int, url: str, synchronous: str, worker: int, seed: int) -> None:
    """Write forever (until killed), announcing each write and acknowledging it."""
    rng = random.Random(seed)
    settings = Settings(sqlite_synchronous=synchronous)  # type: ignore[arg-type]
    session = f"w{worker}"
    with Arquivo.open(url, settings=settings) as store:
        say(out, "R")
        for seq in range(1, 1_000_000):
            token = f"w{worker}-{seq}"
            kind = rng.choice("mmMxp")
            say(out, "A", kind, token)
            try:
                if kind == "m":
                    store.conversations.append(USER, session, "user", token)
                elif kind == "M":
                    batch = [{"role": "assistant", "content": f"{token}.{i}"} for i in range(3)]
                    store.conversations.append_many(USER, session, batch)
                elif kind == "x":
                    store.metrics.record("crash", float(seq), extra_data={"token": token})
                else:
                    store.preferences.set_many(USER, {token: seq, f"{session}-last": seq})
            except Exception as exc:  # reported, and counted by the parent
                say(out, "E", type(exc).__name__, exc)
                continue
            say(out, "K", kind, token)


@dataclass
class Expected:
    """Everything the killed writers attempted and acknowledged, so far."""

    attempted: dict[str, str] = field(default_factory=dict)  # token -> kind
    acknowledged: dict[str, str] = field(default_factory=dict)
    last_pref: dict[str, int] = field(default_factory=dict)  # session -> last acked seq

    def take(self, child: Child) -> None:
        for kind, token in child.events("A"):
            self.attempted[token] = kind
        for kind, token in child.events("K"):
            self.acknowledged[token] = kind
            if kind == "p":
                session, seq = token.rsplit("-", 1)
                self.last_pref[session] = max(self.last_pref.get(session, 0), int(seq))


def _seq(token: str) -> tuple[int, int]:
    # "w3-17" -> (17, 0); "w3-17.2" -> (17, 2): the order the writer produced them.
    number = token.rsplit("-", 1)[1]
    main, _, part = number.partition(".")
    return int(main), int(part or 0)


def verify(url: str, expected: Expected, ledger: Tally) -> None:
    """Open the store after a kill and check it against what was acknowledged."""
    with Arquivo.open(url) as store:
        assert integrity_problems(store.engine) == []
        with store.engine.connect() as connection:
            messages = connection.execute(
                sa.select(_MESSAGES.c.id, _MESSAGES.c.session_id, _MESSAGES.c.content)
                .where(_MESSAGES.c.user_id == USER)
                .order_by(_MESSAGES.c.id)
            ).all()
            metrics = (
                connection.execute(
                    sa.select(_METRICS.c.extra_data).where(_METRICS.c.operation == "crash")
                )
                .scalars()
                .all()
            )
            prefs = dict(
                connection.execute(
                    sa.select(_PREFS.c.key, _PREFS.c.value).where(_PREFS.c.user_id == USER)
                ).all()
            )
    present: Counter[str] = Counter(content for _, _, content in messages)
    present.update(extra["token"] for extra in metrics)
    present.update(key for key in prefs if not key.endswith("-last"))
    twice = [token for token, count in present.items() if count > 1]
    assert not twice, f"written more than once: {twice[:10]}"
    phantoms = [t for t in present if t.split(".")[0] not in expected.attempted]
    assert not phantoms, f"present but never attempted: {phantoms[:10]}"
    verified = 0
    for token, kind in expected.acknowledged.items():
        wanted = [f"{token}.{i}" for i in range(3)] if kind == "M" else [token]
        missing = [w for w in wanted if present[w] != 1]
        assert not missing, f"acknowledged {kind} write lost: {missing}"
        if kind == "p":
            assert prefs[token] == _seq(token)[0]
        verified += 1
    # A batch is all or nothing.
    for token, kind in expected.attempted.items():
        if kind == "M":
            assert len({present[f"{token}.{i}"] for i in range(3)}) == 1, f"torn batch {token}"
    for session, seq in expected.last_pref.items():
        last = prefs[f"{session}-last"]
        assert last >= seq, f"{session}-last went back from {seq} to {last}"
        assert f"{session}-{last}" in expected.attempted
    # Each session's messages in the order its writer produced them.
    by_session: dict[str, list[tuple[int, int]]] = {}
    for _, session, content in messages:
        by_session.setdefault(session, []).append(_seq(content))
    for session, order in by_session.items():
        assert order == sorted(order), f"session {session} out of order"
    ledger.verified = verified
    ledger.acknowledged = len(expected.acknowledged)


def kill_rounds(url: str, synchronous: str, ledger: Tally, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    expected = Expected()
    # Open (and migrate) once so that every kill lands on a store, not on the migration.
    Arquivo.open(url).close()
    worker = 0
    for _ in range(rounds):
        children = []
        for _ in range(WRITERS):
            worker += 1
            children.append(spawn(writer, url, synchronous, worker, rng.randrange(2**32)))
        start = time.monotonic()
        run_until(children, [start + rng.uniform(0.02, 0.4) for _ in children])
        for child in children:
            child.wait()
            assert child.killed, f"writer exited on its own:\n{child.lines[-5:]}"
            ledger.kills += 1
            ledger.faults += 1
            for name, *_ in child.events("E"):
                ledger.error(name)
            assert not child.events("E"), child.events("E")[:3]
            expected.take(child)
        verify(url, expected, ledger)
    assert ledger.acknowledged > rounds, "the writers hardly wrote anything before the kills"


def test_kill_9_on_sqlite_loses_no_acknowledged_write(sqlite_backend: Backend) -> None:
    """SQLite with synchronous=NORMAL (the default): a process crash loses nothing."""
    ledger = tally("kill -9 writers (synchronous=NORMAL)", "sqlite")
    kill_rounds(sqlite_backend.url, "NORMAL", ledger, scaled(9, 150), seed=1)


def test_kill_9_on_sqlite_full_loses_no_acknowledged_write(sqlite_backend: Backend) -> None:
    """SQLite with synchronous=FULL."""
    ledger = tally("kill -9 writers (synchronous=FULL)", "sqlite")
    kill_rounds(sqlite_backend.url, "FULL", ledger, scaled(9, 150), seed=2)


def test_kill_9_on_postgres_loses_no_acknowledged_write(postgres_backend: Backend) -> None:
    """PostgreSQL: a client killed mid-transaction leaves nothing half-written."""
    ledger = tally("kill -9 writers", "postgresql")
    kill_rounds(postgres_backend.url, "NORMAL", ledger, scaled(9, 150), seed=3)


pytestmark = pytest.mark.timeout(600)
