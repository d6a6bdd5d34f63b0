"""``/v1/users/{user_id}/sessions``: conversation sessions and their messages."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import CapacityLimiter
from fastapi import APIRouter, Path, Query, Request

from arquivo.server.auth import Caller
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store, check_user
from arquivo.server.schemas import HistoryOut, MessageIn, MessageOut, SessionOut
from arquivo.server.writes import run_write_with
from arquivo.store import Arquivo
from arquivo.values import Message

__all__ = ["append_message", "history_page", "router"]

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
    return Json(history_page(store, user_id, session_id, limit, before))


def history_page(
    store: Arquivo, user_id: str, session_id: str, limit: int, before: int | None
) -> dict[str, Any]:
    """The body of a history answer (this route's, and the fast lane's)."""
    page = store.conversations.history(user_id, session_id, limit=limit, before=before)
    cursor = page[0].id if len(page) == limit else None
    return {"messages": page, "next_before": cursor}


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
    message = await append_message(store, request.app.state.writer, user_id, session_id, body)
    return Json(message, status_code=201)


async def append_message(
    store: Arquivo,
    writer: CapacityLimiter,
    user_id: str,
    session_id: str,
    body: MessageIn,
) -> Message:
    """Store a message in a worker thread (this route's work, and the fast lane's)."""
    return await run_write_with(
        writer,
        store.conversations.append,
        user_id,
        session_id,
        body.role,
        body.content,
        model=body.model,
        workspace_path=body.workspace_path,
        extra_data=body.extra_data,
    )


@router.delete("/{session_id}", summary="Delete a session's messages")
def delete_session(
    user_id: UserId, session_id: SessionId, principal: Caller, store: Store
) -> dict[str, int]:
    """Remove every message of the session; says how many."""
    check_user(principal, user_id)
    return {"deleted": store.conversations.delete_session(user_id, session_id)}
