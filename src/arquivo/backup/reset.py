"""``arquivo db reset``: start over with an empty schema, after a safety backup."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from arquivo.backup.service import Backups
from arquivo.db import migrate

__all__ = ["reset_database"]


def reset_database(
    engine: Engine, backup_dir: str | Path, *, pg_bin_dir: str | None = None
) -> str | None:
    """Back the database up, then drop Arquivo's tables and recreate them (migrations).

    The tables are dropped by downgrading to ``base`` and recreated by upgrading to
    ``head``, so the result is exactly what a fresh install creates; tables that are not
    Arquivo's are left alone. Returns the safety backup's id (``None`` when the database
    had no Arquivo schema, so there was nothing to keep).
    """
    safety = None
    if migrate.current_revision(engine) is not None:
        backups = Backups(engine, backup_dir, pg_bin_dir=pg_bin_dir)
        safety = backups.create(label="before db reset").id
        migrate.downgrade(engine, "base")
    migrate.upgrade(engine, "head")
    return safety
