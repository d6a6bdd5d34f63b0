"""``store.preferences`` on every backend: upserts, exact round trips, bad input."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, UserPreference, ValidationError

VALUES: list[Any] = [
    "dark",
    "",
    "ção ✓ 🚀",
    0,
    -(2**62),
    3.25,
    True,
    False,
    None,
    [],
    {},
    [1, "two", None, [3.5]],
    {"nested": {"a": [1, 2], "b": None}, "ok": True},
]


def _rows(store: Arquivo) -> list[tuple[str, str, Any]]:
    with store.transaction(read_only=True) as session:
        result = session.execute(
            sa.select(UserPreference.user_id, UserPreference.key, UserPreference.value).order_by(
                UserPreference.user_id, UserPreference.key
            )
        )
        return [tuple(row) for row in result]  # type: ignore[misc]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_exactly(store: Arquivo, value: Any) -> None:
    store.preferences.set("u1", "k", value)
    got = store.preferences.get("u1", "k", default="<missing>")
    assert got == value
    assert type(got) is type(value)


def test_set_is_an_upsert_and_never_duplicates(store: Arquivo) -> None:
    store.preferences.set("u1", "theme", "dark")
    store.preferences.set("u1", "theme", "light")
    store.preferences.set("u1", "theme", {"mode": "auto"})
    assert store.preferences.get("u1", "theme") == {"mode": "auto"}
    assert _rows(store) == [("u1", "theme", {"mode": "auto"})]


def test_get_default_all_delete_and_clear(store: Arquivo) -> None:
    assert store.preferences.get("u1", "nope") is None
    assert store.preferences.get("u1", "nope", default=42) == 42
    store.preferences.set_many("u1", {"b": 2, "a": 1, "c": [3]})
    store.preferences.set("u2", "a", "other user")
    assert store.preferences.all("u1") == {"a": 1, "b": 2, "c": [3]}
    assert list(store.preferences.all("u1")) == ["a", "b", "c"]
    assert store.preferences.all("nobody") == {}
    assert store.preferences.delete("u1", "b") is True
    assert store.preferences.delete("u1", "b") is False
    assert store.preferences.clear("u1") == 2
    assert store.preferences.all("u1") == {}
    assert store.preferences.all("u2") == {"a": "other user"}


def test_a_stored_none_differs_from_a_missing_key(store: Arquivo) -> None:
    store.preferences.set("u1", "nothing", None)
    assert store.preferences.get("u1", "nothing", default="<missing>") is None
    assert store.preferences.all("u1") == {"nothing": None}


def test_set_many_is_all_or_nothing(store: Arquivo) -> None:
    store.preferences.set("u1", "a", 1)
    with pytest.raises(ValidationError, match="values\\['bad'\\]"):
        store.preferences.set_many("u1", {"a": 2, "bad": {1, 2}})
    assert store.preferences.all("u1") == {"a": 1}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((None, "k", 1), "user_id must be a string"),
        ((7, "k", 1), "user_id must be a string"),
        (("", "k", 1), "user_id must not be empty"),
        (("   ", "k", 1), "user_id must not be empty"),
        (("u" * 256, "k", 1), "user_id is 256 characters"),
        (("u\x00", "k", 1), "user_id contains control characters"),
        (("u", "k\n", 1), "key contains control characters"),
        (("u", b"k", 1), "key must be a string"),
        (("u", "k", b"\x00\x01binary"), "not JSON"),
        (("u", "k", {1: "int key"}), "key of type int"),
        (("u", "k", float("nan")), "JSON cannot represent"),
        (("u", "k", float("inf")), "JSON cannot represent"),
        (("u", "k", {"s": "nul\x00"}), "NUL"),
        (("u", "k", object()), "not JSON"),
        (("u", "k", "x" * 1_000_001), "bytes as JSON"),
    ],
)
def test_bad_input_is_rejected_and_nothing_is_written(
    store: Arquivo, args: tuple[Any, Any, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        store.preferences.set(*args)
    assert fragment in caught.value.message
    assert caught.value.hint
    assert _rows(store) == []


def test_deeply_nested_values_are_refused(store: Arquivo) -> None:
    value: Any = "leaf"
    for _ in range(100):
        value = [value]
    with pytest.raises(ValidationError, match="nested"):
        store.preferences.set("u", "deep", value)


def test_lone_surrogates_are_a_validation_error(store: Arquivo) -> None:
    with pytest.raises(ValidationError):
        store.preferences.set("u", "k", "broken \ud800 text")
    assert _rows(store) == []


def test_preferences_join_an_open_transaction(store: Arquivo) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.preferences.set("u1", "inside", 1)
        assert store.preferences.get("u1", "inside") == 1
        raise RuntimeError("roll it all back")
    assert store.preferences.all("u1") == {}
    with store.transaction() as session:
        store.preferences.set("u1", "a", 1)
        session.add(UserPreference(user_id="u1", key="b", value=2))
    assert store.preferences.all("u1") == {"a": 1, "b": 2}


def test_orm_and_fast_path_store_the_same_representation(store: Arquivo) -> None:
    store.preferences.set("u1", "fast", {"x": [1, None]})
    with store.transaction() as session:
        session.add(UserPreference(user_id="u1", key="orm", value={"x": [1, None]}))
    with store.engine.connect() as connection:
        raw = connection.execute(
            sa.text(
                "SELECT key, CAST(value AS TEXT), created_at FROM user_preferences ORDER BY key"
            )
        ).all()
    assert raw[0][1] == raw[1][1]
    assert type(raw[0][2]) is type(raw[1][2])
    assert len(str(raw[0][2])) == len(str(raw[1][2]))
