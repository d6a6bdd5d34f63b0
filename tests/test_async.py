"""``AsyncArquivo``: the same methods, awaitable, from the same code."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from arquivo import AsyncArquivo, ValidationError
from arquivo.aio_facades import AsyncAgents, AsyncConversations, AsyncMetrics, AsyncPreferences
from arquivo.domain.agents import Agents
from arquivo.domain.conversations import Conversations
from arquivo.domain.metrics import Metrics
from arquivo.domain.preferences import Preferences
from conftest import Backend

REPO = Path(__file__).resolve().parents[1]


def test_generated_async_facades_are_up_to_date() -> None:
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_async.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (Preferences, AsyncPreferences),
        (Conversations, AsyncConversations),
        (Metrics, AsyncMetrics),
        (Agents, AsyncAgents),
    ],
)
def test_every_sync_method_has_an_awaitable_twin(sync: type, async_: type) -> None:
    for name, member in vars(sync).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        twin = getattr(async_, name)
        # timer() returns an object used with `async with`; it does no I/O when called.
        assert inspect.iscoroutinefunction(twin) != (name == "timer"), name
        assert inspect.signature(twin).parameters.keys() == (
            inspect.signature(member).parameters.keys()
        )


def test_async_store_end_to_end(backend: Backend) -> None:
    async def scenario() -> None:
        async with await AsyncArquivo.open(backend.url) as store:
            await store.preferences.set("u", "theme", "dark")
            assert await store.preferences.get("u", "theme") == "dark"
            await store.preferences.set_many("u", {"a": 1, "b": [2]})
            assert await store.preferences.all("u") == {"a": 1, "b": [2], "theme": "dark"}
            # Many coroutines at once: each call runs in a worker, none is lost.
            await asyncio.gather(
                *(store.conversations.append("u", "s", "user", f"m{i}") for i in range(40))
            )
            history = await store.conversations.history("u", "s")
            assert sorted(m.content for m in history) == sorted(f"m{i}" for i in range(40))
            assert len(await store.conversations.history("u", "s", limit=5)) == 5
            assert [s.message_count for s in await store.conversations.sessions("u")] == [40]
            with pytest.raises(ValidationError):
                await store.conversations.append("u", "s", "wizard", "x")
            assert await store.conversations.delete_session("u", "s") == 40
            assert await store.run_sync(lambda: store.sync.preferences.get("u", "a")) == 1

    asyncio.run(scenario())


def test_async_metrics_and_agents(backend: Backend) -> None:
    async def scenario() -> None:
        async with await AsyncArquivo.open(backend.url) as store:
            async with store.metrics.timer("llm_call", model="m"):
                await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError):
                async with store.metrics.timer("llm_call"):
                    raise RuntimeError("model down")
            await store.metrics.record("llm_call", 5.0)
            stats = (await store.metrics.summary())["llm_call"]
            assert (stats.count, stats.errors) == (3, 1)
            assert stats.max_ms >= 10.0
            recent = await store.metrics.list("llm_call", limit=1)
            assert recent[0].duration_ms == 5.0

            await store.agents.upsert("coder", "model-a", instructions="v1")
            await store.agents.upsert("coder", "model-b", instructions="v2")
            assert [v.version for v in await store.agents.versions("coder")] == [1, 2]
            rolled = await store.agents.rollback("coder", 1)
            assert (rolled.model, rolled.version) == ("model-a", 3)
            assert (await store.agents.get("coder")).instructions == "v1"

    asyncio.run(scenario())
