"""The server's cache of checked API keys: one database read per key at a time."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from arquivo import Arquivo, DatabaseUnavailableError
from arquivo.server.auth import KeyCache, Principal


class CountingCache(KeyCache):
    """The real cache, counting (and slowing) its reads of the key table."""

    def __init__(self, store: Arquivo, ttl_s: float, *, fail_first: bool = False) -> None:
        super().__init__(store, ttl_s)
        self.reads = 0
        self._fail_first = fail_first
        self._count_lock = threading.Lock()

    def _authenticate(self, token: str) -> Principal | None:
        with self._count_lock:
            self.reads += 1
            first = self.reads == 1
        time.sleep(0.05)  # a read slow enough for every other request to miss meanwhile
        if first and self._fail_first:
            raise DatabaseUnavailableError("the database went away for a moment")
        return super()._authenticate(token)


async def _many(cache: KeyCache, token: str, count: int) -> list[object]:
    return await asyncio.gather(
        *(cache.by_token(token) for _ in range(count)), return_exceptions=True
    )


def test_requests_missing_the_same_key_at_once_read_it_once(tmp_path: Path) -> None:
    with Arquivo.open(f"sqlite:///{tmp_path / 'keys.db'}") as store:
        _, token = store.api_keys.create("alice")
        cache = CountingCache(store, ttl_s=0.2)
        answers = asyncio.run(_many(cache, token, 20))
        assert cache.reads == 1
        assert all(isinstance(a, Principal) and a.user_id == "alice" for a in answers)
        time.sleep(0.3)  # expired: the next burst reads it again, once
        asyncio.run(_many(cache, token, 20))
        assert cache.reads == 2
        wrong = asyncio.run(_many(cache, token[:-2] + "xx", 10))
        assert wrong == [None] * 10
        assert cache.reads == 3


def test_when_the_shared_read_fails_the_waiting_requests_read_for_themselves(
    tmp_path: Path,
) -> None:
    with Arquivo.open(f"sqlite:///{tmp_path / 'keys.db'}") as store:
        _, token = store.api_keys.create("alice")
        cache = CountingCache(store, ttl_s=60, fail_first=True)
        answers = asyncio.run(_many(cache, token, 5))
        failed = [a for a in answers if isinstance(a, DatabaseUnavailableError)]
        assert len(failed) == 1  # the request whose read failed gets the error
        assert sum(isinstance(a, Principal) for a in answers) == 4
        assert cache.reads == 5  # one failed read, then one by each request that waited
