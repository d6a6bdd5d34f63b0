"""Hostile input to every public method of every facade, on both databases.

For each method, hypothesis draws each argument either from a small pool of valid values
(so calls get past the first check and reach the deeper ones) or from hostile values:
arbitrary unicode with lone surrogates and NUL bytes, 10 MB strings, deeply nested or
non-JSON data, NaN and infinities, huge integers, SQL-looking ids, path-traversal
names. Every call must succeed or raise an ``ArquivoError`` subclass with a message,
and a call that raised must leave every table exactly as it was.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arquivo import Arquivo, ArquivoError
from conftest import BACKENDS
from reliability.checks import fingerprint
from reliability.hostile import hostile
from reliability.ledger import Tally, long_run, tally

FACADES = ("preferences", "conversations", "metrics", "agents", "hitl")
NOW = datetime.now(UTC)

# Valid values per parameter name. "<pending>" and "<closed>" stand for HITL session ids.
VALID: dict[str, list[Any]] = {
    "user_id": ["u1"],
    "session_id": ["s1"],
    "key": ["theme"],
    "value": ["dark", 1, {"a": [1, 2]}],
    "values": [{"theme": "dark"}],
    "default": [None],
    "role": ["user", "assistant"],
    "content": ["hello"],
    "messages": [[{"role": "user", "content": "hi"}]],
    "model": ["qwen"],
    "workspace_path": [None, "/work"],
    "extra_data": [None, {"tokens": 3}],
    "limit": [10],
    "offset": [0],
    "before": [None, 1],
    "text": ["hello"],
    "operation": ["op", None],
    "duration_ms": [1.5],
    "success": [True],
    "error": [None, "boom"],
    "extra": [{"model": "qwen"}],
    "since": [None, NOW - timedelta(days=1)],
    "until": [None, NOW + timedelta(days=1)],
    "bucket": ["1h", timedelta(minutes=5)],
    "cutoff": [NOW - timedelta(days=365)],
    "name": ["coder"],
    "instructions": [None, "Be brief."],
    "tools": [None, ["fs"]],
    "memory": [None, {"facts": []}],
    "version": [1],
    "workflow_id": ["wf"],
    "step_id": ["step"],
    "request_data": [{"tool": "rm"}],
    "kind": ["approval"],
    "expires_in": [None, 3600],
    "id": ["<pending>", "<closed>"],
    "actor": ["ana"],
    "response_data": [None, {"ok": True}],
    "comment": [None, "fine"],
    "reason": ["no"],
    "viewed_by": [None, "ana"],
    "status": [None, "pending"],
    "timeout": [0.01],
    "poll_interval": [0.01],
}
# wait() blocks for as long as it is told on a pending session: never give it that one.
SAFE_IDS = {"wait": ["<closed>"]}


def _classes() -> dict[str, type]:
    from arquivo.domain.agents import Agents
    from arquivo.domain.conversations import Conversations
    from arquivo.domain.hitl import HITL
    from arquivo.domain.metrics import Metrics
    from arquivo.domain.preferences import Preferences

    return {
        "preferences": Preferences,
        "conversations": Conversations,
        "metrics": Metrics,
        "agents": Agents,
        "hitl": HITL,
    }


METHODS = [
    (facade, name)
    for facade, cls in _classes().items()
    for name, member in vars(cls).items()
    if not name.startswith("_") and callable(member)
]


def _parameters(facade: str, method: str) -> list[inspect.Parameter]:
    signature = inspect.signature(getattr(_classes()[facade], method))
    return [p for p in signature.parameters.values() if p.name != "self"]


def arguments(facade: str, method: str) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for one call: each valid or hostile, some omitted if optional."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for parameter in _parameters(facade, method):
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            fields["**"] = st.dictionaries(st.text(max_size=10), hostile, max_size=3)
            continue
        valid = SAFE_IDS.get(method, VALID[parameter.name]) if parameter.name == "id" else None
        pool = valid or VALID[parameter.name]
        fields[parameter.name] = st.one_of(st.sampled_from(pool), hostile)
    return st.fixed_dictionaries(fields)


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Arquivo, dict[str, str]]]:
    """One store per database for every method (a fresh database per method costs more
    than its examples), with a little of everything, and the ids of a pending and a
    closed HITL session."""
    admin = database = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'arquivo.db'}"
    else:
        from pg_server import create_database

        admin = request.getfixturevalue("postgres_admin_url")
        database = f"arquivo_hostile_{uuid.uuid4().hex[:12]}"
        url = create_database(admin, database)
    try:
        with Arquivo.open(url) as store:
            store.preferences.set("u1", "theme", "dark")
            store.conversations.append("u1", "s1", "user", "hello")
            store.metrics.record("op", 1.0)
            store.agents.upsert("coder", "qwen", instructions="Be brief.")
            pending = store.hitl.request("wf", "step", {"tool": "rm"})
            closed = store.hitl.request("wf", "step2", {"tool": "ls"})
            store.hitl.approve(closed.id, actor="ana")
            yield store, {"<pending>": pending.id, "<closed>": closed.id}
    finally:
        if admin and database:
            from pg_server import drop_database

            drop_database(admin, database)


_LEDGERS: dict[str, Tally] = {}


def _ledger(backend: str) -> Tally:
    if backend not in _LEDGERS:
        _LEDGERS[backend] = tally("hostile input (facades)", backend)
    return _LEDGERS[backend]


def call(store: Arquivo, facade: str, method: str, kwargs: dict[str, Any]) -> Any:
    """Make the call as a user would (a timer is entered and left)."""
    extra = kwargs.pop("**", {})
    target = getattr(getattr(store, facade), method)
    if method == "timer":
        with target(*kwargs.values(), **extra):
            return None
    positional = [
        kwargs.pop(p.name)
        for p in _parameters(facade, method)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name in kwargs
    ]
    return target(*positional, **kwargs, **extra)


EXAMPLES = 150 if long_run() else int(os.environ.get("ARQUIVO_HOSTILE_EXAMPLES", "6"))


def test_every_public_method_has_a_strategy() -> None:
    """A new method or parameter without valid values here fails, so coverage stays whole."""
    for facade, method in METHODS:
        for parameter in _parameters(facade, method):
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD:
                assert parameter.name in VALID, f"{facade}.{method}({parameter.name})"
    assert len(METHODS) >= 35


@pytest.mark.parametrize(("facade", "method"), METHODS, ids=[f"{f}.{m}" for f, m in METHODS])
def test_hostile_arguments(
    hostile_store: tuple[Arquivo, dict[str, str]], facade: str, method: str
) -> None:
    store, ids = hostile_store
    ledger = _ledger(store.dialect)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(kwargs=arguments(facade, method))
    def check(kwargs: dict[str, Any]) -> None:
        kwargs = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
        before = fingerprint(store.engine)
        ledger.faults += 1
        rejected: ArquivoError | None = None
        try:
            call(store, facade, method, dict(kwargs))
        except ArquivoError as exc:
            rejected = exc
        except Exception as exc:
            ledger.error(exc)
            raise AssertionError(
                f"{facade}.{method} raised {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        if rejected is None:
            ledger.acknowledged += 1
        else:
            ledger.error(rejected)
            assert rejected.message.strip(), "an error without a message"
            assert len(str(rejected)) < 2000, "an error message quoting huge input"
            assert fingerprint(store.engine) == before, "a rejected call changed the data"
        ledger.verified += 1

    check()
