"""``/v1/users/{user_id}/preferences``: per-user JSON settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from arquivo.errors import NotFoundError
from arquivo.server.auth import Caller
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store, check_user
from arquivo.server.schemas import PreferenceIn, PreferenceOut
from arquivo.server.writes import run_write
from arquivo.store import Arquivo

__all__ = ["preference", "router"]

router = APIRouter(prefix="/v1/users/{user_id}/preferences", tags=["preferences"])

UserId = Annotated[str, Path(min_length=1, max_length=255)]
Key = Annotated[str, Path(min_length=1, max_length=255)]
_MISSING = object()


@router.get("", response_model=dict[str, Any], summary="All of a user's preferences")
async def all_preferences(user_id: UserId, principal: Caller, store: Store) -> Json:
    """Every preference of the user, as one object."""
    check_user(principal, user_id)
    return Json(store.preferences.all(user_id))


@router.get("/{key}", response_model=PreferenceOut, summary="One preference")
async def get_preference(user_id: UserId, key: Key, principal: Caller, store: Store) -> Json:
    """One preference's value; 404 when the user has no such key."""
    check_user(principal, user_id)
    return Json(preference(store, user_id, key))


def preference(store: Arquivo, user_id: str, key: str) -> dict[str, Any]:
    """The body of a preference answer (this route's, and the fast lane's).

    Raises:
        NotFoundError: The user has no such key.
    """
    value = store.preferences.get(user_id, key, _MISSING)
    if value is _MISSING:
        raise NotFoundError(
            f"user {user_id!r} has no preference {key!r}", hint="set it with PUT first"
        )
    return {"user_id": user_id, "key": key, "value": value}


@router.put("/{key}", response_model=PreferenceOut, summary="Set one preference")
async def set_preference(
    user_id: UserId, key: Key, body: PreferenceIn, principal: Caller, store: Store, request: Request
) -> Json:
    """Create or replace the value (any JSON)."""
    check_user(principal, user_id)
    await run_write(request, store.preferences.set, user_id, key, body.value)
    return Json({"user_id": user_id, "key": key, "value": body.value})


@router.delete("/{key}", status_code=204, summary="Delete one preference")
def delete_preference(user_id: UserId, key: Key, principal: Caller, store: Store) -> None:
    """Remove it; 404 when it did not exist."""
    check_user(principal, user_id)
    if not store.preferences.delete(user_id, key):
        raise NotFoundError(f"user {user_id!r} has no preference {key!r}")
