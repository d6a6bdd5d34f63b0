"""The HITL inbox: what waits for a decision, deciding it, and closed sessions' trails."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from arquivo.errors import ArquivoError, NotFoundError, ValidationError
from arquivo.server.auth import Principal
from arquivo.server.console.routes import ConsoleUser, make_router, page
from arquivo.server.errors import status_for
from arquivo.store import Arquivo
from arquivo.values import HITLRequest

__all__ = ["router"]

router = make_router()
_ACTIONS = ("approve", "reject", "respond", "cancel", "comment")
Text = Annotated[str, Form(max_length=1_000_000)]


def _store(request: Request) -> Arquivo:
    store: Arquivo = request.app.state.store
    return store


def _pending(store: Arquivo, principal: Principal) -> list[HITLRequest]:
    who = None if principal.is_admin else principal.user_id
    # The library lists the oldest first (a queue); people want the newest on top.
    return list(reversed(store.hitl.pending(user_id=who, limit=500)))


def _reachable(store: Arquivo, principal: Principal, session_id: str) -> HITLRequest:
    session = store.hitl.get(session_id)
    if not principal.can_reach(session.user_id):
        raise NotFoundError(f"there is no HITL session {session_id!r}")
    return session


@router.get("/")
def inbox(request: Request, user: ConsoleUser) -> HTMLResponse:
    """Pending requests, newest first; the list refreshes itself."""
    sessions = _pending(_store(request), user)
    return page(request, "inbox.html", user=user, sessions=sessions, active="inbox")


@router.get("/inbox/fragment")
def inbox_fragment(request: Request, user: ConsoleUser) -> HTMLResponse:
    """Just the list, for the page's periodic refresh."""
    sessions = _pending(_store(request), user)
    return page(request, "inbox_list.html", user=user, sessions=sessions)


@router.get("/closed")
def closed(request: Request, user: ConsoleUser, offset: int = 0) -> HTMLResponse:
    """Decided, cancelled and expired sessions, newest first."""
    store = _store(request)
    who = None if user.is_admin else user.user_id
    offset = max(offset, 0)
    rows = [s for s in store.hitl.list(user_id=who, limit=100, offset=offset) if not s.is_pending]
    return page(request, "closed.html", user=user, sessions=rows, offset=offset, active="closed")


def _detail(
    request: Request, user: Principal, session_id: str, *, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    store = _store(request)
    try:
        session = _reachable(store, user, session_id)
    except NotFoundError as exc:
        return page(request, "message.html", 404, user=user, title="Not found", message=exc.message)
    trail = store.hitl.actions(session_id)
    return page(
        request,
        "hitl_detail.html",
        status_code,
        user=user,
        session=session,
        trail=trail,
        active="inbox" if session.is_pending else "closed",
        **extra,
    )


@router.get("/hitl/{session_id}")
def detail(request: Request, session_id: str, user: ConsoleUser, done: str = "") -> HTMLResponse:
    """One session: its data, decision forms while pending, and its audit trail."""
    return _detail(request, user, session_id, done=done)


def _parse_json(field: str, text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{field} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            hint='write JSON, e.g. {"answer": "yes"} or "some text" in quotes',
        ) from exc


def _apply(
    store: Arquivo, user: Principal, session_id: str, action: str, form: dict[str, str]
) -> None:
    _reachable(store, user, session_id)
    hitl, actor = store.hitl, user.actor
    if action == "approve":
        comment = form["comment"].strip() or None
        hitl.approve(session_id, actor=actor, comment=comment)
    elif action == "reject":
        hitl.reject(session_id, actor=actor, reason=form["reason"])
    elif action == "respond":
        data = _parse_json("the response", form["response_data"])
        hitl.respond(session_id, actor=actor, response_data=data)
    elif action == "cancel":
        hitl.cancel(session_id, actor=actor, reason=form["reason"].strip() or None)
    else:
        hitl.comment(session_id, actor=actor, text=form["comment"])


@router.post("/hitl/{session_id}")
async def decide(
    request: Request,
    session_id: str,
    user: ConsoleUser,
    action: Annotated[str, Form()],
    reason: Text = "",
    comment: Text = "",
    response_data: Text = "",
) -> Response:
    """Apply a decision; the agent waiting on the session wakes at once."""
    if action not in _ACTIONS:
        return page(
            request,
            "message.html",
            422,
            user=user,
            title="Unknown action",
            message=f"{action!r} is not an action",
        )
    form = {"reason": reason, "comment": comment, "response_data": response_data}
    try:
        await run_in_threadpool(_apply, _store(request), user, session_id, action, form)
    except ArquivoError as exc:
        failure = exc
    else:
        return RedirectResponse(f"/console/hitl/{session_id}?done={action}", status_code=303)
    status, _ = status_for(failure)
    return await run_in_threadpool(
        lambda: _detail(request, user, session_id, status_code=status, error=failure, form=form)
    )
