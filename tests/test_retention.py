"""Forgetting a user and applying retention: what goes, what stays, in short transactions."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from arquivo import Arquivo, ValidationError
from arquivo.domain.retention import RetentionPolicy
from arquivo.models import ConversationHistory, HITLAction, HITLSession, SystemMetric
from conftest import Backend
from test_portability import fill

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)


def _count(store: Arquivo, model: Any, *where: Any) -> int:
    with store.transaction(read_only=True) as session:
        query = sa.select(sa.func.count()).select_from(model).where(*where)
        return int(session.execute(query).scalar_one())


def test_forget_user_removes_every_row_of_theirs_and_nothing_else(store: Arquivo) -> None:
    fill(store)
    before_metrics = _count(store, SystemMetric)
    counted = store.users.data("u1")
    assert counted.dry_run
    assert counted.rows["conversation_history"] == 30
    assert counted.rows["user_preferences"] == 2
    assert counted.rows["hitl_sessions"] == 1
    assert counted.rows["hitl_actions"] >= 2
    assert _count(store, ConversationHistory, ConversationHistory.user_id == "u1") == 30

    forgotten = store.users.forget("u1")
    assert not forgotten.dry_run
    assert forgotten.rows == counted.rows
    assert forgotten.total == counted.total
    assert store.users.data("u1").total == 0
    assert store.preferences.all("u1") == {}
    assert store.conversations.sessions("u1") == []
    # Other users and shared data stay.
    assert store.preferences.get("u2", "theme") == "light"
    assert len(store.conversations.history("u2", "other")) == 1
    assert store.users.data("u2").rows["hitl_sessions"] == 1
    assert _count(store, SystemMetric) == before_metrics
    assert store.agents.get("coder").version == 2
    assert _count(store, HITLAction, HITLAction.session_id.not_in(sa.select(HITLSession.id))) == 0
    with pytest.raises(ValidationError):
        store.users.forget("")


class _Vectors:
    """A stand-in for a store outside the schema: a real table this test creates."""

    name = "test_vectors"

    def count(self, session: Session, user_id: str) -> int:
        query = sa.text("SELECT count(*) FROM test_vectors WHERE owner = :u")
        return int(session.execute(query, {"u": user_id}).scalar_one())

    def delete(self, session: Session, user_id: str) -> int:
        result: Any = session.execute(
            sa.text("DELETE FROM test_vectors WHERE owner = :u"), {"u": user_id}
        )
        return int(result.rowcount)


def test_forget_user_reaches_registered_hooks_in_the_same_transaction(store: Arquivo) -> None:
    with store.transaction() as session:
        session.execute(sa.text("CREATE TABLE test_vectors (owner VARCHAR(20))"))
        session.execute(sa.text("INSERT INTO test_vectors VALUES ('u1'), ('u1'), ('u2')"))
    store.preferences.set("u1", "k", 1)
    store.users.add_hook(_Vectors())
    assert store.users.data("u1").rows["test_vectors"] == 2
    report = store.users.forget("u1")
    assert report.rows["test_vectors"] == 2
    assert report.total == 3
    assert store.users.data("u2").rows["test_vectors"] == 1


def _age(store: Arquivo, model: Any, moment: datetime, *where: Any) -> None:
    with store.transaction() as session:
        session.execute(sa.update(model).where(*where).values(created_at=moment))


def test_retention_deletes_old_metrics_idle_sessions_and_closed_hitl(store: Arquivo) -> None:
    for i in range(5):
        store.metrics.record("op", float(i))
    _age(store, SystemMetric, OLD, SystemMetric.duration_ms < 3)
    for session_id, ages in {"idle": [OLD, OLD, OLD], "alive": [OLD, NOW], "new": [NOW]}.items():
        for _ in ages:
            store.conversations.append("u", session_id, "user", "hi")
    with store.transaction() as session:
        rows = session.execute(
            sa.select(ConversationHistory.id, ConversationHistory.session_id).order_by(
                ConversationHistory.id
            )
        ).all()
    olds = [
        row.id
        for row, ages in zip(rows, [OLD, OLD, OLD, OLD, NOW, NOW], strict=True)
        if ages is OLD
    ]
    _age(store, ConversationHistory, OLD, ConversationHistory.id.in_(olds))

    decided_long_ago = store.hitl.request("wf", "a", None)
    store.hitl.approve(decided_long_ago.id, actor="ana")
    decided_recently = store.hitl.request("wf", "b", None)
    store.hitl.reject(decided_recently.id, actor="ana", reason="no")
    still_pending = store.hitl.request("wf", "c", None)
    with store.transaction() as session:
        session.execute(
            sa.update(HITLSession)
            .where(HITLSession.id.in_([decided_long_ago.id, still_pending.id]))
            .values(
                completed_at=sa.case((HITLSession.status == "pending", None), else_=OLD),
                updated_at=OLD,
                created_at=OLD,
            )
        )
    actions_of_old = len(store.hitl.actions(decided_long_ago.id))

    policy = RetentionPolicy(metrics_days=30, conversations_days=30, hitl_days=30)
    dry = store.retention.apply(policy, dry_run=True)
    expected = {
        "system_metrics": 3,
        "conversation_history": 3,
        "hitl_actions": actions_of_old,
        "hitl_sessions": 1,
    }
    assert dict(dry.rows) == expected
    assert dry.dry_run
    assert _count(store, SystemMetric) == 5

    seen: list[tuple[str, int]] = []
    done = store.retention.apply(policy, chunk_size=1, progress=lambda t, n: seen.append((t, n)))
    assert dict(done.rows) == expected
    assert done.total == sum(expected.values())
    assert set(done.cutoffs) == {"metrics", "conversations", "hitl"}
    assert ("system_metrics", 3) in seen  # chunk by chunk: 1, 2, 3
    assert ("system_metrics", 1) in seen
    assert _count(store, SystemMetric) == 2
    assert {s.session_id: s.message_count for s in store.conversations.sessions("u")} == {
        "alive": 2,
        "new": 1,
    }
    assert {r.id for r in store.hitl.list()} == {decided_recently.id, still_pending.id}
    assert store.retention.apply(policy).total == 0
    assert store.retention.apply(RetentionPolicy()).rows == {}


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="whole number of days"):
        RetentionPolicy(metrics_days=-1)
    with pytest.raises(ValidationError):
        RetentionPolicy(hitl_days=1.5)  # type: ignore[arg-type]


@pytest.mark.sqlite_only
def test_a_writer_is_not_blocked_for_long_while_retention_runs(sqlite_backend: Backend) -> None:
    rows = 60_000
    with Arquivo.open(sqlite_backend.url) as store:
        with store.transaction() as session:
            session.execute(
                sa.insert(SystemMetric),
                [{"operation": "old", "duration_ms": 1.0, "created_at": OLD}] * rows,
            )
        latencies: list[float] = []
        stop = threading.Event()

        def write() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                store.conversations.append("w", "s", "user", "still here")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.002)

        writer = threading.Thread(target=write)
        writer.start()
        try:
            started = time.perf_counter()
            report = store.retention.apply(RetentionPolicy(metrics_days=1), chunk_size=2_000)
            took = time.perf_counter() - started
        finally:
            stop.set()
            writer.join()
    assert report.rows["system_metrics"] == rows
    assert len(latencies) > 10
    # Each chunk holds the write lock for milliseconds; the whole run for much longer.
    # (Bounded loosely: a loaded CI machine adds scheduling stalls of a few hundred ms.)
    assert max(latencies) < max(0.5, took / 2), (max(latencies), took)


def test_the_cli_forgets_a_user_and_applies_retention(sqlite_backend: Backend) -> None:
    from test_cli import run, run_json

    url = ("--url", sqlite_backend.url)
    with Arquivo.open(sqlite_backend.url) as store:
        fill(store)
        _age(store, SystemMetric, OLD)
    counted = run_json(*url, "forget-user", "u1", "--dry-run")
    assert counted["rows"]["conversation_history"] == 30
    refused = run(*url, "forget-user", "u1")  # no --yes, nobody to answer
    assert refused.returncode != 0
    done = run_json(*url, "forget-user", "u1", "--yes")
    assert done["rows"] == counted["rows"]

    env = {"ARQUIVO_RETENTION_METRICS_DAYS": "30"}
    policy = run_json(*url, "retention", "show", env=env)
    assert policy == {"metrics_days": 30, "conversations_days": None, "hitl_days": None}
    dry = run_json(*url, "retention", "apply", "--dry-run", env=env)
    assert dry["rows"] == {"system_metrics": 2}
    applied = run(*url, "retention", "apply", "--hitl-days", "0", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "system_metrics" in applied.stdout
    assert "deleted 2 rows" in applied.stdout
    with Arquivo.open(sqlite_backend.url) as store:
        assert store.users.data("u1").total == 0
        assert store.retention.apply(RetentionPolicy(metrics_days=30, hitl_days=0)).total == 0


def test_async_twins(sqlite_backend: Backend) -> None:
    import asyncio

    from arquivo import AsyncArquivo

    async def main() -> None:
        async with await AsyncArquivo.open(sqlite_backend.url) as store:
            await store.preferences.set("u1", "k", 1)
            assert (await store.users.data("u1")).total == 1
            assert (await store.users.forget("u1")).rows["user_preferences"] == 1
            applied = await store.retention.apply(RetentionPolicy(metrics_days=1))
            assert applied.rows == {"system_metrics": 0}

    asyncio.run(main())
