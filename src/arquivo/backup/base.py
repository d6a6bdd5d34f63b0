"""What a physical-backup backend does; one subclass per database (DESIGN §2, decision 1).

Physical backup is one of the two places where SQLite and PostgreSQL truly differ (an
online page copy of one file versus ``pg_dump``/``pg_restore`` against a server), so each
has its class, registered by dialect name; the rest of the backup code never asks which
database it is talking to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sqlalchemy import URL, Engine

from arquivo.backup.manifest import BackupInfo, ComponentRecord
from arquivo.errors import ArquivoError

__all__ = [
    "BACKENDS",
    "DatabaseBackend",
    "Progress",
    "Snapshot",
    "TargetState",
    "backend_for",
    "no_progress",
    "register",
]

#: Reports work done: (bytes or units done, total or None, what is being done).
Progress = Callable[[int, int | None, str], None]


def no_progress(done: int, total: int | None, what: str) -> None:
    """A :data:`Progress` that shows nothing."""


@dataclass(frozen=True)
class Snapshot:
    """What a backend's dump produced.

    Attributes:
        component: The files written (the ``database`` component).
        revision: The Alembic revision inside the snapshot.
        tables: Row counts per table, in the snapshot.
    """

    component: ComponentRecord
    revision: str | None
    tables: dict[str, int]


@dataclass(frozen=True)
class TargetState:
    """A restore target before anything is done to it.

    Attributes:
        exists: The database (file, or database on the server) exists.
        rows: Rows in its tables (0 for a fresh or schema-only database).
    """

    exists: bool
    rows: int


class DatabaseBackend:
    """Physical backup and restore for one database family."""

    dialect: ClassVar[str]
    #: The ``kind`` of the database component this backend writes and reads.
    kind: ClassVar[str]

    def __init__(self, *, pg_bin_dir: str | None = None) -> None:
        """Set up the backend.

        Args:
            pg_bin_dir: Where to find ``pg_dump``/``pg_restore`` (``ARQUIVO_PG_BIN_DIR``);
                searched for when omitted. Ignored by backends that need no tools.
        """
        self.pg_bin_dir = pg_bin_dir

    def snapshot(self, engine: Engine, folder: Path, codec: str, progress: Progress) -> Snapshot:
        """Dump a consistent snapshot of the database into ``folder``."""
        raise NotImplementedError

    def inspect_target(self, url: URL) -> TargetState:
        """Whether the restore target exists and holds rows."""
        raise NotImplementedError

    def verify(
        self, info: BackupInfo, scratch: Path, progress: Progress, server: URL | None
    ) -> dict[str, int]:
        """Restore the backup into a throwaway database, check it; return its row counts.

        The throwaway database is a file in ``scratch`` or, for a server database, a
        temporary database on ``server`` (the bound database's server).

        Raises:
            CorruptDatabaseError: The restored database fails its integrity check.
        """
        raise NotImplementedError

    def restore(self, info: BackupInfo, url: URL, progress: Progress) -> str | None:
        """Replace the database at ``url`` with the backup, atomically.

        The backup is restored beside the target, checked, migrated forward when older
        than the code, and only then swapped in; any failure before the swap leaves the
        target untouched. Returns the revision the restored database was migrated from,
        or ``None`` when no migration was needed.
        """
        raise NotImplementedError


BACKENDS: dict[str, type[DatabaseBackend]] = {}


def register(backend: type[DatabaseBackend]) -> type[DatabaseBackend]:
    """Class decorator: add a backend to the registry (keyed by its dialect name)."""
    BACKENDS[backend.dialect] = backend
    return backend


def backend_for(dialect: str, *, pg_bin_dir: str | None = None) -> DatabaseBackend:
    """The backend of a dialect (``sqlite``, ``postgresql``).

    Raises:
        ArquivoError: No backend handles that database.
    """
    # Imported here so that each backend module registers itself on first use.
    from arquivo.backup import postgres, sqlite  # noqa: F401

    try:
        return BACKENDS[dialect](pg_bin_dir=pg_bin_dir)
    except KeyError:
        raise ArquivoError(f"no backup support for the {dialect!r} database") from None
