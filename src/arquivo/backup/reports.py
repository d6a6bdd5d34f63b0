"""What the backup operations report: plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field

from arquivo.backup.manifest import BackupInfo, IncompleteBackup

__all__ = ["PruneReport", "RestoreReport", "VerifyReport"]


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`Backups.verify`.

    Attributes:
        backup_id: The backup checked.
        ok: Every check passed.
        files_checked: Files whose size and SHA-256 were compared with the manifest.
        restored: The backup was restored into a throwaway database and checked there.
        tables: Row counts found in that database.
        problems: What failed, one line each.
        collections: Chunks per collection of the Chroma folder in the backup, as
            Chroma counted them once unpacked (empty when there is none).
    """

    backup_id: str
    ok: bool
    files_checked: int
    restored: bool
    tables: dict[str, int]
    problems: tuple[str, ...]
    collections: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneReport:
    """The outcome of :meth:`Backups.prune`.

    Attributes:
        removed: The backups deleted (or, with ``dry_run``, that would be).
        kept: The backups left.
        garbage: Folders of interrupted backups deleted (or that would be).
        dry_run: Nothing was deleted.
    """

    removed: tuple[BackupInfo, ...]
    kept: tuple[BackupInfo, ...]
    garbage: tuple[IncompleteBackup, ...]
    dry_run: bool


@dataclass(frozen=True)
class RestoreReport:
    """The outcome of :meth:`Backups.restore`.

    Attributes:
        backup_id: The backup restored.
        target: The database replaced (password hidden).
        dry_run: Nothing was changed; the report says what would be done.
        skipped: Nothing was done because the target exists (``if_db_not_exists``).
        replaced_rows: Rows the target held before (-1 when it was unreadable).
        safety_backup_id: The backup taken of the target before it was replaced.
        migrated_from: The revision the restored database was upgraded from, if any.
        tables: Row counts of the backup.
        duration_s: How long it took.
        method: ``physical`` (the backup's own kind of database: file or ``pg_restore``)
            or ``logical`` (the other kind: rows through the portable export).
        vectors_restored_to: The Chroma folder replaced by the backup's (``None`` when
            the backup holds none, or no Chroma folder is configured).
    """

    backup_id: str
    target: str
    dry_run: bool
    skipped: bool
    replaced_rows: int
    safety_backup_id: str | None
    migrated_from: str | None
    tables: dict[str, int]
    duration_s: float
    method: str = "physical"
    vectors_restored_to: str | None = None
