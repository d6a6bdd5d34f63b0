"""``store.conversations`` on every backend: order, paging, sessions, search, isolation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, ConversationHistory, Message, ValidationError


def _count(store: Arquivo) -> int:
    with store.transaction(read_only=True) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ConversationHistory)) or 0


def _fill(store: Arquivo, user: str, session: str, n: int) -> list[Message]:
    return [
        store.conversations.append(user, session, ("user", "assistant")[i % 2], f"{session}#{i}")
        for i in range(n)
    ]


def test_append_returns_the_stored_message(store: Arquivo) -> None:
    before = datetime.now(UTC)
    message = store.conversations.append(
        "user123",
        "session456",
        "user",
        "crie um arquivo teste.txt",
        model="qwen2.5-coder:14b",
        workspace_path="/path/to/project",
        extra_data={"tokens": 150},
    )
    assert isinstance(message, Message)
    assert message.id > 0
    assert before - timedelta(seconds=1) <= message.created_at <= datetime.now(UTC)
    (stored,) = store.conversations.history("user123", "session456")
    assert stored == message
    with pytest.raises(AttributeError):
        message.content = "changed"  # type: ignore[misc]


def test_history_is_in_append_order_and_limit_reads_the_tail(store: Arquivo) -> None:
    messages = _fill(store, "u", "s", 30)
    assert store.conversations.history("u", "s") == messages
    assert store.conversations.history("u", "s", limit=5) == messages[-5:]
    assert store.conversations.history("u", "s", limit=100) == messages


def test_paging_backwards_with_before(store: Arquivo) -> None:
    messages = _fill(store, "u", "s", 23)
    pages: list[list[Message]] = []
    cursor: int | None = None
    while True:
        page = store.conversations.history("u", "s", limit=10, before=cursor)
        if not page:
            break
        pages.append(page)
        cursor = page[0].id
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [m for p in reversed(pages) for m in p] == messages
    assert store.conversations.history("u", "s", before=messages[2].id) == messages[:2]


def test_append_many_is_one_transaction(store: Arquivo) -> None:
    first = store.conversations.append("u", "s", "system", "be helpful")
    batch = store.conversations.append_many(
        "u",
        "s",
        [
            {"role": "user", "content": f"q{i}", "extra_data": {"i": i}, "model": "m"}
            for i in range(600)  # more than one multi-row INSERT
        ],
    )
    assert [m.content for m in batch] == [f"q{i}" for i in range(600)]
    assert all(a.id < b.id for a, b in itertools.pairwise(batch))
    assert store.conversations.history("u", "s") == [first, *batch]
    assert store.conversations.append_many("u", "s", []) == []
    with pytest.raises(ValidationError, match=r"messages\[2\]\.role"):
        store.conversations.append_many(
            "u",
            "s",
            [
                {"role": "user", "content": "fine"},
                {"role": "assistant", "content": "fine"},
                {"role": "wizard", "content": "not fine"},
            ],
        )
    assert _count(store) == 601


def test_sessions_are_listed_newest_first_with_counts(store: Arquivo) -> None:
    _fill(store, "u", "old", 3)
    _fill(store, "u", "new", 2)
    _fill(store, "someone else", "theirs", 4)
    sessions = store.conversations.sessions("u")
    assert [(s.session_id, s.message_count) for s in sessions] == [("new", 2), ("old", 3)]
    assert sessions[0].first_at <= sessions[0].last_at
    assert sessions[1].last_at <= sessions[0].first_at
    assert store.conversations.sessions("u", limit=1, offset=1)[0].session_id == "old"
    assert store.conversations.sessions("nobody") == []


def test_a_user_never_sees_another_users_session(store: Arquivo) -> None:
    _fill(store, "alice", "shared-name", 2)
    _fill(store, "bob", "shared-name", 3)
    assert {m.user_id for m in store.conversations.history("alice", "shared-name")} == {"alice"}
    assert len(store.conversations.history("bob", "shared-name", limit=10)) == 3
    assert store.conversations.search("alice", "shared") != []
    assert all(m.user_id == "alice" for m in store.conversations.search("alice", "#"))
    assert store.conversations.delete_session("alice", "shared-name") == 2
    assert len(store.conversations.history("bob", "shared-name")) == 3


def test_search_is_literal_and_case_insensitive(store: Arquivo) -> None:
    store.conversations.append("u", "s1", "user", "Deploy at 100% load_test")
    store.conversations.append("u", "s2", "assistant", "deploy done")
    store.conversations.append("u", "s2", "user", "thanks")
    assert [m.content for m in store.conversations.search("u", "DEPLOY")] == [
        "deploy done",
        "Deploy at 100% load_test",
    ]
    assert [m.content for m in store.conversations.search("u", "0% l")] == [
        "Deploy at 100% load_test"
    ]
    assert store.conversations.search("u", "0_load") == []
    assert [m.content for m in store.conversations.search("u", "deploy", session_id="s2")] == [
        "deploy done"
    ]
    with pytest.raises(ValidationError):
        store.conversations.search("u", "")


def test_delete_session(store: Arquivo) -> None:
    _fill(store, "u", "a", 4)
    _fill(store, "u", "b", 1)
    assert store.conversations.delete_session("u", "a") == 4
    assert store.conversations.delete_session("u", "a") == 0
    assert store.conversations.history("u", "a") == []
    assert len(store.conversations.history("u", "b")) == 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"role": "function"}, "role must be one of"),
        ({"role": None}, "role must be one of"),
        ({"content": b"bytes"}, "content must be a string"),
        ({"content": None}, "content must be a string"),
        ({"content": "nul \x00 byte"}, "NUL"),
        ({"content": "x" * 1_000_001}, "the limit is 1,000,000"),
        ({"extra_data": {"when": datetime.now(UTC)}}, "not JSON"),
        ({"extra_data": float("nan")}, "JSON cannot represent"),
        ({"model": ""}, "model must not be empty"),
        ({"user_id": ""}, "user_id must not be empty"),
        ({"session_id": 12}, "session_id must be a string"),
        ({"content": "broken \udc80"}, "not valid Unicode"),
    ],
)
def test_bad_messages_are_rejected_and_nothing_is_written(
    store: Arquivo, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {"user_id": "u", "session_id": "s", "role": "user", "content": "ok"}
    args.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        store.conversations.append(**args)
    assert fragment in caught.value.message
    assert caught.value.hint
    assert _count(store) == 0


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": -1}, {"limit": "10"}, {"before": "x"}, {"limit": True}]
)
def test_bad_paging_arguments(store: Arquivo, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        store.conversations.history("u", "s", **kwargs)


def test_large_content_round_trips(store: Arquivo) -> None:
    content = "🚀 long line\n" * 50_000
    message = store.conversations.append("u", "s", "tool", content)
    assert store.conversations.history("u", "s", limit=1) == [message]


def test_append_many_ids_are_right_even_at_the_rowid_ceiling(store: Arquivo) -> None:
    # At the largest possible id SQLite stops numbering rows sequentially; the ids
    # returned must still be the stored ones.
    with store.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation_history (id, user_id, session_id, role, content) "
                "VALUES (9223372036854775807, 'u', 'other', 'user', 'last')"
            )
        )
    batch = store.conversations.append_many(
        "u", "s", [{"role": "user", "content": f"m{i}"} for i in range(5)]
    )
    assert store.conversations.history("u", "s") == sorted(batch, key=lambda m: m.id)
    assert {m.content for m in batch} == {f"m{i}" for i in range(5)}
