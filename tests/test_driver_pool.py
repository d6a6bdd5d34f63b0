"""The hot path's connection pool: a steady load reuses connections instead of opening them."""

from __future__ import annotations

import threading
import time
from typing import Any

from arquivo import Arquivo
from arquivo.db.fastpath import DriverPool


def _burst(pool: DriverPool, width: int, seen: list[Any]) -> set[int]:
    """Run ``width`` calls at once (each holding its connection until all have one);
    return the ids of the DB-API connections they used.

    ``seen`` keeps every connection object alive, so that an id is never reused.
    """
    barrier = threading.Barrier(width, timeout=30)
    used: list[Any] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with pool.transaction(write=False) as driver:
                used.append(driver.connection)
                barrier.wait()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(width)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    seen.extend(used)
    return {id(connection) for connection in used}


def test_a_steady_load_wider_than_keep_idle_reuses_its_connections(store: Arquivo) -> None:
    pool = DriverPool(store.engine, max_connections=6, keep_idle=2, idle_timeout=60.0)
    seen: list[Any] = []
    try:
        first = _burst(pool, 6, seen)
        assert len(first) == 6
        # The second wave finds the first wave's six connections idle and takes them,
        # rather than opening four new ones (what closing all beyond keep_idle did).
        assert _burst(pool, 6, seen) == first
    finally:
        pool.close()


def test_connections_beyond_keep_idle_close_once_unused(store: Arquivo) -> None:
    pool = DriverPool(store.engine, max_connections=6, keep_idle=2, idle_timeout=0.2)
    seen: list[Any] = []
    try:
        first = _burst(pool, 6, seen)
        time.sleep(0.3)
        # Releasing one connection closes those idle past the timeout, down to keep_idle.
        second = _burst(pool, 1, seen)
        assert second <= first
        third = _burst(pool, 6, seen)
        assert len(third & first) == 2
    finally:
        pool.close()
