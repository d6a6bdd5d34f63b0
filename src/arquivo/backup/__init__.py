"""Backups an operator can trust: consistent snapshots, checksummed, verified, restorable.

``store.backups`` (:class:`Backups`) makes and manages backup sets of a store's
database; :class:`BackupManager` is the seeds' asynchronous interface to the same.
"""

from arquivo.backup.manager import BackupManager
from arquivo.backup.manifest import BackupInfo, ComponentRecord, FileRecord, IncompleteBackup
from arquivo.backup.service import (
    DEFAULT_BACKUP_DIR,
    Backups,
    PruneReport,
    RestoreReport,
    VerifyReport,
)

__all__ = [
    "DEFAULT_BACKUP_DIR",
    "BackupInfo",
    "BackupManager",
    "Backups",
    "ComponentRecord",
    "FileRecord",
    "IncompleteBackup",
    "PruneReport",
    "RestoreReport",
    "VerifyReport",
]
