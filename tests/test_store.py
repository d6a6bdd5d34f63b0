"""The store and the schema end to end, on every backend: units of work, the seeds' ORM use."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func

from arquivo import (
    Agent,
    Arquivo,
    ArquivoError,
    ConversationHistory,
    DuplicateError,
    HITLAction,
    HITLSession,
    SystemMetric,
    UserPreference,
    ValidationError,
    get_db_session,
)
from conftest import Backend


def _count(store: Arquivo, model: type[object]) -> int:
    with store.transaction(read_only=True) as session:
        return session.scalar(sa.select(func.count()).select_from(model)) or 0


def test_transaction_commits_on_success(store: Arquivo) -> None:
    with store.transaction() as session:
        session.add(UserPreference(user_id="u1", key="theme", value="dark"))
    assert _count(store, UserPreference) == 1


def test_transaction_rolls_back_on_error(store: Arquivo) -> None:
    with pytest.raises(RuntimeError), store.transaction() as session:
        session.add(UserPreference(user_id="u1", key="theme", value="dark"))
        session.flush()
        raise RuntimeError("boom")
    assert _count(store, UserPreference) == 0


def test_nested_transaction_is_a_savepoint(store: Arquivo) -> None:
    with store.transaction() as outer:
        outer.add(UserPreference(user_id="u1", key="kept", value=1))
        with pytest.raises(RuntimeError), store.transaction() as inner:
            assert inner is outer
            inner.add(UserPreference(user_id="u1", key="undone", value=2))
            inner.flush()
            raise RuntimeError("only the savepoint rolls back")
    with store.transaction(read_only=True) as session:
        keys = session.scalars(sa.select(UserPreference.key)).all()
    assert keys == ["kept"]


def test_many_preferences_per_user_but_unique_per_key(store: Arquivo) -> None:
    with store.transaction() as session:
        session.add_all(
            [
                UserPreference(user_id="user123", key="theme", value="dark"),
                UserPreference(user_id="user123", key="lang", value="pt-BR"),
                UserPreference(user_id="other", key="theme", value="light"),
            ]
        )
    with pytest.raises(DuplicateError), store.transaction() as session:
        session.add(UserPreference(user_id="user123", key="theme", value="light"))
    assert _count(store, UserPreference) == 3


@pytest.mark.parametrize(
    "value",
    ["dark", "", 0, 1.5, True, None, [1, "two", None], {"nested": {"a": [1, 2]}}, "ção ✓ 🚀"],
)
def test_json_values_round_trip_exactly(store: Arquivo, value: object) -> None:
    with store.transaction() as session:
        session.add(UserPreference(user_id="u", key="k", value=value))
    with store.transaction(read_only=True) as session:
        stored = session.scalars(sa.select(UserPreference.value)).one()
    assert stored == value
    assert type(stored) is type(value)


def test_timestamps_are_utc_aware_and_updated_at_moves(store: Arquivo) -> None:
    before = datetime.now(UTC)
    with store.transaction() as session:
        session.add(Agent(name="coder", model="qwen2.5-coder:14b", tools=["fs"], memory={}))
    time.sleep(0.01)
    with store.transaction() as session:
        agent = session.get(Agent, "coder")
        assert agent is not None
        agent.instructions = "be brief"
    with store.transaction(read_only=True) as session:
        agent = session.get(Agent, "coder")
        assert agent is not None
        assert agent.created_at.tzinfo is not None
        assert agent.created_at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= agent.created_at <= datetime.now(UTC)
        assert agent.updated_at > agent.created_at


def test_raw_inserts_get_server_side_timestamps(store: Arquivo) -> None:
    # As a user typing SQL at the sqlite3 or psql prompt would.
    with store.engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO system_metrics (operation, duration_ms) VALUES ('raw', 5)")
        )
    with store.transaction(read_only=True) as session:
        metric = session.scalars(sa.select(SystemMetric)).one()
    assert metric.success is True
    assert abs(metric.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_conversation_roles_are_checked_by_the_database(store: Arquivo) -> None:
    with pytest.raises(ValidationError), store.transaction() as session:
        session.add(ConversationHistory(user_id="u", session_id="s", role="wizard", content="x"))
    assert _count(store, ConversationHistory) == 0


def test_hitl_actions_need_a_real_session_and_follow_it(store: Arquivo) -> None:
    with pytest.raises(ValidationError), store.transaction() as session:
        session.add(HITLAction(session_id="no-such-session", action_type="created"))
    with store.transaction() as session:
        hitl = HITLSession(workflow_id="wf", step_id="approve", request_data={"tool": "rm"})
        hitl.actions.append(HITLAction(action_type="created", data={"by": "agent"}))
        session.add(hitl)
    with store.transaction() as session:
        loaded = session.scalars(sa.select(HITLSession)).one()
        assert loaded.status == "pending"
        assert [a.action_type for a in loaded.actions] == ["created"]
    # Deleting through SQL (not the ORM) still removes the trail: ON DELETE CASCADE.
    with store.engine.begin() as connection:
        connection.execute(sa.delete(HITLSession.__table__))
    assert _count(store, HITLAction) == 0


def test_closed_store_refuses_work(backend: Backend) -> None:
    store = Arquivo.open(backend.url)
    store.close()
    store.close()  # idempotent
    with pytest.raises(ArquivoError, match="closed"), store.transaction():
        pass


def test_the_seeds_examples_run_as_written(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", backend.url)
    db = get_db_session()
    try:
        db.add(UserPreference(user_id="user123", key="theme", value="dark"))
        for i, role in enumerate(["user", "assistant"] * 6):
            db.add(
                ConversationHistory(
                    user_id="user123",
                    session_id="session456",
                    role=role,
                    content=f"message {i}",
                    model="qwen2.5-coder:14b",
                    workspace_path="/path/to/project",
                    extra_data={"tokens": 150},
                    created_at=datetime(2025, 1, 27, 10, 0, i, tzinfo=UTC),
                )
            )
        db.add_all(
            [
                SystemMetric(operation="chat_completion", duration_ms=1000.0),
                SystemMetric(operation="chat_completion", duration_ms=2000.0),
                SystemMetric(operation="embed", duration_ms=10.0, success=False, error="x"),
            ]
        )
        db.commit()
    finally:
        db.close()

    db = get_db_session()
    try:
        pref = (
            db.query(UserPreference)
            .filter(UserPreference.user_id == "user123", UserPreference.key == "theme")
            .first()
        )
        assert pref is not None
        assert pref.value == "dark"

        messages = (
            db.query(ConversationHistory)
            .filter(ConversationHistory.user_id == "user123")
            .order_by(ConversationHistory.created_at.desc())
            .limit(10)
            .all()
        )
        assert [m.content for m in messages] == [f"message {i}" for i in range(11, 1, -1)]
        assert messages[0].extra_data == {"tokens": 150}

        stats = dict(
            db.query(SystemMetric.operation, func.avg(SystemMetric.duration_ms).label("avg"))
            .group_by(SystemMetric.operation)
            .all()
        )
        assert stats == {"chat_completion": 1500.0, "embed": 10.0}
    finally:
        db.close()
