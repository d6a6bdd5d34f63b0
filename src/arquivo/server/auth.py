"""Who is calling: API keys (header) for the API, signed session cookies for the console.

A user key reaches only its own user's preferences, conversations and HITL sessions; an
admin key reaches everything. Checked keys are cached for a couple of seconds, so the
hot path costs one hash and a dictionary lookup, and a revoked key stops working within
``auth_cache_ttl_s``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from arquivo.domain.api_keys import ApiKeyRecord, hash_token
from arquivo.errors import NotFoundError
from arquivo.store import Arquivo

__all__ = [
    "COOKIE_NAME",
    "Caller",
    "KeyCache",
    "Principal",
    "authenticate_request",
    "forbidden",
    "require_admin",
    "sign_session",
    "token_from",
    "verify_session",
]

#: The console's session cookie.
COOKIE_NAME = "arquivo_session"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        key_id: The API key it authenticated with.
        user_id: The user the key belongs to.
        is_admin: Whether it reaches everything.
        name: The key's label.
    """

    key_id: str
    user_id: str
    is_admin: bool
    name: str | None = None

    @property
    def actor(self) -> str:
        """The name recorded in audit trails for what this caller does."""
        return self.user_id

    def can_reach(self, user_id: str | None) -> bool:
        """Whether this caller may see or change data belonging to ``user_id``."""
        return self.is_admin or (user_id is not None and user_id == self.user_id)


def forbidden(message: str, hint: str = "use a key of that user, or an admin key") -> HTTPException:
    """A 403 with the standard error body."""
    return HTTPException(403, {"error": "forbidden", "message": message, "hint": hint})


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        401,
        {
            "error": "unauthorized",
            "message": message,
            "hint": "send 'Authorization: Bearer <key>'; create keys with `arquivo keys create`",
        },
        headers={"WWW-Authenticate": "Bearer"},
    )


def _principal(record: ApiKeyRecord) -> Principal:
    return Principal(record.id, record.user_id, record.is_admin, record.name)


class KeyCache:
    """Checked keys by token hash (and by id, for cookies), each for a few seconds."""

    def __init__(self, store: Arquivo, ttl_s: float) -> None:
        self._store = store
        self._ttl = ttl_s
        self._by_hash: dict[str, tuple[float, Principal | None]] = {}
        self._by_id: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[bool, str], asyncio.Event] = {}

    def _fresh(self, table: dict[str, tuple[float, Principal | None]], key: str) -> Any:
        entry = table.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry
        return None

    def _put(self, table: dict[str, tuple[float, Principal | None]], key: str, value: Any) -> None:
        with self._lock:
            if len(table) > 10_000:  # bound memory under a flood of bad tokens
                table.clear()
            table[key] = (time.monotonic() + self._ttl, value)

    async def by_token(self, token: str) -> Principal | None:
        """The principal of a token, or ``None`` when it opens nothing."""
        digest = hash_token(token)
        entry = self._fresh(self._by_hash, digest)
        if entry is not None:
            return entry[1]  # type: ignore[no-any-return]
        return await self._load(self._by_hash, digest, self._authenticate, token)

    async def by_id(self, key_id: str) -> Principal | None:
        """The principal of an active key, by its id (for console sessions)."""
        entry = self._fresh(self._by_id, key_id)
        if entry is not None:
            return entry[1]  # type: ignore[no-any-return]
        return await self._load(self._by_id, key_id, self._active, key_id)

    async def _load(
        self,
        table: dict[str, tuple[float, Principal | None]],
        key: str,
        read: Callable[[str], Principal | None],
        argument: str,
    ) -> Principal | None:
        # When a busy key's entry expires, every request in flight misses it at once. Each
        # used to read it in a thread of its own, on a connection of its own: every two
        # seconds a burst of new PostgreSQL connections, and a p99 ten times the p50. One
        # read per key at a time; the others wait for it and take its answer.
        slot = (table is self._by_hash, key)
        loading = self._loading.get(slot)
        if loading is not None:
            await loading.wait()
            entry = self._fresh(table, key)
            if entry is not None:
                return entry[1]  # type: ignore[no-any-return]
            # That read failed or was abandoned: read again, here.
            return await self._read(table, key, read, argument)
        self._loading[slot] = loading = asyncio.Event()
        try:
            return await self._read(table, key, read, argument)
        finally:
            del self._loading[slot]
            loading.set()

    async def _read(
        self,
        table: dict[str, tuple[float, Principal | None]],
        key: str,
        read: Callable[[str], Principal | None],
        argument: str,
    ) -> Principal | None:
        principal = await run_in_threadpool(read, argument)
        self._put(table, key, principal)
        return principal

    def _authenticate(self, token: str) -> Principal | None:
        record = self._store.api_keys.authenticate(token)
        return None if record is None else _principal(record)

    def _active(self, key_id: str) -> Principal | None:
        try:
            record = self._store.api_keys.get(key_id)
        except NotFoundError:
            return None
        return _principal(record) if record.active else None


def token_from(header: str | None, api_key: str | None) -> str | None:
    """The key in an ``Authorization: Bearer`` header, else in ``X-API-Key``."""
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return api_key


async def authenticate_request(request: Request) -> Principal:
    """The API caller, from ``Authorization: Bearer <key>`` (or ``X-API-Key``).

    Raises:
        HTTPException: 401 when the key is missing, unknown or revoked.
    """
    headers = request.headers
    token = token_from(headers.get("authorization"), headers.get("x-api-key"))
    if not token:
        raise _unauthorized("this request needs an API key")
    cache: KeyCache = request.app.state.keys
    principal = await cache.by_token(token)
    if principal is None:
        raise _unauthorized("the API key is not valid (unknown or revoked)")
    return principal


Caller = Annotated[Principal, Depends(authenticate_request)]


async def require_admin(principal: Caller) -> Principal:
    """The caller, if it holds an admin key.

    Raises:
        HTTPException: 403 for a user key.
    """
    if not principal.is_admin:
        raise forbidden("this route needs an admin key", "create one: arquivo keys create --admin")
    return principal


# --- console session cookies ----------------------------------------------------------


def _mac(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_session(secret: bytes, key_id: str, ttl_s: int) -> str:
    """A cookie value naming a key until ``ttl_s`` seconds from now, signed."""
    payload = f"{key_id}.{int(time.time()) + ttl_s}"
    return f"{payload}.{_mac(secret, payload)}"


def verify_session(secret: bytes, value: str) -> str | None:
    """The key id in a cookie made by :func:`sign_session`, if genuine and not expired."""
    parts = value.split(".")
    if len(parts) != 3:
        return None
    key_id, expires, mac = parts
    if not hmac.compare_digest(_mac(secret, f"{key_id}.{expires}"), mac):
        return None
    if not expires.isdigit() or int(expires) < time.time():
        return None
    return key_id
