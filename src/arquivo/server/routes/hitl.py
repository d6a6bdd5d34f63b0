"""``/v1/hitl``: ask a person, see what waits, decide once, audit, and long-poll a decision.

A user key sees and decides only the sessions addressed to its user (others answer 404,
as if they did not exist); an admin key reaches every session. The actor recorded in
the audit trail is the key's user, never a name the client makes up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from arquivo.errors import NotFoundError
from arquivo.server.auth import Caller, Principal, forbidden
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store
from arquivo.server.schemas import (
    ActionOut,
    ApproveIn,
    CancelIn,
    CommentIn,
    HITLIn,
    HITLOut,
    RejectIn,
    RespondIn,
)
from arquivo.server.waiters import DecisionWaiters
from arquivo.store import Arquivo
from arquivo.values import HITLRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1/hitl", tags=["hitl"])

SessionId = Annotated[str, Path(min_length=1, max_length=255)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Filter = Annotated[str | None, Query(min_length=1, max_length=255)]


def _reachable(store: Arquivo, principal: Principal, session_id: str) -> HITLRequest:
    session = store.hitl.get(session_id)
    if not principal.can_reach(session.user_id):
        # Not 403: whether another user's session exists is not this caller's business.
        raise NotFoundError(f"there is no HITL session {session_id!r}")
    return session


def _user_filter(principal: Principal, user_id: str | None) -> str | None:
    if principal.is_admin:
        return user_id
    if user_id is not None and user_id != principal.user_id:
        raise forbidden(f"this key cannot list {user_id!r}'s sessions")
    return principal.user_id


@router.post("", response_model=HITLOut, status_code=201, summary="Ask a person")
def request(body: HITLIn, principal: Caller, store: Store) -> Json:
    """Create a pending session. A user key asks its own user (the default ``user_id``)."""
    user_id = body.user_id
    if user_id is None and not principal.is_admin:
        user_id = principal.user_id
    if user_id is not None and not principal.can_reach(user_id):
        raise forbidden(f"this key cannot ask {user_id!r}")
    created = store.hitl.request(
        body.workflow_id,
        body.step_id,
        body.request_data,
        user_id=user_id,
        kind=body.kind,
        expires_in=body.expires_in,
        actor=principal.actor,
    )
    return Json(created, status_code=201)


@router.get("/pending", response_model=list[HITLOut], summary="Sessions waiting, oldest first")
async def pending(
    principal: Caller,
    store: Store,
    workflow_id: Filter = None,
    user_id: Filter = None,
    limit: Limit = 100,
) -> Json:
    """Pending sessions (never expired ones): a user key gets its own user's."""
    who = _user_filter(principal, user_id)
    return Json(store.hitl.pending(workflow_id, who, limit=limit))


@router.get("", response_model=list[HITLOut], summary="Sessions, newest first")
def list_sessions(
    principal: Caller,
    store: Store,
    status: Annotated[
        str | None,
        Query(pattern="^(pending|approved|rejected|completed|cancelled|expired)$"),
    ] = None,
    workflow_id: Filter = None,
    user_id: Filter = None,
    since: datetime | None = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Json:
    """Any status, a page at a time."""
    who = _user_filter(principal, user_id)
    found = store.hitl.list(
        status=status,
        since=since,
        workflow_id=workflow_id,
        user_id=who,
        limit=limit,
        offset=offset,
    )
    return Json(found)


@router.get("/{session_id}", response_model=HITLOut, summary="One session")
def get(
    session_id: SessionId,
    principal: Caller,
    store: Store,
    viewed: Annotated[bool, Query(description="Record a 'viewed' audit event")] = False,
) -> Json:
    """The session as it stands (optionally recording that the caller viewed it)."""
    session = _reachable(store, principal, session_id)
    if viewed:
        session = store.hitl.get(session_id, viewed_by=principal.actor)
    return Json(session)


@router.get("/{session_id}/actions", response_model=list[ActionOut], summary="Audit trail")
def actions(session_id: SessionId, principal: Caller, store: Store) -> Json:
    """Every event of the session, oldest first."""
    _reachable(store, principal, session_id)
    return Json(store.hitl.actions(session_id))


@router.post("/{session_id}/approve", response_model=HITLOut, summary="Approve")
def approve(session_id: SessionId, body: ApproveIn, principal: Caller, store: Store) -> Json:
    """Approve an approval or review session; 409 if someone decided first."""
    _reachable(store, principal, session_id)
    return Json(
        store.hitl.approve(
            session_id,
            actor=principal.actor,
            response_data=body.response_data,
            comment=body.comment,
        )
    )


@router.post("/{session_id}/reject", response_model=HITLOut, summary="Reject, saying why")
def reject(session_id: SessionId, body: RejectIn, principal: Caller, store: Store) -> Json:
    """Reject a session of any kind; 409 if someone decided first."""
    _reachable(store, principal, session_id)
    return Json(store.hitl.reject(session_id, actor=principal.actor, reason=body.reason))


@router.post("/{session_id}/respond", response_model=HITLOut, summary="Answer with data")
def respond(session_id: SessionId, body: RespondIn, principal: Caller, store: Store) -> Json:
    """Answer an input session, or a review with edited data; 409 if already decided."""
    _reachable(store, principal, session_id)
    return Json(
        store.hitl.respond(session_id, actor=principal.actor, response_data=body.response_data)
    )


@router.post("/{session_id}/cancel", response_model=HITLOut, summary="Withdraw")
def cancel(session_id: SessionId, body: CancelIn, principal: Caller, store: Store) -> Json:
    """Withdraw a pending session."""
    _reachable(store, principal, session_id)
    return Json(store.hitl.cancel(session_id, actor=principal.actor, reason=body.reason))


@router.post(
    "/{session_id}/comments", response_model=ActionOut, status_code=201, summary="Add a remark"
)
def comment(session_id: SessionId, body: CommentIn, principal: Caller, store: Store) -> Json:
    """Add a remark to the audit trail (open or closed sessions)."""
    _reachable(store, principal, session_id)
    return Json(store.hitl.comment(session_id, actor=principal.actor, text=body.text), 201)


@router.get(
    "/{session_id}/wait",
    response_model=HITLOut,
    summary="Long-poll: answer once the session is decided, or after the timeout",
)
async def wait(
    session_id: SessionId,
    principal: Caller,
    request: Request,
    timeout: Annotated[float, Query(gt=0, le=60, description="Seconds, at most 60")] = 30.0,
) -> Json:
    """Block up to ``timeout`` seconds; the answer's ``status`` says if it was decided.

    Still ``pending`` after the timeout means: ask again. No server thread is held
    while waiting.
    """
    store: Arquivo = request.app.state.store
    await run_in_threadpool(_reachable, store, principal, session_id)
    waiters: DecisionWaiters = request.app.state.waiters
    limit = min(timeout, request.app.state.config.wait_max_s)
    return Json(await waiters.wait(session_id, limit))
