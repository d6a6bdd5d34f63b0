"""``store.api_keys``: the keys that let people and agents use the HTTP service.

A token looks like ``arq_<id>_<secret>``: the id finds the row, the secret (32 random
bytes) proves possession. Only ``sha256(token)`` is stored, and it is compared in
constant time, so neither a leaked database nor a timing side channel yields a key.
The token is returned once, by :meth:`ApiKeys.create`.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import NotFoundError
from arquivo.models.api_keys import ApiKey
from arquivo.validation import check_id

__all__ = ["TOKEN_PREFIX", "ApiKeyRecord", "ApiKeys", "hash_token"]

#: Every token starts with it, so secret scanners and people recognise one.
TOKEN_PREFIX = "arq"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored (never its token).

    Attributes:
        id: The public part of the key (also inside its token).
        user_id: Whose data it reaches.
        name: A label for people ("laptop", "ci"...).
        is_admin: Reaches every user's data and the admin-only routes.
        created_at: When it was made (UTC).
        revoked_at: When it was revoked, if it was.
    """

    id: str
    user_id: str
    name: str | None
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether it still opens the door."""
        return self.revoked_at is None


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.user_id, row.name, row.is_admin, row.created_at, row.revoked_at)


def _key_id(token: str) -> str | None:
    # The secret is URL-safe base64, which may itself contain "_".
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


class ApiKeys(Facade):
    """Create, list, revoke and check API keys."""

    __slots__ = ()

    def create(
        self, user_id: str, *, admin: bool = False, name: str | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """Make a key for ``user_id``; returns it and its token (shown only now).

        Args:
            user_id: Whose preferences, conversations and HITL sessions it reaches.
            admin: Reach everything (every user, metrics, agents' changes, backups).
            name: A label to recognise it by in :meth:`list`.

        Raises:
            ValidationError: A bad user id or name.
        """
        check_id("user_id", user_id)
        if name is not None:
            check_id("name", name)
        key_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            id=key_id,
            user_id=user_id,
            name=name,
            is_admin=bool(admin),
            token_hash=hash_token(token),
            created_at=utcnow(),
        )
        with self._store.transaction() as session:
            session.add(row)
            session.flush()
            return _record(row), token

    def list(self, *, include_revoked: bool = True) -> builtins.list[ApiKeyRecord]:
        """Every key, oldest first (never their tokens)."""
        query = sa.select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        with self._store.transaction(read_only=True) as session:
            return [_record(row) for row in session.scalars(query)]

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Stop a key from working (kept, marked revoked, for the record). Idempotent.

        Raises:
            NotFoundError: No key has this id.
        """
        check_id("key_id", key_id)
        with self._store.transaction() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFoundError(
                    f"there is no API key {key_id!r}", hint="list them with `arquivo keys list`"
                )
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.flush()
            return _record(row)

    def authenticate(self, token: str) -> ApiKeyRecord | None:
        """The active key whose token this is, or ``None`` (unknown, wrong or revoked)."""
        if not isinstance(token, str) or len(token) > 200:
            return None
        key_id = _key_id(token)
        if key_id is None:
            return None
        with self._store.transaction(read_only=True) as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return None
            matches = hmac.compare_digest(row.token_hash, hash_token(token))
            return _record(row) if matches and row.revoked_at is None else None

    def get(self, key_id: str) -> ApiKeyRecord:
        """One key by its id.

        Raises:
            NotFoundError: No key has this id.
        """
        check_id("key_id", key_id)
        with self._store.transaction(read_only=True) as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFoundError(f"there is no API key {key_id!r}")
            return _record(row)

    def active_count(self, *, admin: bool | None = None) -> int:
        """How many keys work now (only admin ones, or only user ones, if asked)."""
        query = sa.select(sa.func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
        if admin is not None:
            query = query.where(ApiKey.is_admin.is_(admin))
        with self._store.transaction(read_only=True) as session:
            return int(session.scalar(query) or 0)
