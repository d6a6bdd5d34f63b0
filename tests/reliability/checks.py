"""What the reliability tests verify after a fault: integrity, and a fingerprint of the data."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from arquivo.models import Base


def integrity_problems(engine: Engine) -> list[str]:
    """What the database's own checker finds wrong (empty when healthy).

    SQLite: ``PRAGMA integrity_check`` (every page, index and constraint). PostgreSQL:
    ``amcheck``'s ``bt_index_check`` with ``heapallindexed`` on every index of Arquivo's
    tables, which also proves each heap row is in its indexes.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("PRAGMA integrity_check").scalars().all()
            return [] if rows == ["ok"] else [str(row) for row in rows]
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        tables = sorted(Base.metadata.tables)
        indexes = (
            connection.execute(
                sa.text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am a ON a.oid = c.relam "
                    "WHERE t.relname = ANY(:tables) AND a.amname = 'btree'"
                ),
                {"tables": tables},
            )
            .scalars()
            .all()
        )
        problems = []
        for index in indexes:
            try:
                with connection.begin_nested():
                    connection.execute(
                        sa.text("SELECT bt_index_check(CAST(:index AS regclass), true)"),
                        {"index": index},
                    )
            except sa.exc.DBAPIError as exc:
                problems.append(f"{index}: {exc.orig}")
        connection.commit()
        assert indexes, "no index found to check"
        return problems


def fingerprint(engine: Engine) -> str:
    """A hash of every row of every Arquivo table, in primary-key order."""
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for name in sorted(Base.metadata.tables):
            table = Base.metadata.tables[name]
            order = list(table.primary_key.columns) or list(table.columns)
            for row in connection.execute(sa.select(table).order_by(*order)):
                digest.update(repr((name, *_plain(row))).encode("utf-8", "backslashreplace"))
    return digest.hexdigest()


def _plain(row: Any) -> tuple[Any, ...]:
    return tuple(row)
