"""The fast lane: the calls an agent makes on every turn, without FastAPI's per-request work.

Measured with one worker under ``wrk`` (CPU time of the server process per request):
``/healthz`` costs about 250 µs, a preference read through its FastAPI route about
450 µs and a page of history about 800 µs, of which the database and the JSON take
under 150 µs. The rest is FastAPI resolving the dependency tree (key, store, path and
query parameters) and matching the route list, per request. CPU per request is what
bounds requests/s on a 2-core machine, and what the queue behind each connection
waits for, so it sets the tail too.

This ASGI layer answers four routes directly: GET a session's messages, GET one
preference, GET the pending HITL list and POST a message. It takes a request only
when it can check all of it: the exact path, known query parameters holding plain
digits in range, a valid key that reaches the user, a JSON body the route's pydantic
model accepts. Anything else (no key, another user's data, a bad parameter, a chunked
body) goes on, untouched, to the FastAPI route, which answers with its usual 401, 403
or 422. The answers come from the same functions the routes call
(:func:`history_page`, :func:`preference`, :func:`append_message`), and the routes stay
in the OpenAPI document as the contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError as PydanticError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arquivo.errors import ArquivoError
from arquivo.server.auth import KeyCache, Principal, token_from
from arquivo.server.encode import dumps
from arquivo.server.errors import arquivo_error_answer
from arquivo.server.routes.conversations import append_message, history_page
from arquivo.server.routes.preferences import preference
from arquivo.server.schemas import MessageIn

__all__ = ["FastLane"]

_Answer = tuple[int, Any]
_JSON = (b"content-type", b"application/json")
_MAX_ID = 255
_MAX_LIMIT = 1000
_MAX_CURSOR = 2**63 - 1


def _id(value: str) -> bool:
    return 0 < len(value) <= _MAX_ID


def _query(scope: Scope, allowed: frozenset[str]) -> dict[str, str] | None:
    """The query parameters, if every one is known and given once; else ``None``."""
    raw: bytes = scope["query_string"]
    if not raw:
        return {}
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    if len(found) != len(pairs) or not found.keys() <= allowed:
        return None
    return found


def _int(text: str | None, default: int | None, low: int, high: int) -> tuple[bool, int | None]:
    """``(ok, value)``: ``text`` as an integer in ``[low, high]`` (plain ASCII digits)."""
    if text is None:
        return True, default
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return False, None
    value = int(text)
    return low <= value <= high, value


async def _principal(scope: Scope, keys: KeyCache) -> Principal | None:
    authorization = api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    token = token_from(authorization, api_key)
    return None if not token else await keys.by_token(token)


class FastLane:
    """Answer the hot routes directly; pass everything else to the app unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app`` (the rest of the middleware stack and the FastAPI router)."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Take the request if it is a hot one that checks out, else hand it on."""
        answer: _Answer | None = None
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            try:
                if scope["method"] == "GET":
                    answer = await self._read(scope, parts)
                elif scope["method"] == "POST" and _is_messages(parts):
                    answer, receive = await self._append(scope, parts, receive)
            except ArquivoError as exc:
                answer = arquivo_error_answer(exc)
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, content = answer
        body = dumps(content)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _read(self, scope: Scope, parts: list[str]) -> _Answer | None:
        state = scope["app"].state
        if _is_messages(parts):
            user_id, session_id = parts[3], parts[5]
            query = _query(scope, frozenset(("limit", "before")))
            if query is None or not (_id(user_id) and _id(session_id)):
                return None
            ok_limit, limit = _int(query.get("limit"), 20, 1, _MAX_LIMIT)
            ok_before, before = _int(query.get("before"), None, 0, _MAX_CURSOR)
            principal = await _principal(scope, state.keys)
            if not (ok_limit and ok_before) or principal is None:
                return None
            if not principal.can_reach(user_id):
                return None
            assert limit is not None
            return 200, history_page(state.store, user_id, session_id, limit, before)
        if len(parts) == 6 and parts[1:3] == ["v1", "users"] and parts[4] == "preferences":
            user_id, key = parts[3], parts[5]
            if scope["query_string"] or not (_id(user_id) and _id(key)):
                return None
            principal = await _principal(scope, state.keys)
            if principal is None or not principal.can_reach(user_id):
                return None
            return 200, preference(state.store, user_id, key)
        if parts == ["", "v1", "hitl", "pending"]:
            query = _query(scope, frozenset(("workflow_id", "user_id", "limit")))
            if query is None:
                return None
            ok, limit = _int(query.get("limit"), 100, 1, _MAX_LIMIT)
            workflow_id, asked = query.get("workflow_id"), query.get("user_id")
            if not ok or not all(_id(v) for v in (workflow_id, asked) if v is not None):
                return None
            principal = await _principal(scope, state.keys)
            if principal is None:
                return None
            who = asked
            if not principal.is_admin:
                if asked is not None and asked != principal.user_id:
                    return None
                who = principal.user_id
            assert limit is not None
            return 200, state.store.hitl.pending(workflow_id, who, limit=limit)
        return None

    async def _append(
        self, scope: Scope, parts: list[str], receive: Receive
    ) -> tuple[_Answer | None, Receive]:
        state = scope["app"].state
        user_id, session_id = parts[3], parts[5]
        declared = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_type = value
        # Only a declared length (already checked against the size limit) and JSON.
        if declared is None or content_type != b"application/json":
            return None, receive
        if scope["query_string"] or not (_id(user_id) and _id(session_id)):
            return None, receive
        principal = await _principal(scope, state.keys)
        if principal is None or not principal.can_reach(user_id):
            return None, receive
        body = await _read_body(receive)
        try:
            message = MessageIn.model_validate_json(body)
        except PydanticError:
            return None, _replay(body, receive)
        stored = await append_message(state.store, state.writer, user_id, session_id, message)
        return (201, stored), receive


def _is_messages(parts: list[str]) -> bool:
    return (
        len(parts) == 7
        and parts[1] == "v1"
        and parts[2] == "users"
        and parts[4] == "sessions"
        and parts[6] == "messages"
    )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that hands the app the body already read, then goes on as before."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
