"""Console pages to read: conversations, metrics (table and chart) and agents (with diffs)."""

from __future__ import annotations

import difflib
import json
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from arquivo.db.types import utcnow
from arquivo.errors import ArquivoError
from arquivo.server.console.chart import latency_chart
from arquivo.server.console.routes import ConsoleUser, make_router, page
from arquivo.store import Arquivo
from arquivo.values import AgentVersion

__all__ = ["router"]

router = make_router()
# The metrics page's time ranges and the bucket width that gives each about 30-60 points.
RANGES = {"1h": ("1h", "2m"), "24h": ("24h", "30m"), "7d": ("7d", "4h")}
_SPANS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


def _store(request: Request) -> Arquivo:
    store: Arquivo = request.app.state.store
    return store


def _denied(request: Request, user: Any, message: str) -> HTMLResponse:
    return page(request, "message.html", 403, user=user, title="Not allowed", message=message)


@router.get("/conversations")
def conversations(request: Request, user: ConsoleUser, user_id: str = "") -> HTMLResponse:
    """A user's sessions (an admin picks the user; a user key sees its own)."""
    who = user_id.strip() or user.user_id
    if not user.can_reach(who):
        return _denied(request, user, "Your key only reaches your own conversations.")
    try:
        sessions = _store(request).conversations.sessions(who, limit=200)
    except ArquivoError as exc:
        return page(request, "message.html", 422, user=user, title="Bad user", message=exc.message)
    return page(
        request, "conversations.html", user=user, who=who, sessions=sessions, active="conversations"
    )


@router.get("/conversations/{user_id}/{session_id}")
def messages(
    request: Request, user_id: str, session_id: str, user: ConsoleUser, before: int | None = None
) -> HTMLResponse:
    """A session's messages, oldest first, 50 at a time (older pages by link)."""
    if not user.can_reach(user_id):
        return _denied(request, user, "Your key only reaches your own conversations.")
    rows = _store(request).conversations.history(user_id, session_id, limit=50, before=before)
    older = rows[0].id if len(rows) == 50 else None
    return page(
        request,
        "messages.html",
        user=user,
        who=user_id,
        session_id=session_id,
        messages=rows,
        older=older,
        active="conversations",
    )


@router.get("/metrics")
def metrics(
    request: Request, user: ConsoleUser, operation: str = "", range: str = "24h"
) -> HTMLResponse:
    """Per-operation table (count, error rate, p50/p95/p99) and a latency chart."""
    if not user.is_admin:
        return _denied(request, user, "Metrics are shown to admin keys only.")
    range = range if range in RANGES else "24h"
    since = utcnow() - _SPANS[range]
    store = _store(request)
    stats = list(store.metrics.summary(since=since).values())
    names = [s.operation for s in stats]
    chosen = operation if operation in names else (names[0] if names else "")
    buckets = (
        store.metrics.timeseries(chosen, bucket=RANGES[range][1], since=since) if chosen else []
    )
    return page(
        request,
        "metrics.html",
        user=user,
        stats=stats,
        chosen=chosen,
        range=range,
        ranges=list(RANGES),
        buckets=buckets,
        chart=latency_chart(buckets, since, utcnow(), title=f"{chosen} latency, last {range}"),
        active="metrics",
    )


@router.get("/agents")
def agents(request: Request, user: ConsoleUser) -> HTMLResponse:
    """Every agent's current definition."""
    return page(
        request, "agents.html", user=user, agents=_store(request).agents.list(), active="agents"
    )


def _as_text(version: AgentVersion) -> list[str]:
    tools = json.dumps(version.tools, indent=2, ensure_ascii=False, sort_keys=True)
    return [
        f"model: {version.model}",
        "instructions:",
        *(version.instructions or "").splitlines(),
        "tools:",
        *tools.splitlines(),
    ]


@router.get("/agents/{name}")
def agent(
    request: Request, name: str, user: ConsoleUser, a: int | None = None, b: int | None = None
) -> HTMLResponse:
    """An agent's versions, and the difference between two of them."""
    store = _store(request)
    try:
        record = store.agents.get(name)
        history = store.agents.versions(name)
    except ArquivoError as exc:
        return page(request, "message.html", 404, user=user, title="Not found", message=exc.message)
    by_number = {v.version: v for v in history}
    new = b if b in by_number else history[-1].version
    old = a if a in by_number else max(new - 1, history[0].version)
    diff = list(
        difflib.unified_diff(
            _as_text(by_number[old]),
            _as_text(by_number[new]),
            fromfile=f"version {old}",
            tofile=f"version {new}",
            lineterm="",
        )
    )
    return page(
        request,
        "agent.html",
        user=user,
        agent=record,
        history=list(reversed(history)),
        old=old,
        new=new,
        diff=diff,
        active="agents",
    )
