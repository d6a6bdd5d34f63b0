"""What routes share: the store, and the check that a caller may reach a user's data.

Where a route runs: FastAPI runs a plain ``def`` route in a thread pool, an ``async
def`` one on the event loop. The hot reads (a preference, a page of history, the
pending HITL list) are ``async def`` and call the store directly: each is one indexed
read that never waits on a lock (SQLite WAL readers and PostgreSQL MVCC reads do not
block) and takes a fraction of a millisecond, less than the hop to a thread and back
costs. Writes, which can wait on a lock, and anything unbounded stay in the pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from arquivo.server.auth import Principal, forbidden
from arquivo.store import Arquivo

__all__ = ["Store", "check_user", "get_store"]


async def get_store(request: Request) -> Arquivo:
    """The app's open store (``async``: FastAPI would run a plain function in a thread)."""
    store: Arquivo = request.app.state.store
    return store


Store = Annotated[Arquivo, Depends(get_store)]


def check_user(principal: Principal, user_id: str) -> None:
    """Refuse (403) a caller whose key does not reach ``user_id``'s data."""
    if not principal.can_reach(user_id):
        raise forbidden(f"this key belongs to another user and cannot reach {user_id!r}'s data")
