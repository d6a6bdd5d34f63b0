"""``store.hitl`` on every backend: the state machine, audit trail, races, expiry, wait, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import (
    Arquivo,
    ArquivoError,
    AsyncArquivo,
    ConflictError,
    NotFoundError,
    ValidationError,
    WaitTimeoutError,
)
from arquivo.values import HITLRequest
from conftest import Backend
from test_cli import run, run_json

ARQUIVO = Path(sys.executable).with_name("arquivo")
MISSING = "00000000-0000-0000-0000-000000000000"


def _types(store: Arquivo, session_id: str) -> list[str]:
    return [a.action_type for a in store.hitl.actions(session_id)]


def _run_in_threads(count: int, work: Any) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at once; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = work(index, barrier)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


# --- the state machine --------------------------------------------------------------


def test_a_request_is_pending_with_a_created_event(store: Arquivo) -> None:
    made = store.hitl.request(
        "wf-1", "step-2", {"tool": "rm", "args": ["-rf", "/tmp/x"]}, user_id="ana"
    )
    assert made.status == "pending"
    assert made.is_pending
    assert made.kind == "approval"
    assert made.user_id == "ana"
    assert made.expires_at is None
    assert made.completed_at is None
    assert made.created_at.tzinfo is not None
    assert store.hitl.get(made.id) == made
    assert store.hitl.pending() == [made]
    (created,) = store.hitl.actions(made.id)
    assert created.action_type == "created"
    assert created.actor == "wf-1"
    named = store.hitl.request("wf-1", "step-2", {}, actor="alice")
    assert store.hitl.actions(named.id)[0].actor == "alice"
    with pytest.raises(ValidationError):
        store.hitl.request("wf-1", "step-3", {}, actor="")
    assert created.data == {"kind": "approval", "user_id": "ana"}


def test_approve_closes_once_and_names_the_winner(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", {"q": 1})
    approved = store.hitl.approve(made.id, actor="ana", response_data={"ok": 1}, comment="fine")
    assert approved.status == "approved"
    assert approved.decided_by == "ana"
    assert approved.response_data == {"ok": 1}
    assert approved.completed_at is not None
    assert store.hitl.get(made.id) == approved
    assert store.hitl.pending() == []
    for decide in (
        lambda: store.hitl.reject(made.id, actor="bob", reason="no"),
        lambda: store.hitl.approve(made.id, actor="bob"),
        lambda: store.hitl.cancel(made.id, actor="bob"),
    ):
        with pytest.raises(ConflictError, match=r"already approved.*set by ana"):
            decide()
    assert _types(store, made.id) == ["created", "decided"]
    decided = store.hitl.actions(made.id)[1]
    assert decided.actor == "ana"
    assert decided.data == {"status": "approved", "response_data": {"ok": 1}, "comment": "fine"}


def test_each_kind_takes_its_own_decisions(store: Arquivo) -> None:
    approval = store.hitl.request("wf", "a", None)
    data_in = store.hitl.request("wf", "b", {"ask": "name"}, kind="input")
    review = store.hitl.request("wf", "c", {"draft": "hi"}, kind="review")
    with pytest.raises(ValidationError, match="'approval' session"):
        store.hitl.respond(approval.id, actor="ana", response_data=1)
    with pytest.raises(ValidationError, match="'input' session"):
        store.hitl.approve(data_in.id, actor="ana")
    # A refused kind changes nothing: the session still takes the right decision.
    answered = store.hitl.respond(data_in.id, actor="ana", response_data={"name": "Rui"})
    assert (answered.status, answered.response_data) == ("completed", {"name": "Rui"})
    edited = store.hitl.respond(review.id, actor="ana", response_data={"draft": "hello"})
    assert edited.status == "completed"
    rejected = store.hitl.reject(approval.id, actor="bob", reason="too risky")
    assert rejected.status == "rejected"
    assert store.hitl.actions(approval.id)[-1].data == {
        "status": "rejected",
        "reason": "too risky",
    }
    cancelled_one = store.hitl.request("wf", "d", None, kind="review")
    cancelled = store.hitl.cancel(cancelled_one.id, actor="wf", reason="not needed")
    assert cancelled.status == "cancelled"
    assert _types(store, cancelled.id) == ["created", "cancelled"]


def test_a_decision_rolled_back_with_its_transaction_leaves_no_trace(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    with pytest.raises(RuntimeError), store.transaction():
        store.hitl.approve(made.id, actor="ana")
        raise RuntimeError("the caller's unit of work fails")
    assert store.hitl.get(made.id).status == "pending"
    assert _types(store, made.id) == ["created"]


def test_comments_and_views_are_audited(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    assert store.hitl.get(made.id, viewed_by="ana").status == "pending"
    note = store.hitl.comment(made.id, actor="ana", text="checking with legal")
    assert note.action_type == "commented"
    store.hitl.approve(made.id, actor="ana")
    store.hitl.comment(made.id, actor="bob", text="agreed, after the fact")
    assert _types(store, made.id) == ["created", "viewed", "commented", "decided", "commented"]
    assert store.hitl.actions(made.id)[2] == note


def test_validation_and_unknown_ids(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    with pytest.raises(ValidationError, match="not JSON"):
        store.hitl.request("wf", "s", {"when": object()})
    with pytest.raises(ValidationError, match="kind"):
        store.hitl.request("wf", "s", None, kind="vote")
    with pytest.raises(ValidationError, match="expires_in"):
        store.hitl.request("wf", "s", None, expires_in=-1)
    with pytest.raises(ValidationError, match="workflow_id"):
        store.hitl.request("", "s", None)
    with pytest.raises(ValidationError, match="actor"):
        store.hitl.approve(made.id, actor="  ")
    with pytest.raises(ValidationError, match="reason"):
        store.hitl.reject(made.id, actor="ana", reason="")
    with pytest.raises(ValidationError, match="key of type int"):
        store.hitl.approve(made.id, actor="ana", response_data={1: "x"})
    with pytest.raises(ValidationError, match="status"):
        store.hitl.list(status="done")
    for call in (
        lambda: store.hitl.get(MISSING),
        lambda: store.hitl.actions(MISSING),
        lambda: store.hitl.approve(MISSING, actor="ana"),
        lambda: store.hitl.comment(MISSING, actor="ana", text="hi"),
        lambda: store.hitl.wait(MISSING, timeout=1),
    ):
        with pytest.raises(NotFoundError, match=MISSING):
            call()
    assert store.hitl.get(made.id).status == "pending"
    assert _types(store, made.id) == ["created"]


def test_list_filters_and_pages(store: Arquivo) -> None:
    made = [
        store.hitl.request(f"wf{i % 2}", f"s{i}", {"i": i}, user_id=f"u{i % 3}") for i in range(6)
    ]
    store.hitl.approve(made[0].id, actor="ana")
    store.hitl.reject(made[1].id, actor="ana", reason="no")
    newest_first = [s.id for s in reversed(made)]
    assert [s.id for s in store.hitl.list()] == newest_first
    assert [s.id for s in store.hitl.list(limit=2, offset=1)] == newest_first[1:3]
    assert [s.id for s in store.hitl.list(status="approved")] == [made[0].id]
    assert {s.id for s in store.hitl.list(status="pending")} == {s.id for s in made[2:]}
    assert [s.id for s in store.hitl.pending(workflow_id="wf0")] == [made[2].id, made[4].id]
    assert [s.id for s in store.hitl.pending(user_id="u2")] == [made[2].id, made[5].id]
    assert store.hitl.list(since=made[5].created_at + timedelta(seconds=1)) == []
    assert [s.id for s in store.hitl.list(workflow_id="wf1", user_id="u1")] == [made[1].id]


# --- expiry -------------------------------------------------------------------------


def test_an_overdue_session_reads_as_expired_and_takes_no_decision(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None, expires_in=0.2)
    keeps = store.hitl.request("wf", "t", None, expires_in=timedelta(hours=1))
    time.sleep(0.3)
    assert store.hitl.get(made.id).status == "expired"
    assert [s.id for s in store.hitl.pending()] == [keeps.id]
    assert [s.id for s in store.hitl.list(status="expired")] == [made.id]
    with pytest.raises(ConflictError, match="expired"):
        store.hitl.approve(made.id, actor="ana")
    assert store.hitl.expire_due() == 1
    assert store.hitl.expire_due() == 0
    stored = store.hitl.get(made.id)
    assert (stored.status, stored.decided_by) == ("expired", "system")
    assert stored.completed_at is not None
    assert _types(store, made.id) == ["created", "expired"]
    with pytest.raises(ConflictError, match=r"already expired.*system"):
        store.hitl.reject(made.id, actor="ana", reason="late")


def test_two_sweepers_expire_each_session_exactly_once(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        ids = [store.hitl.request("wf", f"s{i}", None, expires_in=0.1).id for i in range(30)]
        time.sleep(0.2)

        def sweep(_: int, barrier: threading.Barrier) -> int:
            with Arquivo.open(backend.url) as own:
                barrier.wait()
                return own.hitl.expire_due()

        counts = _run_in_threads(2, sweep)
        assert sum(counts) == 30, counts
        for session_id in ids:
            assert _types(store, session_id) == ["created", "expired"]


# --- races --------------------------------------------------------------------------


def test_twenty_racers_exactly_one_decision(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        made = store.hitl.request("wf", "s", {"tool": "deploy"})

        def decide(index: int, barrier: threading.Barrier) -> HITLRequest:
            with Arquivo.open(backend.url) as own:
                barrier.wait()
                if index % 2:
                    return own.hitl.approve(made.id, actor=f"racer{index}")
                return own.hitl.reject(made.id, actor=f"racer{index}", reason="no")

        results = _run_in_threads(20, decide)
        winners = [r for r in results if isinstance(r, HITLRequest)]
        losers = [r for r in results if isinstance(r, ConflictError)]
        assert len(winners) == 1, results
        assert len(losers) == 19, results
        winner = winners[0]
        assert all(f"by {winner.decided_by}" in str(e) for e in losers)
        final = store.hitl.get(made.id)
        assert final == winner
        decided = [a for a in store.hitl.actions(made.id) if a.action_type == "decided"]
        assert len(decided) == 1
        assert decided[0].actor == winner.decided_by


# --- wait ---------------------------------------------------------------------------


def test_wait_times_out_with_a_timeout_error(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as raised:
        store.hitl.wait(made.id, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 5
    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, ArquivoError)
    with pytest.raises(ValidationError, match="timeout"):
        store.hitl.wait(made.id, timeout=-1)


def test_wait_returns_a_decided_session_at_once(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    store.hitl.cancel(made.id, actor="wf")
    assert store.hitl.wait(made.id, timeout=0).status == "cancelled"


def test_wait_is_woken_by_a_decision_in_another_thread(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None)
    decided_at: list[float] = []

    def decide() -> None:
        time.sleep(0.3)
        store.hitl.approve(made.id, actor="ana")
        decided_at.append(time.monotonic())

    thread = threading.Thread(target=decide)
    thread.start()
    result = store.hitl.wait(made.id, timeout=30)
    woke = time.monotonic()
    thread.join()
    assert result.status == "approved"
    # Within the SQLite poll interval (50 ms) or a notification, with slack for a busy CI.
    assert woke - decided_at[0] < 0.5


def test_wait_reports_and_stores_an_expiry(store: Arquivo) -> None:
    made = store.hitl.request("wf", "s", None, expires_in=0.3)
    result = store.hitl.wait(made.id, timeout=10)
    assert result.status == "expired"
    assert result.decided_by == "system"
    assert _types(store, made.id) == ["created", "expired"]


def test_wait_is_woken_by_a_cli_decision_in_another_process(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        made = store.hitl.request("wf", "s", {"tool": "deploy"})
        decider = subprocess.Popen(
            [str(ARQUIVO), "--url", backend.url, "hitl", "approve", made.id, "--actor", "ops"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            result = store.hitl.wait(made.id, timeout=60)
        finally:
            out, err = decider.communicate(timeout=60)
        assert decider.returncode == 0, err
        assert f"{made.id}: approved by ops" in out
        assert (result.status, result.decided_by) == ("approved", "ops")


_WAITER = """
import sys
from arquivo import Arquivo
store = Arquivo.open(sys.argv[1])
print("waiting", flush=True)
store.hitl.wait(sys.argv[2])
"""


def test_a_waiter_killed_loses_nothing(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        made = store.hitl.request("wf", "s", None)
        waiter = subprocess.Popen(
            [sys.executable, "-c", _WAITER, backend.url, made.id],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "waiting"
        waiter.kill()
        waiter.wait(timeout=30)
        store.hitl.approve(made.id, actor="ana", response_data={"go": True})
    with Arquivo.open(backend.url) as restarted:
        after = restarted.hitl.get(made.id)
        assert (after.status, after.response_data) == ("approved", {"go": True})
        assert restarted.hitl.wait(made.id, timeout=0) == after


def test_async_wait(backend: Backend) -> None:
    async def scenario() -> None:
        async with await AsyncArquivo.open(backend.url) as store:
            made = await store.hitl.request("wf", "s", None, kind="input")

            async def answer() -> None:
                await asyncio.sleep(0.2)
                await store.hitl.respond(made.id, actor="ana", response_data=42)

            result, _ = await asyncio.gather(store.hitl.wait(made.id, timeout=30), answer())
            assert (result.status, result.response_data) == ("completed", 42)

    asyncio.run(scenario())


# --- indexes ------------------------------------------------------------------------


def test_pending_reads_through_an_index(sqlite_backend: Backend) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        store.hitl.request("wf", "s", None)
        from arquivo.db.dialects import get_dialect
        from arquivo.db.fastpath import Prepared
        from arquivo.domain import hitl_sql

        build = hitl_sql.pending_builder(False, False)
        sql = Prepared(build(get_dialect("sqlite")), store.engine.dialect).sql
        with store.engine.connect() as connection:
            plan = connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", ("2026-01-01", "2026-01-01", "2026-01-01", 10)
            ).fetchall()
        details = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX ix_hitl_sessions_status" in details, details


# --- CLI ----------------------------------------------------------------------------


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("--url", url, "hitl", *args)


def _cli_json(url: str, *args: str) -> Any:
    return run_json("--url", url, "hitl", *args)


def test_the_hitl_commands(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        first = store.hitl.request("wf", "deploy", {"tool": "deploy"})
        second = store.hitl.request("wf", "delete", {"tool": "rm"})
        third = store.hitl.request("wf", "name", None, kind="input")
        late = store.hitl.request("wf", "late", None, expires_in=0.1)
    time.sleep(0.2)
    listed = _cli_json(backend.url, "list", "--status", "pending")
    assert {s["id"] for s in listed} == {first.id, second.id, third.id}
    approved = _cli_json(
        backend.url, "approve", first.id, "--actor", "ops", "--data", '{"env": "prod"}'
    )
    assert (approved["status"], approved["response_data"]) == ("approved", {"env": "prod"})
    rejected = _cli_json(backend.url, "reject", second.id, "--actor", "ops", "--reason", "no")
    assert rejected["status"] == "rejected"
    answered = _cli_json(backend.url, "respond", third.id, "--actor", "ops", "--data", '"Rui"')
    assert answered["response_data"] == "Rui"
    assert _cli_json(backend.url, "expire") == {"expired": 1}
    shown = _cli_json(backend.url, "show", first.id)
    assert shown["session"]["decided_by"] == "ops"
    assert [a["action_type"] for a in shown["actions"]] == ["created", "decided"]
    table = _cli(backend.url, "show", late.id)
    assert table.returncode == 0, table.stderr
    assert "expired" in table.stdout
    assert "system" in table.stdout

    again = _cli(backend.url, "approve", first.id, "--actor", "eve")
    assert again.returncode == 1
    assert "already approved" in again.stderr
    assert "ops" in again.stderr
    bad = _cli(backend.url, "approve", third.id, "--actor", "ops", "--data", "{nope")
    assert bad.returncode == 1
    assert "not valid JSON" in bad.stderr
    missing = _cli(backend.url, "show", MISSING)
    assert missing.returncode == 1
    assert "no HITL session" in missing.stderr


def test_cli_engine_checks_data_before_opening(sqlite_backend: Backend) -> None:
    # Invalid JSON fails before the database is touched: no file is created.
    result = _cli(sqlite_backend.url, "approve", MISSING, "--actor", "ops", "--data", "[")
    assert result.returncode == 1
    assert "not valid JSON" in result.stderr
    assert not Path(sa.make_url(sqlite_backend.url).database or "").exists()


def test_postgresql_wakes_on_notify_not_on_the_fallback_poll(
    postgres_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arquivo.domain import hitl_wait

    monkeypatch.setattr(hitl_wait, "FALLBACK_POLL_S", 30.0)
    with Arquivo.open(postgres_backend.url) as store:
        made = store.hitl.request("wf", "s", None)
        timer = threading.Timer(0.3, lambda: store.hitl.approve(made.id, actor="ana"))
        started = time.monotonic()
        timer.start()
        result = store.hitl.wait(made.id, timeout=20)
        timer.join()
        assert result.status == "approved"
        assert time.monotonic() - started < 2


def test_postgresql_wait_polls_for_decisions_made_without_notify(
    postgres_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arquivo.domain import hitl_wait

    monkeypatch.setattr(hitl_wait, "FALLBACK_POLL_S", 0.1)
    with Arquivo.open(postgres_backend.url) as store:
        made = store.hitl.request("wf", "s", None)

        def raw_update() -> None:
            with store.engine.begin() as connection:
                connection.execute(
                    sa.text("UPDATE hitl_sessions SET status = 'approved' WHERE id = :id"),
                    {"id": made.id},
                )

        timer = threading.Timer(0.3, raw_update)
        timer.start()
        result = store.hitl.wait(made.id, timeout=20)
        timer.join()
        assert result.status == "approved"


def test_the_hitl_benchmark_quick_prints_every_figure() -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "hitl.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") :])
    names = {row["name"] for row in report["results"]}
    assert {"sqlite H1 requests", "sqlite H2 wake p50", "sqlite H3 pending()"} <= names
    assert all(row["value"] > 0 for row in report["results"])
