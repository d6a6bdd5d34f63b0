"""``BackupManager``: the seeds' asynchronous backup interface, over :class:`Backups`.

As the seed document shows it::

    manager = BackupManager(backup_path="./data/backups", retention_days=30)
    metadata = await manager.backup_data(data={"agents": agents_dict}, backup_type="full")
    removed = await manager.cleanup_old_backups()

plus ``await manager.backup()`` for a backup of the whole store. The work runs in a
worker thread, so an event loop is never blocked by disk or database I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arquivo.backup.manifest import BackupInfo
from arquivo.backup.service import DEFAULT_BACKUP_DIR, Backups, VerifyReport
from arquivo.errors import ValidationError

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["BackupManager"]


class BackupManager:
    """Backups of data payloads and of the whole store, with retention by age."""

    def __init__(
        self,
        backup_path: str | Path = DEFAULT_BACKUP_DIR,
        retention_days: int = 30,
        *,
        store: Arquivo | None = None,
        url: str | None = None,
    ) -> None:
        """Set up a manager on a backup folder.

        Args:
            backup_path: The folder of the backups (created on first backup).
            retention_days: :meth:`cleanup_old_backups` removes backups older than this.
            store: The store :meth:`backup` backs up; when omitted it opens ``url``, or
                the database of ``DATABASE_URL`` (default ``./data/arquivo.db``).
            url: A database URL, used when no ``store`` is given.

        Raises:
            ValidationError: ``retention_days`` is not a positive number.
        """
        if isinstance(retention_days, bool) or not isinstance(retention_days, (int, float)):
            raise ValidationError(f"retention_days must be a number, not {retention_days!r}")
        if retention_days <= 0:
            raise ValidationError(
                f"retention_days must be positive, not {retention_days}",
                hint="keep backups for at least a day: retention_days=30 keeps a month",
            )
        self.backup_path = Path(backup_path)
        self.retention_days = retention_days
        self._store = store
        self._url = url
        self._data = Backups(None, self.backup_path)

    async def backup_data(
        self, data: Mapping[str, Any], backup_type: str = "full", *, label: str = ""
    ) -> BackupInfo:
        """Back up a JSON-serialisable mapping; returns the backup's metadata.

        Args:
            data: What to keep (``{"agents": agents_dict}``); datetimes, sets and
                dataclasses are converted, anything else must be JSON already.
            backup_type: A free word kept in the metadata (``full``, ``incremental``...).
            label: A note kept in the metadata.

        Raises:
            ValidationError: ``data`` is not a mapping or not JSON-serialisable.
        """
        if not isinstance(data, Mapping):
            raise ValidationError(f"backup data must be a mapping, not {type(data).__name__}")
        if not isinstance(backup_type, str) or not backup_type.strip():
            raise ValidationError("backup_type must be a non-empty string, e.g. 'full'")
        return await asyncio.to_thread(
            self._data.create_data, data, backup_type=backup_type, label=label
        )

    async def load_data(self, backup_id: str) -> dict[str, Any]:
        """The mapping a :meth:`backup_data` backup holds (checksums are checked first)."""
        return await asyncio.to_thread(self._data.load_data, backup_id)

    async def backup(self, *, label: str = "") -> BackupInfo:
        """Back up the whole store's database (a consistent snapshot); returns its metadata."""
        return await asyncio.to_thread(self._backup_store, label)

    def _backup_store(self, label: str) -> BackupInfo:
        if self._store is not None:
            chroma = self._store.backups.chroma_path
            return Backups(self._store.engine, self.backup_path, chroma_path=chroma).create(
                label=label
            )
        from arquivo.settings import Settings
        from arquivo.store import Arquivo

        settings = Settings.load()
        with Arquivo.open(self._url or settings.database_url, settings=settings) as store:
            return Backups(
                store.engine,
                self.backup_path,
                pg_bin_dir=settings.pg_bin_dir,
                chroma_path=store.backups.chroma_path,
            ).create(label=label)

    async def list_backups(self) -> list[BackupInfo]:
        """The complete backups, newest first."""
        return await asyncio.to_thread(self._data.list)

    async def verify(self, backup_id: str) -> VerifyReport:
        """Check a backup's files against their checksums (see :meth:`Backups.verify`)."""
        engine = None if self._store is None else self._store.engine
        return await asyncio.to_thread(Backups(engine, self.backup_path).verify, backup_id)

    async def cleanup_old_backups(self) -> list[BackupInfo]:
        """Remove backups older than ``retention_days``; returns what was removed.

        The newest backup is always kept, however old.
        """
        report = await asyncio.to_thread(
            self._data.prune, max_age=timedelta(days=self.retention_days)
        )
        return list(report.removed)
