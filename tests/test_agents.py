"""``store.agents`` on every backend: versions, memory, rollback, errors, races, migration, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Agent, Arquivo, NotFoundError, ValidationError
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.db.types import JSONType, UTCDateTime
from arquivo.values import AgentRecord, AgentVersion
from conftest import Backend
from test_cli import run, run_json

ARQUIVO = Path(sys.executable).with_name("arquivo")


def _state(store: Arquivo) -> tuple[list[AgentRecord], list[list[AgentVersion]]]:
    agents = store.agents.list()
    return agents, [store.agents.versions(a.name) for a in agents]


def _version_rows(store: Arquivo) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM agent_versions")).scalar_one())


# --- the API ------------------------------------------------------------------------


def test_a_new_agent_is_version_1(store: Arquivo) -> None:
    created = store.agents.upsert(
        "coder", "qwen2.5-coder:14b", "be brief", ["fs", {"name": "web"}], {"seen": 3}
    )
    assert created.name == "coder"
    assert created.model == "qwen2.5-coder:14b"
    assert created.instructions == "be brief"
    assert created.tools == ["fs", {"name": "web"}]
    assert created.memory == {"seen": 3}
    assert created.version == 1
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is not None
    assert store.agents.get("coder") == created
    (v1,) = store.agents.versions("coder")
    assert v1 == AgentVersion(
        "coder", 1, "qwen2.5-coder:14b", "be brief", ["fs", {"name": "web"}], created.created_at
    )


def test_only_definition_changes_make_versions(store: Arquivo) -> None:
    first = store.agents.upsert("a", "m1", "hello", ["fs"], {"k": 1})
    # The same definition again (tools as a tuple, memory omitted): nothing is written.
    same = store.agents.upsert("a", "m1", "hello", ("fs",))
    assert same == first
    assert store.agents.upsert("a", "m2", "hello", ["fs"]).version == 2
    assert store.agents.upsert("a", "m2", "bye", ["fs"]).version == 3
    assert store.agents.upsert("a", "m2", "bye", ["fs", "web"]).version == 4
    assert store.agents.upsert("a", "m2", None, ["fs", "web"]).version == 5
    assert store.agents.upsert("a", "m2", None, None).version == 6
    # JSON equality, not Python's: True is not 1, key order does not matter.
    assert store.agents.upsert("a", "m2", None, [1, {"x": 1, "y": 2}]).version == 7
    assert store.agents.upsert("a", "m2", None, [True, {"x": 1, "y": 2}]).version == 8
    assert store.agents.upsert("a", "m2", None, [True, {"y": 2, "x": 1}]).version == 8
    assert store.agents.upsert("a", "m2", None, [True, {"y": 2, "x": 1.0}]).version == 8

    history = store.agents.versions("a")
    assert [v.version for v in history] == list(range(1, 9))
    assert [(v.model, v.instructions, v.tools) for v in history[:6]] == [
        ("m1", "hello", ["fs"]),
        ("m2", "hello", ["fs"]),
        ("m2", "bye", ["fs"]),
        ("m2", "bye", ["fs", "web"]),
        ("m2", None, ["fs", "web"]),
        ("m2", None, None),
    ]
    assert history == sorted(history, key=lambda v: v.created_at)
    current = store.agents.get("a")
    assert current.version == 8
    assert current.memory == {"k": 1}
    assert current.created_at == first.created_at
    assert current.updated_at == history[-1].created_at


def test_memory_is_runtime_state_not_a_version(store: Arquivo) -> None:
    store.agents.upsert("a", "m", memory={"facts": []})
    # None on an existing agent keeps the memory, even when the definition changes.
    changed = store.agents.upsert("a", "m", "new instructions")
    assert (changed.version, changed.memory) == (2, {"facts": []})
    # A memory-only change through upsert: stored, no version.
    remembered = store.agents.upsert("a", "m", "new instructions", memory=["x"])
    assert (remembered.version, remembered.memory) == (2, ["x"])
    assert remembered.updated_at >= changed.updated_at

    updated = store.agents.update_memory("a", {"facts": ["sky is blue"], "n": 1.5})
    assert updated.version == 2
    assert updated.memory == {"facts": ["sky is blue"], "n": 1.5}
    assert updated.instructions == "new instructions"
    assert store.agents.get("a") == updated
    assert store.agents.update_memory("a", None).memory is None
    assert store.agents.update_memory("a", "plain text").memory == "plain text"
    assert [v.version for v in store.agents.versions("a")] == [1, 2]


def test_get_a_version_gives_its_definition_with_the_current_memory(store: Arquivo) -> None:
    store.agents.upsert("a", "m1", "one", ["t1"], memory={"old": True})
    v2 = store.agents.upsert("a", "m2", "two", ["t2"])
    store.agents.update_memory("a", {"new": True})

    old = store.agents.get("a", version=1)
    assert (old.model, old.instructions, old.tools, old.version) == ("m1", "one", ["t1"], 1)
    assert old.memory == {"new": True}
    assert old.created_at == v2.created_at
    assert old.updated_at == store.agents.versions("a")[0].created_at
    current = store.agents.get("a", version=2)
    assert (current.model, current.instructions, current.tools) == ("m2", "two", ["t2"])


def test_list_is_sorted_by_name(store: Arquivo) -> None:
    assert store.agents.list() == []
    for name in ("zeta", "Alpha", "beta", "alpha"):
        store.agents.upsert(name, "m")
    names = [a.name for a in store.agents.list()]
    assert sorted(names) == names
    assert set(names) == {"zeta", "Alpha", "beta", "alpha"}


def test_delete_takes_the_history_with_it(store: Arquivo) -> None:
    store.agents.upsert("a", "m1")
    store.agents.upsert("a", "m2")
    store.agents.upsert("b", "m1")
    assert _version_rows(store) == 3
    assert store.agents.delete("a") is True
    assert store.agents.delete("a") is False
    assert _version_rows(store) == 1
    assert [a.name for a in store.agents.list()] == ["b"]
    # A re-created agent starts a new history.
    assert store.agents.upsert("a", "m9").version == 1
    assert [v.model for v in store.agents.versions("a")] == ["m9"]


def test_rollback_restores_as_a_new_version(store: Arquivo) -> None:
    store.agents.upsert("a", "m1", "one", ["t1"], memory={"k": 1})
    store.agents.upsert("a", "m2", "two", ["t2"])
    store.agents.upsert("a", "m3", "three", None)
    store.agents.update_memory("a", {"k": 2})

    restored = store.agents.rollback("a", 1)
    assert (restored.model, restored.instructions, restored.tools) == ("m1", "one", ["t1"])
    assert restored.version == 4
    assert restored.memory == {"k": 2}
    history = store.agents.versions("a")
    assert [v.version for v in history] == [1, 2, 3, 4]
    assert (history[3].model, history[3].instructions) == ("m1", "one")
    assert (history[2].model, history[2].instructions) == ("m3", "three")  # untouched

    # Restoring the definition that is already current changes nothing.
    assert store.agents.rollback("a", 4) == restored
    assert store.agents.rollback("a", 1) == restored
    assert len(store.agents.versions("a")) == 4
    assert store.agents.rollback("a", 3).version == 5


def test_unknown_names_and_versions(store: Arquivo) -> None:
    store.agents.upsert("a", "m")
    before = _state(store)
    calls: list[Any] = [
        lambda: store.agents.get("nobody"),
        lambda: store.agents.get("nobody", version=1),
        lambda: store.agents.get("a", version=2),
        lambda: store.agents.versions("nobody"),
        lambda: store.agents.update_memory("nobody", {}),
        lambda: store.agents.rollback("nobody", 1),
        lambda: store.agents.rollback("a", 7),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.hint
        assert "nobody" in caught.value.message or "version" in caught.value.message
    assert store.agents.delete("nobody") is False
    assert _state(store) == before


BAD_INPUT: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = [
    ("name", "upsert", ("", "m"), {}),
    ("name", "upsert", ("   ", "m"), {}),
    ("name", "upsert", ("a\nb", "m"), {}),
    ("name", "upsert", ("x" * 256, "m"), {}),
    ("name", "upsert", (7, "m"), {}),
    ("model", "upsert", ("new", ""), {}),
    ("model", "upsert", ("new", None), {}),
    ("model", "upsert", ("keep", "m\x00"), {}),
    ("instructions", "upsert", ("keep", "m"), {"instructions": 5}),
    ("instructions", "upsert", ("keep", "m"), {"instructions": "a\x00b"}),
    ("tools", "upsert", ("keep", "m"), {"tools": {"name": "fs"}}),
    ("tools", "upsert", ("keep", "m"), {"tools": "fs"}),
    ("tools", "upsert", ("new", "m"), {"tools": [float("nan")]}),
    ("tools", "upsert", ("new", "m"), {"tools": [{1: "x"}]}),
    ("memory", "upsert", ("keep", "m2"), {"memory": {"s": {1, 2}}}),
    ("memory", "upsert", ("new", "m"), {"memory": b"bytes"}),
    ("name", "get", ("",), {}),
    ("version", "get", ("keep",), {"version": 0}),
    ("version", "get", ("keep",), {"version": True}),
    ("version", "get", ("keep",), {"version": "1"}),
    ("name", "delete", ("",), {}),
    ("name", "versions", (None,), {}),
    ("name", "update_memory", ("", {}), {}),
    ("memory", "update_memory", ("keep", {"x": float("inf")}), {}),
    ("version", "rollback", ("keep", -1), {}),
    ("version", "rollback", ("keep", 1.0), {}),
]


@pytest.mark.parametrize(
    ("field", "method", "args", "kwargs"),
    BAD_INPUT,
    ids=[f"{m}-{f}-{i}" for i, (f, m, _a, _k) in enumerate(BAD_INPUT)],
)
def test_bad_input_is_refused_and_nothing_changes(
    store: Arquivo, field: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    store.agents.upsert("keep", "m", "hi", ["fs"], {"k": 1})
    before = _state(store)
    with pytest.raises(ValidationError) as caught:
        getattr(store.agents, method)(*args, **kwargs)
    assert caught.value.message.startswith(field), caught.value.message
    assert caught.value.hint
    assert _state(store) == before


def test_agent_methods_join_an_open_transaction(store: Arquivo) -> None:
    store.agents.upsert("a", "m1")
    with pytest.raises(RuntimeError), store.transaction():
        store.agents.upsert("a", "m2")
        store.agents.upsert("b", "m1")
        assert store.agents.get("a").version == 2
        raise RuntimeError("roll it all back")
    assert [a.name for a in store.agents.list()] == ["a"]
    assert [v.model for v in store.agents.versions("a")] == ["m1"]
    with store.transaction():
        store.agents.upsert("a", "m2")
    assert store.agents.get("a").version == 2


def test_agents_written_with_the_orm_are_versioned_from_their_next_change(
    store: Arquivo,
) -> None:
    with store.transaction() as session:
        session.add(Agent(name="orm", model="m1", instructions="raw", tools=["fs"]))
    (v1,) = store.agents.versions("orm")  # the current definition, not yet in history
    assert (v1.version, v1.model, v1.instructions, v1.tools) == (1, "m1", "raw", ["fs"])
    assert store.agents.get("orm", version=1).model == "m1"
    assert _version_rows(store) == 0

    assert store.agents.upsert("orm", "m2").version == 2
    assert [(v.version, v.model) for v in store.agents.versions("orm")] == [(1, "m1"), (2, "m2")]
    assert store.agents.rollback("orm", 1).model == "m1"


# --- concurrency --------------------------------------------------------------------

THREADS = 4
ROUNDS = 5


def test_concurrent_upserts_number_versions_without_gaps_or_errors(backend: Backend) -> None:
    # Each thread is its own client (its own store and connections), as separate
    # processes would be. Every round starts together on a name nobody has created yet,
    # so the first-insert race is run ROUNDS times; "shared" sees every write.
    Arquivo.open(backend.url).close()  # migrate once, before the race
    barrier = threading.Barrier(THREADS, timeout=60)
    errors: list[BaseException] = []
    returned: dict[str, list[int]] = {}
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            with Arquivo.open(backend.url) as store:
                for round_ in range(ROUNDS):
                    barrier.wait()
                    for name in (f"new-{round_}", "shared"):
                        # Distinct instructions: every upsert is a definition change.
                        record = store.agents.upsert(name, "m", f"w{worker} r{round_}")
                        with lock:
                            returned.setdefault(name, []).append(record.version)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    with Arquivo.open(backend.url) as store:
        for round_ in range(ROUNDS):
            name = f"new-{round_}"
            assert sorted(returned[name]) == list(range(1, THREADS + 1))
            assert [v.version for v in store.agents.versions(name)] == list(range(1, THREADS + 1))
            assert store.agents.get(name).version == THREADS
        total = THREADS * ROUNDS
        assert sorted(returned["shared"]) == list(range(1, total + 1))
        history = store.agents.versions("shared")
        assert [v.version for v in history] == list(range(1, total + 1))
        assert len({v.instructions for v in history}) == total
        assert store.agents.get("shared").version == total


# --- the migration ------------------------------------------------------------------

# The agents table as revision 0001 made it (the model has more columns now).
AGENTS_0001 = sa.table(
    "agents",
    sa.column("name", sa.String()),
    sa.column("model", sa.String()),
    sa.column("instructions", sa.Text()),
    sa.column("tools", JSONType),
    sa.column("memory", JSONType),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)


def test_upgrade_backfills_version_1_and_downgrade_keeps_the_agents(backend: Backend) -> None:
    engine = create_engine(backend.url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as connection:
            connection.execute(
                sa.insert(AGENTS_0001),
                [
                    {
                        "name": "old",
                        "model": "m1",
                        "instructions": "hi",
                        "tools": ["fs", {"a": 1}],
                        "memory": {"k": 1},
                    },
                    {
                        "name": "bare",
                        "model": "m2",
                        "instructions": None,
                        "tools": None,
                        "memory": None,
                    },
                ],
            )
            connection.execute(
                sa.text("UPDATE agents SET updated_at = :t WHERE name = 'old'"),
                {"t": "2025-01-02 03:04:05"},
            )
        migrate.upgrade(engine, "head")
        assert migrate.check(engine) == []
        with engine.connect() as connection:
            versions = connection.execute(
                sa.text("SELECT name, version FROM agents ORDER BY name")
            ).all()
        assert [tuple(row) for row in versions] == [("bare", 1), ("old", 1)]

        store = Arquivo(engine)
        (old_v1,) = store.agents.versions("old")
        assert (old_v1.version, old_v1.model, old_v1.instructions, old_v1.tools) == (
            1,
            "m1",
            "hi",
            ["fs", {"a": 1}],
        )
        assert old_v1.created_at == store.agents.get("old").updated_at
        assert old_v1.created_at.year == 2025
        (bare_v1,) = store.agents.versions("bare")
        assert (bare_v1.model, bare_v1.instructions, bare_v1.tools) == ("m2", None, None)
        assert _version_rows(store) == 2
        assert store.agents.get("old").memory == {"k": 1}
        assert store.agents.upsert("old", "m1", "hello", ["fs"]).version == 2
        store.close()

        migrate.downgrade(engine, "0001")
        assert migrate.current_revision(engine) == "0001"
        inspector = sa.inspect(engine)
        assert "agent_versions" not in inspector.get_table_names()
        assert "version" not in {c["name"] for c in inspector.get_columns("agents")}
        with engine.connect() as connection:
            rows = connection.execute(sa.select(AGENTS_0001).order_by("name")).all()
        assert [(r.name, r.model, r.instructions, r.tools, r.memory) for r in rows] == [
            ("bare", "m2", None, None, None),
            ("old", "m1", "hello", ["fs"], {"k": 1}),
        ]

        # Up again: the history restarts from the definitions the agents hold now.
        migrate.upgrade(engine, "head")
        assert migrate.check(engine) == []
        with Arquivo(engine) as again:
            (v1,) = again.agents.versions("old")
            assert (v1.version, v1.instructions, v1.tools) == (1, "hello", ["fs"])
    finally:
        engine.dispose()


# --- the CLI ------------------------------------------------------------------------


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("--url", url, "agents", *args)


def _cli_json(url: str, *args: str) -> Any:
    return run_json("--url", url, "agents", *args)


def test_the_agents_commands(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        store.agents.upsert("coder", "m1", "be [bold]brief[/bold]", ["fs"], {"k": 1})
        store.agents.upsert("coder", "m2", "be thorough", ["fs", "web"])
        store.agents.upsert("alpha", "m1")
    url = backend.url

    listed = _cli_json(url, "list")
    assert [a["name"] for a in listed] == ["alpha", "coder"]
    assert listed[1]["version"] == 2
    assert listed[1]["memory"] == {"k": 1}
    table = _cli(url, "list")
    assert table.returncode == 0, table.stderr
    assert "coder" in table.stdout
    assert "m2" in table.stdout

    shown = _cli_json(url, "show", "coder")
    assert (shown["model"], shown["version"], shown["tools"]) == ("m2", 2, ["fs", "web"])
    first = _cli_json(url, "show", "coder", "--version", "1")
    assert (first["instructions"], first["version"], first["memory"]) == (
        "be [bold]brief[/bold]",
        1,
        {"k": 1},
    )
    # Markup-like text is shown as typed, not interpreted.
    assert "[bold]brief[/bold]" in _cli(url, "show", "coder", "--version", "1").stdout

    history = _cli_json(url, "versions", "coder")
    assert [(v["version"], v["model"]) for v in history] == [(1, "m1"), (2, "m2")]
    assert "be thorough" in _cli(url, "versions", "coder").stdout

    # Destructive without --yes: asks, and nobody answering means no.
    refused = _cli(url, "rollback", "coder", "1")
    assert refused.returncode != 0
    assert _cli_json(url, "show", "coder")["version"] == 2

    restored = _cli_json(url, "rollback", "coder", "1", "--yes")
    assert (restored["version"], restored["model"]) == (3, "m1")
    again = _cli(url, "rollback", "coder", "1", "--yes")
    assert again.returncode == 0, again.stderr
    assert "no change" in again.stdout
    assert len(_cli_json(url, "versions", "coder")) == 3

    missing = _cli(url, "show", "nobody")
    assert missing.returncode == 1
    assert "no agent named 'nobody'" in missing.stderr
    assert "arquivo agents list" in missing.stderr
    no_version = _cli(url, "rollback", "coder", "9", "--yes")
    assert no_version.returncode == 1
    assert "no version 9" in no_version.stderr
    assert _cli(url, "show", "coder", "--version", "0").returncode == 2
