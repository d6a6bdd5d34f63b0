"""What routes share: the store, and the check that a caller may reach a user's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from arquivo.server.auth import Principal, forbidden
from arquivo.store import Arquivo

__all__ = ["Store", "check_user", "get_store"]


def get_store(request: Request) -> Arquivo:
    """The app's open store."""
    store: Arquivo = request.app.state.store
    return store


Store = Annotated[Arquivo, Depends(get_store)]


def check_user(principal: Principal, user_id: str) -> None:
    """Refuse (403) a caller whose key does not reach ``user_id``'s data."""
    if not principal.can_reach(user_id):
        raise forbidden(f"this key belongs to another user and cannot reach {user_id!r}'s data")
