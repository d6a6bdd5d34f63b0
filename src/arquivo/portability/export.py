"""Writing a store's data, or one user's, to a portable JSON Lines file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from arquivo.db import migrate
from arquivo.db.dialects import DialectSupport, get_dialect, translate_errors
from arquivo.db.fastpath import Prepared
from arquivo.errors import ValidationError
from arquivo.portability.codec import TableCodec, is_json
from arquivo.portability.fileformat import (
    FORMAT,
    FORMAT_VERSION,
    ExportReport,
    Progress,
    ProgressCallback,
    atomic_text_file,
)
from arquivo.portability.scope import schema_tables, user_scope
from arquivo.validation import check_id

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["export_data"]

# Rows fetched per round trip (and written per write call). Memory is bounded by this,
# not by the size of the database.
_BATCH = 2_000


def _arquivo_version() -> str:
    from arquivo import __version__

    return __version__


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"a stored value cannot be written as JSON: {exc}",
            hint="a row holds a value of a type Arquivo cannot export; report it",
        ) from exc


def export_data(
    store: Arquivo,
    path: str | Path,
    *,
    user_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> ExportReport:
    """Write every row of the store (or of one user) to a JSON Lines file.

    The file is read from one snapshot of the database, so writers may keep writing
    meanwhile; rows are streamed (memory does not grow with the data) and the file
    appears at ``path`` only once complete (written beside it, fsynced, renamed). A
    name ending in ``.gz`` makes it gzip-compressed. Ids are kept, so foreign keys
    still match when the file is imported elsewhere (see :func:`import_data`).

    Args:
        store: The store to export.
        path: The file to write (replaced if it exists).
        user_id: Export only this user's rows: the rows of tables with a ``user_id``
            column, and the rows that refer to them (a HITL session's actions).
        progress: Called with a :class:`Progress` every batch of rows.

    Returns:
        What was written, with the number of rows per table.

    Raises:
        ValidationError: ``user_id`` is not a valid id.
        StorageFullError: The file could not be written; nothing was left at ``path``.
    """
    started = time.perf_counter()
    path = Path(path)
    if user_id is not None:
        user_id = check_id("user_id", user_id)
    tables = schema_tables()
    selected: list[tuple[Table, Any]]
    if user_id is None:
        selected = [(table, None) for table in tables]
    else:
        selected = [(scope.table, scope.where) for scope in user_scope(user_id, tables)]
    support = get_dialect(store.dialect)
    revision = migrate.current_revision(store.engine)
    counts = {table.name: 0 for table in tables}
    with (
        translate_errors(store.dialect),
        store.engine.connect() as connection,
        connection.execution_options(**support.snapshot_options()).begin(),
    ):
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arquivo_version": _arquivo_version(),
            "revision": revision,
            "dialect": store.dialect,
            "created_at": datetime.now(UTC).isoformat(),
            "user_id": user_id,
            "tables": [table.name for table in tables],
        }
        with atomic_text_file(path) as out:
            out.write(_dumps(header) + "\n")
            for table, where in selected:
                counts[table.name] = _export_table(connection, support, table, where, out, progress)
            out.write(_dumps({"end": True, "rows": counts}) + "\n")
    return ExportReport(
        path=path,
        rows=counts,
        total_rows=sum(counts.values()),
        bytes=path.stat().st_size,
        seconds=time.perf_counter() - started,
        dialect=store.dialect,
        revision=revision,
        user_id=user_id,
    )


def _export_table(
    connection: Connection,
    support: DialectSupport,
    table: Table,
    where: Any,
    out: Any,
    progress: ProgressCallback | None,
) -> int:
    total = None
    if progress is not None:
        counting = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            counting = counting.where(where)
        total = int(connection.execute(counting).scalar_one())
        progress(Progress("export", table.name, 0, total))
    # JSON columns are read as the database's own JSON text: no parsing, no re-encoding.
    query = sa.select(
        *[
            sa.cast(column, sa.Text).label(column.name) if is_json(column.type) else column
            for column in table.columns
        ]
    ).order_by(*table.primary_key.columns)
    if where is not None:
        query = query.where(where)
    encode = TableCodec(table).line_encoder()
    done = 0
    # The rows are read on the driver's own cursor (in this transaction's snapshot) and
    # processed a column at a time: SQLAlchemy's result rows cost a third of an export.
    prepared = Prepared(query, connection.dialect)
    cursor = support.streaming_cursor(connection.connection.driver_connection)
    try:
        cursor.execute(prepared.sql, prepared.parameters({}))
        prepared.bind_results(cursor.description)
        while rows := cursor.fetchmany(_BATCH):
            if not prepared.passthrough:
                rows = prepared.rows(rows)
            out.write("".join([encode(row) for row in rows]))
            done += len(rows)
            if progress is not None:
                progress(Progress("export", table.name, done, total))
    except ValueError as exc:  # a NaN or infinity inside a JSON document
        raise ValidationError(
            f"a value in {table.name} cannot be written as JSON: {exc}",
            hint="a row holds a value Arquivo cannot export; report it",
        ) from exc
    finally:
        cursor.close()
    return done
