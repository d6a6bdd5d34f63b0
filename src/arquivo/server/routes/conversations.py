"""``/v1/users/{user_id}/sessions``: conversation sessions and their messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from arquivo.server.auth import Caller
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store, check_user
from arquivo.server.schemas import HistoryOut, MessageIn, MessageOut, SessionOut
from arquivo.server.writes import run_write

__all__ = ["router"]

router = APIRouter(prefix="/v1/users/{user_id}/sessions", tags=["conversations"])

UserId = Annotated[str, Path(min_length=1, max_length=255)]
SessionId = Annotated[str, Path(min_length=1, max_length=255)]


@router.get("", response_model=list[SessionOut], summary="A user's sessions, newest first")
def sessions(
    user_id: UserId,
    principal: Caller,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Json:
    """Each session with its message count and first and last activity."""
    check_user(principal, user_id)
    return Json(store.conversations.sessions(user_id, limit=limit, offset=offset))


@router.get(
    "/{session_id}/messages",
    response_model=HistoryOut,
    summary="A page of a session's messages, oldest first",
)
async def history(
    user_id: UserId,
    session_id: SessionId,
    principal: Caller,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> Json:
    """The last ``limit`` messages (before the ``before`` id, to page back).

    ``next_before`` in the answer is the cursor for the previous page.
    """
    check_user(principal, user_id)
    page = store.conversations.history(user_id, session_id, limit=limit, before=before)
    cursor = page[0].id if len(page) == limit else None
    return Json({"messages": page, "next_before": cursor})


@router.post(
    "/{session_id}/messages",
    response_model=MessageOut,
    status_code=201,
    summary="Append a message",
)
async def append(
    user_id: UserId,
    session_id: SessionId,
    body: MessageIn,
    principal: Caller,
    store: Store,
    request: Request,
) -> Json:
    """Store a message at the end of the session (created by its first message)."""
    check_user(principal, user_id)
    message = await run_write(
        request,
        store.conversations.append,
        user_id,
        session_id,
        body.role,
        body.content,
        model=body.model,
        workspace_path=body.workspace_path,
        extra_data=body.extra_data,
    )
    return Json(message, status_code=201)


@router.delete("/{session_id}", summary="Delete a session's messages")
def delete_session(
    user_id: UserId, session_id: SessionId, principal: Caller, store: Store
) -> dict[str, int]:
    """Remove every message of the session; says how many."""
    check_user(principal, user_id)
    return {"deleted": store.conversations.delete_session(user_id, session_id)}
