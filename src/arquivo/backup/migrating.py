"""Bringing a restored database to the code's schema, and refusing one that is newer."""

from __future__ import annotations

from sqlalchemy import URL

from arquivo.backup.manifest import BackupInfo
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.errors import SchemaTooNewError

__all__ = ["check_revision", "migrate_to_head"]


def check_revision(info: BackupInfo) -> None:
    """Refuse a backup whose schema revision this version of Arquivo does not ship.

    Raises:
        SchemaTooNewError: The backup was made by a newer Arquivo.
    """
    if info.revision is None:
        return
    if info.revision not in {revision.id for revision in migrate.history()}:
        raise SchemaTooNewError(
            f"backup {info.id} is at schema revision {info.revision}, newer than this "
            f"Arquivo knows (its newest is {migrate.head_revision()}); nothing was changed",
            hint=f"upgrade the arquivo package (the backup was made by arquivo "
            f"{info.arquivo_version or 'unknown'}) and restore again",
        )


def migrate_to_head(url: URL, info: BackupInfo) -> str | None:
    """Upgrade the database at ``url`` to the head revision when the backup is older.

    Returns the revision it was migrated from, or ``None`` when it was already at head.
    """
    check_revision(info)
    if info.revision == migrate.head_revision():
        return None
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "head")
    finally:
        engine.dispose()
    return info.revision or "base"
