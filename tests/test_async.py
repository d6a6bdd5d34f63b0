"""``AsyncArquivo``: the same methods, awaitable, from the same code."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from arquivo import AsyncArquivo, ValidationError
from arquivo.aio_facades import AsyncConversations, AsyncPreferences
from arquivo.domain.conversations import Conversations
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
    ("sync", "async_"), [(Preferences, AsyncPreferences), (Conversations, AsyncConversations)]
)
def test_every_sync_method_has_an_awaitable_twin(sync: type, async_: type) -> None:
    for name, member in vars(sync).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        twin = getattr(async_, name)
        assert inspect.iscoroutinefunction(twin), name
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
