"""The seed documents' usage examples, run as written (import paths aside)."""

from __future__ import annotations

import pytest
from sqlalchemy import func

from arquivo import (
    ConversationHistory,
    DatabaseService,
    SystemMetric,
    UserPreference,
    get_database_service,
    get_db_session,
)
from arquivo.compat import close_default_store
from conftest import Backend


@pytest.fixture
def seeded_env(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("DATABASE_URL", backend.url)
    close_default_store()
    return backend


def test_database_service_examples(seeded_env: Backend) -> None:
    db = get_database_service()
    assert isinstance(db, DatabaseService)
    assert get_database_service() is db

    db.set_preference("user123", "theme", "dark")
    theme = db.get_preference("user123", "theme")
    assert theme == "dark"
    assert db.get_preference("user123", "missing") is None

    db.save_message("user123", "session456", "user", "Hello")
    db.save_message(
        "user123",
        "session456",
        "assistant",
        "Hi!",
        model="qwen2.5-coder:14b",
        workspace_path="/path/to/project",
        extra_data={"tokens": 150},
    )
    history = db.get_conversation_history("user123", "session456")
    assert [(m.role, m.content) for m in history] == [("user", "Hello"), ("assistant", "Hi!")]
    assert history[1].extra_data == {"tokens": 150}
    assert db.get_conversation_history("user123", "session456", limit=1) == history[-1:]

    db.save_metric("chat_completion", 1234.5, success=True)
    db.save_metric("chat_completion", 10.0, success=False, error="timeout")
    metrics = db.get_metrics("chat_completion")
    assert [m.duration_ms for m in metrics] == [10.0, 1234.5]
    assert metrics[0].error == "timeout"


def test_orm_queries_see_what_the_service_wrote(seeded_env: Backend) -> None:
    db = get_database_service()
    db.set_preference("user123", "theme", "dark")
    for i in range(12):
        db.save_message("user123", f"s{i % 2}", "user", f"m{i}")
    db.save_metric("chat_completion", 100.0)
    db.save_metric("chat_completion", 300.0)

    session = get_db_session()
    try:
        pref = (
            session.query(UserPreference)
            .filter(UserPreference.user_id == "user123", UserPreference.key == "theme")
            .first()
        )
        assert pref is not None
        assert pref.value == "dark"
        messages = (
            session.query(ConversationHistory)
            .filter(ConversationHistory.user_id == "user123")
            .order_by(ConversationHistory.created_at.desc(), ConversationHistory.id.desc())
            .limit(10)
            .all()
        )
        assert [m.content for m in messages] == [f"m{i}" for i in range(11, 1, -1)]
        stats = (
            session.query(
                SystemMetric.operation, func.avg(SystemMetric.duration_ms).label("avg_duration")
            )
            .group_by(SystemMetric.operation)
            .all()
        )
        assert [(s.operation, s.avg_duration) for s in stats] == [("chat_completion", 200.0)]
    finally:
        session.close()
