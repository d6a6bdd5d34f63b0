"""``store.users``: everything held about one user, counted or forgotten at once.

Which tables hold a user's rows is derived from the schema (see
:mod:`arquivo.portability.scope`): any table with a ``user_id`` column, and the rows
that refer to those (a HITL session's audit trail). Tables added later join by
themselves; data kept outside the schema's tables (an external vector store) joins
through :meth:`Users.add_hook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from arquivo.domain.base import Facade
from arquivo.portability.scope import user_scope
from arquivo.validation import check_id

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["ForgetReport", "UserDataHook", "Users"]


class UserDataHook(Protocol):
    """A place outside the schema's tables that holds user data (e.g. a vector index).

    Both methods run inside the transaction that deletes the user's rows: raising
    rolls everything back. A store that cannot join that transaction (a remote
    service) should delete in :meth:`delete` last thing and be idempotent.
    """

    #: The name shown in reports (like a table name).
    name: str

    def count(self, session: Session, user_id: str) -> int:
        """How many of the user's items this place holds."""
        ...

    def delete(self, session: Session, user_id: str) -> int:
        """Delete the user's items; return how many there were."""
        ...


@dataclass(frozen=True)
class ForgetReport:
    """What :meth:`Users.forget` removed (or, in a dry run, would remove).

    Attributes:
        user_id: The user.
        rows: Rows per table (and per hook), including zeros.
        total: The sum of ``rows``.
        dry_run: ``True`` when nothing was deleted.
    """

    user_id: str
    rows: Mapping[str, int]
    total: int
    dry_run: bool


class Users(Facade):
    """Per-user data across every table: ``data`` (counts) and ``forget`` (delete all)."""

    __slots__ = ("_hooks",)

    def __init__(self, store: Arquivo) -> None:
        """Attach to ``store``."""
        super().__init__(store)
        self._hooks: list[UserDataHook] = []

    def add_hook(self, hook: UserDataHook) -> None:
        """Include a place outside the schema's tables in :meth:`data` and :meth:`forget`."""
        self._hooks.append(hook)

    def data(self, user_id: str) -> ForgetReport:
        """Count what is held about ``user_id``, per table (a dry run of :meth:`forget`).

        Raises:
            ValidationError: ``user_id`` is not a valid id.
        """
        return self.forget(user_id, dry_run=True)

    def forget(self, user_id: str, *, dry_run: bool = False) -> ForgetReport:
        """Delete every row that belongs to ``user_id``, in one transaction.

        Preferences, messages, HITL sessions with their audit trail, and the rows of
        any table added later with a ``user_id`` column (plus registered hooks).
        Shared rows (metrics, agent definitions) are not the user's and stay.

        Args:
            user_id: The user to forget.
            dry_run: Count what would be deleted, and delete nothing.

        Returns:
            The rows deleted (or that would be) per table.

        Raises:
            ValidationError: ``user_id`` is not a valid id.
        """
        user_id = check_id("user_id", user_id)
        counts: dict[str, int] = {}
        with self._store.transaction(read_only=dry_run) as session:
            for hook in self._hooks:
                counts[hook.name] = (
                    hook.count(session, user_id) if dry_run else hook.delete(session, user_id)
                )
            # Children first: their condition reads the parent rows they belong to.
            for scope in reversed(user_scope(user_id)):
                if dry_run:
                    query = sa.select(sa.func.count()).select_from(scope.table).where(scope.where)
                    counts[scope.table.name] = int(session.execute(query).scalar_one())
                else:
                    result = session.execute(sa.delete(scope.table).where(scope.where))
                    counts[scope.table.name] = int(getattr(result, "rowcount", 0))
        ordered = dict(sorted(counts.items()))
        return ForgetReport(user_id, ordered, sum(ordered.values()), dry_run)
