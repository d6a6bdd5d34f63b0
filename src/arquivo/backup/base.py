"""What a physical-backup backend does; one subclass per database (DESIGN §2, decision 1).

Physical backup is one of the two places where SQLite and PostgreSQL truly differ (an
online page copy of one file versus ``pg_dump``/``pg_restore`` against a server), so each
has its class, registered by dialect name; the rest of the backup code never asks which
database it is talking to.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sqlalchemy import URL, Engine

from arquivo.backup.manifest import BackupInfo, ComponentRecord
from arquivo.errors import ArquivoError

__all__ = [
    "BACKENDS",
    "DatabaseBackend",
    "Loader",
    "Progress",
    "Snapshot",
    "TargetState",
    "backend_for",
    "counts_differ",
    "no_progress",
    "register",
]

#: Reports work done: (bytes or units done, total or None, what is being done).
Progress = Callable[[int, int | None, str], None]


#: Fills a fresh, empty database, given its URL (it migrates it and imports rows).
Loader = Callable[[URL], None]


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

    def scratch_copy(
        self, info: BackupInfo, scratch: Path, progress: Progress, server: URL | None
    ) -> AbstractContextManager[URL]:
        """The backup rebuilt as a throwaway database, checked and at the code's schema.

        A context manager yielding the throwaway database's URL (a file in ``scratch``,
        or a temporary database on ``server``); it is deleted when the block ends. Used
        to read a backup's rows through the logical export (a restore across databases).

        Raises:
            CorruptDatabaseError: The rebuilt database fails its checks.
            ValidationError: A server database is needed and ``server`` is ``None``.
        """
        raise NotImplementedError

    def check_scratch(self, info: BackupInfo, server: URL | None) -> None:
        """Fail early if :meth:`scratch_copy` could not work here (nothing is written).

        Raises:
            ValidationError: A server is needed and ``server`` is ``None``.
            MissingDependencyError: A tool it needs is missing.
        """

    def replace_with(self, url: URL, load: Loader, expected: dict[str, int]) -> None:
        """Replace the database at ``url`` with a fresh one that ``load`` fills, atomically.

        The fresh database is made beside the target (a temporary file, or a temporary
        database on the same server), filled by ``load``, its row counts compared with
        ``expected`` (the tables ``expected`` names), checked, and only then swapped in
        as in :meth:`restore`; a failure or a kill before the swap leaves the target as
        it was.

        Raises:
            CorruptDatabaseError: The loaded database's counts or integrity check fail.
        """
        raise NotImplementedError


def counts_differ(found: dict[str, int], expected: dict[str, int]) -> list[str]:
    """The tables of ``expected`` whose count in ``found`` is not the expected one."""
    return sorted(name for name, rows in expected.items() if found.get(name, 0) != rows)


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
