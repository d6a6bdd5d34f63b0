"""Eight processes at once on one database: no error reaches a caller, nothing lost or doubled.

Each process mixes appends (to its own session and to one shared by all), batch appends,
history reads (which must show its own last writes, in order), preference upserts,
metric records, HITL requests and HITL approvals that race the other processes for the
same sessions. Afterwards the parent checks every acknowledged write is stored exactly
once, each writer's messages are in the order it wrote them (also inside the shared
session), each preference holds its writer's last value, and every HITL session was
decided by exactly the one process that was told it won.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import cast

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, ConflictError
from arquivo.models import ConversationHistory, HITLAction, HITLSession, SystemMetric
from conftest import Backend
from reliability.checks import integrity_problems
from reliability.ledger import scaled, scaled_seconds, tally
from reliability.processes import Child, say, spawn

USER = "load"
PROCESSES = 8
_MESSAGES = cast(sa.Table, ConversationHistory.__table__)
_METRICS = cast(sa.Table, SystemMetric.__table__)
_SESSIONS = cast(sa.Table, HITLSession.__table__)
_ACTIONS = cast(sa.Table, HITLAction.__table__)


def worker(out: int, url: str, index: int, seconds: float, seed: int) -> None:
    """Mix every kind of call for ``seconds``; report acks, wins and errors."""
    rng = random.Random(seed)
    own = f"p{index}"
    mine: list[str] = []  # contents of this process's own session, in order
    with Arquivo.open(url) as store:
        say(out, "R")
        deadline = time.monotonic() + seconds
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            token = f"{own}-{seq}"
            op = rng.choice("aasbhhpxqd")
            try:
                if op == "a":
                    store.conversations.append(USER, own, "user", token)
                    mine.append(token)
                elif op == "s":
                    store.conversations.append(USER, "shared", "user", token)
                elif op == "b":
                    batch = [f"{token}.{i}" for i in range(4)]
                    store.conversations.append_many(
                        USER, own, [{"role": "assistant", "content": c} for c in batch]
                    )
                    mine.extend(batch)
                elif op == "h":
                    got = [m.content for m in store.conversations.history(USER, own, limit=5)]
                    if got != mine[-5:]:
                        say(out, "E", "ReadYourWritesViolation", got, mine[-5:])
                    continue
                elif op == "p":
                    store.preferences.set(USER, own, seq)
                elif op == "x":
                    store.metrics.record("load", float(seq), extra_data={"token": token})
                elif op == "q":
                    request = store.hitl.request("load", token, {"from": own})
                    say(out, "Q", request.id)
                    continue
                else:
                    # The oldest few: the processes collide on them, as people would.
                    pending = store.hitl.pending("load", limit=3)
                    if not pending:
                        continue
                    target = rng.choice(pending).id
                    try:
                        store.hitl.approve(target, actor=own)
                    except ConflictError:
                        say(out, "C", target)  # another process won: expected
                        continue
                    say(out, "W", target)
                    continue
            except Exception as exc:  # reported to the parent, which fails the test
                say(out, "E", type(exc).__name__, exc)
                continue
            say(out, "K", op, token)


def _token_seq(content: str) -> tuple[int, int]:
    number = content.rsplit("-", 1)[1]
    main, _, part = number.partition(".")
    return int(main), int(part or 0)


def run_load(backend: Backend, fault: str) -> None:
    ledger = tally(fault, backend.name)
    Arquivo.open(backend.url).close()  # migrate once, before the load
    seconds = scaled_seconds(3.0, 30.0)
    children: list[Child] = [
        spawn(worker, backend.url, i, seconds, 1000 + i) for i in range(PROCESSES)
    ]
    for child in children:
        child.wait(timeout=seconds + 120)
    errors = [(c.pid, e) for c in children for e in c.events("E")]
    for _, (name, *_rest) in errors:
        ledger.error(name)
    assert all(c.exit_status == 0 for c in children), [c.lines[-3:] for c in children]
    assert not errors, errors[:5]

    acked: dict[str, str] = {}
    wins: Counter[str] = Counter()
    winner: dict[str, str] = {}
    requested: set[str] = set()
    last_pref: dict[str, int] = {}
    conflicts = 0
    for index, child in enumerate(children):
        for op, token in child.events("K"):
            acked[token] = op
            if op == "p":
                last_pref[f"p{index}"] = _token_seq(token)[0]
        for (session_id,) in child.events("W"):
            wins[session_id] += 1
            winner[session_id] = f"p{index}"
        requested.update(session_id for (session_id,) in child.events("Q"))
        conflicts += len(child.events("C"))
    ledger.acknowledged = len(acked) + sum(wins.values()) + len(requested)

    with Arquivo.open(backend.url) as store:
        assert integrity_problems(store.engine) == []
        with store.engine.connect() as connection:
            messages = connection.execute(
                sa.select(_MESSAGES.c.session_id, _MESSAGES.c.content)
                .where(_MESSAGES.c.user_id == USER)
                .order_by(_MESSAGES.c.id)
            ).all()
            metrics = (
                connection.execute(
                    sa.select(_METRICS.c.extra_data).where(_METRICS.c.operation == "load")
                )
                .scalars()
                .all()
            )
            sessions = connection.execute(
                sa.select(_SESSIONS.c.id, _SESSIONS.c.status, _SESSIONS.c.decided_by).where(
                    _SESSIONS.c.workflow_id == "load"
                )
            ).all()
            decisions = Counter(
                connection.execute(
                    sa.select(_ACTIONS.c.session_id).where(_ACTIONS.c.action_type == "decided")
                ).scalars()
            )
        prefs = {key: store.preferences.get(USER, key) for key in last_pref}

    present: Counter[str] = Counter(content for _, content in messages)
    present.update(extra["token"] for extra in metrics)
    doubled = [token for token, count in present.items() if count != 1]
    assert not doubled, f"stored more than once: {doubled[:10]}"
    verified = 0
    for token, op in acked.items():
        if op == "b":
            assert all(present[f"{token}.{i}"] == 1 for i in range(4)), token
        elif op != "p":
            assert present[token] == 1, f"acknowledged {op} write lost: {token}"
        verified += 1
    assert prefs == {key: last for key, last in last_pref.items()}
    # Per writer, its messages in the order it wrote them, in its own and the shared session.
    order: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for session, content in messages:
        writer = content.rsplit("-", 1)[0]
        order.setdefault((session, writer), []).append(_token_seq(content))
    for key, seqs in order.items():
        assert seqs == sorted(seqs), f"{key} out of order"
    # HITL: one winner per session, the one the database names, with one decision each.
    assert {s.id for s in sessions} == requested
    assert max(wins.values(), default=1) == 1, wins.most_common(3)
    for session_id, status, decided_by in sessions:
        if session_id in winner:
            assert (status, decided_by) == ("approved", winner[session_id])
            assert decisions[session_id] == 1
        else:
            assert status == "pending"
            assert decisions[session_id] == 0
        verified += 1
    verified += len(wins)
    ledger.verified = verified
    # Races lost to another process are expected answers (ConflictError), not failures.
    if conflicts:
        ledger.error("ConflictError (lost race, expected)", conflicts)
    assert wins, "no HITL approval won"
    assert len(acked) > scaled(PROCESSES * 10, 2000), len(acked)


def test_eight_processes_on_one_database(backend: Backend) -> None:
    run_load(backend, f"{PROCESSES} processes, mixed calls")


pytestmark = pytest.mark.timeout(600)
