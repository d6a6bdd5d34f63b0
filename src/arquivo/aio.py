"""``AsyncArquivo``: the same store and methods, awaitable, for async agent frameworks.

The core is synchronous; each coroutine runs the sync method in a worker thread of the
store's own pool, so an event loop is never blocked on the database and the logic exists
once. The async facades are generated from the sync ones (``aio_facades.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import URL

from arquivo.aio_facades import (
    AsyncAgents,
    AsyncConversations,
    AsyncHITL,
    AsyncKnowledge,
    AsyncMetrics,
    AsyncPreferences,
    AsyncRetention,
    AsyncUsers,
)
from arquivo.settings import Settings
from arquivo.store import Arquivo

__all__ = ["AsyncArquivo"]

_T = TypeVar("_T")


class AsyncArquivo:
    """Everything an agent app must not lose, with awaitable methods.

    Use it from async code::

        store = await AsyncArquivo.open()
        await store.preferences.set("user123", "theme", "dark")
        await store.conversations.append("user123", "s1", "user", "Hello")
        async with store.metrics.timer("chat_completion"):
            ...
        await store.close()
    """

    def __init__(self, store: Arquivo, *, max_workers: int | None = None) -> None:
        """Wrap an open sync store; prefer :meth:`open`.

        Args:
            store: The sync store whose methods run in the worker threads.
            max_workers: Worker threads, i.e. database calls in flight at once.
        """
        self._store = store
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers or 8, thread_name_prefix="arquivo"
        )
        self.preferences = AsyncPreferences(store.preferences, self._run)
        """Per-user preferences (awaitable)."""
        self.conversations = AsyncConversations(store.conversations, self._run)
        """Conversation history (awaitable)."""
        self.metrics = AsyncMetrics(store.metrics, self._run)
        """System metrics (awaitable; ``timer`` works with ``async with``)."""
        self.agents = AsyncAgents(store.agents, self._run)
        """The agent registry (awaitable)."""
        self.hitl = AsyncHITL(store.hitl, self._run)
        """Human-in-the-loop sessions (awaitable; ``wait`` blocks a worker thread)."""
        self.users = AsyncUsers(store.users, self._run)
        """Everything held about one user: ``data``, ``forget`` (awaitable)."""
        self.retention = AsyncRetention(store.retention, self._run)
        """Retention: ``apply`` a policy (awaitable)."""
        self.knowledge = AsyncKnowledge(store.knowledge, self._run)
        """RAG knowledge (awaitable; embedding runs in a worker thread)."""

    @classmethod
    async def open(
        cls,
        url: str | URL | None = None,
        *,
        settings: Settings | None = None,
        auto_migrate: bool | None = None,
        max_workers: int | None = None,
    ) -> AsyncArquivo:
        """Open (and by default migrate) a database; the arguments are :meth:`Arquivo.open`'s."""
        store = await asyncio.to_thread(
            Arquivo.open, url, settings=settings, auto_migrate=auto_migrate
        )
        return cls(store, max_workers=max_workers)

    @property
    def sync(self) -> Arquivo:
        """The underlying sync store (for ``transaction()`` and the ORM, in a worker)."""
        return self._store

    async def run_sync(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run any blocking function (e.g. one using ``store.sync.transaction()``) in a worker."""
        return await self._run(functools.partial(function, *args, **kwargs))

    async def _run(self, call: Callable[[], _T], /) -> _T:
        loop = asyncio.get_running_loop()
        # Context variables (request ids, tracing) follow the call into the worker.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, call)

    async def close(self) -> None:
        """Wait for calls in flight, then close the store. Idempotent."""
        await asyncio.to_thread(self._executor.shutdown, True)
        self._store.close()

    async def __aenter__(self) -> AsyncArquivo:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncArquivo({self._store.url!r})"
