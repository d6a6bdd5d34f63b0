"""SQLite: one file, WAL, and writers that queue for the lock instead of failing."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL, Connection, Engine, Table, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import ClauseElement, ColumnElement

from arquivo.db.dialects.base import READ_ONLY_OPTION, DialectSupport
from arquivo.db.urls import sqlite_path
from arquivo.errors import (
    ArquivoError,
    ConfigurationError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    DuplicateError,
    StorageFullError,
    ValidationError,
)
from arquivo.settings import Settings

__all__ = ["SqliteSupport"]

# Primary result codes (https://sqlite.org/rescode.html); the extended code's low byte.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_CONSTRAINT = 19
_SQLITE_NOTADB = 26
_SQLITE_CONSTRAINT_PRIMARYKEY = 1555
_SQLITE_CONSTRAINT_UNIQUE = 2067


#: ``PRAGMA cache_size`` of a bulk load: negative, in KiB.
_BULK_CACHE_KIB = -16384
#: ``PRAGMA wal_autocheckpoint`` of a bulk load, in pages.
_BULK_CHECKPOINT_PAGES = 20_000


class SqliteSupport(DialectSupport):
    """SQLite through the standard library's ``sqlite3`` module."""

    name = "sqlite"
    single_writer = True
    # Reading the schema page proves the file is a database, not just openable.
    health_query = "SELECT count(*) FROM sqlite_master"

    def prepare(self, url: URL) -> None:
        path = sqlite_path(url)
        if path is None:
            return
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # a name too long for the filesystem, say
            raise ConfigurationError(
                f"the SQLite path in DATABASE_URL is not usable: {exc.strerror}",
                hint="point DATABASE_URL at a file path the filesystem accepts",
            ) from exc
        if is_dir:
            raise ArquivoError(
                f"the SQLite path {path} is a directory",
                hint="point DATABASE_URL at a file inside it, e.g. sqlite:///data/arquivo.db",
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"cannot create the folder {path.parent} for the database: {exc.strerror}",
                hint="check the path in DATABASE_URL and the folder's permissions",
            ) from exc

    def engine_options(self, url: URL, settings: Settings) -> dict[str, Any]:
        options: dict[str, Any] = {
            # The busy handler must be armed before the first statement so that even
            # switching a fresh file to WAL waits for a concurrent opener.
            "connect_args": {
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            },
        }
        if sqlite_path(url) is None:
            # Every connection to ":memory:" is a new empty database; share one.
            options["poolclass"] = StaticPool
        return options

    def install(self, engine: Engine, settings: Settings) -> None:
        in_memory = sqlite_path(engine.url) is None
        pragmas = [
            f"PRAGMA busy_timeout = {settings.sqlite_busy_timeout_ms}",
            "PRAGMA foreign_keys = ON",
            f"PRAGMA synchronous = {settings.sqlite_synchronous}",
        ]
        if not in_memory:
            pragmas.insert(1, "PRAGMA journal_mode = WAL")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            # Take BEGIN out of the driver's hands: pysqlite's implicit transactions
            # break SAVEPOINT and cannot take the write lock up front.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            options = connection.get_execution_options()
            if options.get("isolation_level") == "AUTOCOMMIT":
                return
            # A writer that starts DEFERRED and upgrades later gets SQLITE_BUSY at once
            # (no busy wait) when another writer got in first; IMMEDIATE queues instead.
            if options.get(READ_ONLY_OPTION):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

    render_as_batch = True
    # Documented: without AUTOINCREMENT a new rowid is one more than the largest in the
    # table, until that reaches 2**63-1 (the callers check). BEGIN IMMEDIATE makes the
    # inserting transaction the only writer.
    sequential_rowids = True

    @contextlib.contextmanager
    def migration_connection(self, engine: Engine) -> Iterator[Connection]:
        # BEGIN IMMEDIATE (see _on_begin) is the cross-process lock. Foreign keys must be
        # off while batch operations rebuild tables, or a DROP TABLE would cascade into
        # child rows; the pragma is ignored inside a transaction, so it is set before.
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with connection.begin():
                    yield connection
                    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if problems:
                        raise ArquivoError(
                            f"the migration left {len(problems)} rows breaking foreign keys "
                            f"(first: {tuple(problems[0])}); it was rolled back",
                            hint="report this as a bug in the migration",
                        )
            finally:
                raw.execute("PRAGMA foreign_keys = ON")

    def insert(self, table: Table) -> Insert:
        return sqlite_dialect.insert(table)

    def returning_id(self, statement: Insert, column: ColumnElement[Any]) -> ClauseElement:
        # The driver's cursor.lastrowid is free; RETURNING costs a result row.
        return statement

    @contextlib.contextmanager
    def bulk_loading(self, connection: Connection) -> Iterator[None]:
        """A larger page cache and rarer checkpoints for the import's connection.

        The page cache: 16 MiB instead of SQLite's 2 MiB. Inserts into an index in key
        order other than the table's land on pages all over it; once the index
        outgrows the cache each page is read back from the OS. The cache is bounded:
        it holds the indexes of a few million rows, not the data.

        Checkpoints: every 20,000 WAL pages (80 MB) instead of 1,000. Each one copies
        the WAL into the database file and flushes it, and an import committing a
        batch every few thousand rows ran one every other commit, rewriting the same
        index pages each time (400,000 rows: 1.9 s of commits instead of 1.1). The
        WAL is folded in once at the end.
        """
        raw: Any = connection.connection.driver_connection
        cache = raw.execute("PRAGMA cache_size").fetchone()[0]
        every = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        raw.execute(f"PRAGMA cache_size={_BULK_CACHE_KIB}")
        raw.execute(f"PRAGMA wal_autocheckpoint={_BULK_CHECKPOINT_PAGES}")
        try:
            yield
        finally:
            # A connection broken meanwhile is discarded by the pool: nothing to undo.
            with contextlib.suppress(sqlite3.Error):
                raw.execute(f"PRAGMA cache_size={int(cache)}")
                raw.execute(f"PRAGMA wal_autocheckpoint={int(every)}")
                if not raw.in_transaction:
                    raw.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def driver_error_types(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def begin_driver(self, connection: Any, *, write: bool, single: bool = False) -> None:
        # Reads run as single autocommit statements (each is its own consistent snapshot).
        if write:
            connection.execute("BEGIN IMMEDIATE")

    def translate(self, orig: BaseException) -> ArquivoError | None:
        if not isinstance(orig, sqlite3.Error):
            return None
        code = getattr(orig, "sqlite_errorcode", None)
        text = str(orig)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in text:
            return DatabaseUnavailableError(
                f"the database stayed locked by another writer: {text}",
                hint="a long transaction is holding the write lock; raise "
                "ARQUIVO_SQLITE_BUSY_TIMEOUT_MS or keep transactions short",
            )
        if primary == _SQLITE_FULL or "database or disk is full" in text:
            return StorageFullError(f"the disk is full; nothing was written: {text}")
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "file is not a database" in text:
            return CorruptDatabaseError(f"the database file is damaged: {text}")
        if primary == _SQLITE_CANTOPEN:
            return DatabaseUnavailableError(
                f"cannot open the database file: {text}",
                hint="check that the path in DATABASE_URL exists and is writable",
            )
        if primary == _SQLITE_READONLY:
            return DatabaseUnavailableError(
                f"the database is read-only: {text}",
                hint="check the file's and its folder's permissions (WAL needs both writable)",
            )
        if primary == _SQLITE_IOERR:
            return StorageFullError(
                f"the disk failed to read or write: {text}",
                hint="check free space and the health of the volume, then retry",
            )
        if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY):
            return DuplicateError(f"duplicate key: {text}")
        if primary == _SQLITE_CONSTRAINT or isinstance(orig, sqlite3.IntegrityError):
            return ValidationError(f"the data breaks a database constraint: {text}")
        return None

    def database_size(self, engine: Engine) -> int | None:
        path = sqlite_path(engine.url)
        if path is None or not path.exists():
            return None
        size = path.stat().st_size
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            size += wal.stat().st_size
        return size

    def percentile_cont(
        self, fraction: float, value: ColumnElement[Any]
    ) -> ColumnElement[Any] | None:
        # SQLite has no percentile aggregate. The exact SQL form (row_number() over each
        # operation's rows, keeping the rows at floor/ceil positions) measured 2.6 to 7 s
        # over 1M rows on a 2-core machine; streaming the values out and sorting them in
        # Python took 1.4 s, so callers do that.
        return None

    def epoch_bucket(
        self, timestamp: ColumnElement[Any], width: ColumnElement[int]
    ) -> ColumnElement[int]:
        # Timestamps are ISO text in UTC ("YYYY-MM-DD HH:MM:SS.ffffff"). strftime('%s')
        # rounds to the millisecond first (so 59.9999 s would land in the next minute):
        # cut the fraction off and the whole seconds are exact.
        seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(timestamp, 1, 19)), sa.Integer)
        # Integer division truncates towards zero: step back one bucket when the remainder
        # is negative (a time before 1970), so the result is a floor like PostgreSQL's.
        return seconds // width - sa.cast(seconds % width < 0, sa.Integer)

    can_salvage_rows = True

    def integrity_problems(
        self, connection: Connection, tables: Sequence[Table], *, full: bool
    ) -> tuple[list[str], list[str]]:
        pragma = "integrity_check" if full else "quick_check"
        notes = [f"PRAGMA {pragma}", "PRAGMA foreign_key_check"]
        problems: list[str] = []
        try:
            found = [str(row[0]) for row in connection.exec_driver_sql(f"PRAGMA {pragma}")]
        except sa.exc.DBAPIError as exc:  # damage so bad the check itself cannot run
            return [f"{pragma} failed: {exc.orig}"], notes
        problems.extend(line for line in found if line != "ok")
        try:
            orphans = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        except sa.exc.DBAPIError as exc:
            problems.append(f"foreign_key_check failed: {exc.orig}")
        else:
            problems.extend(
                f"row {rowid} of {table} refers to a missing row of {parent}"
                for table, rowid, parent, _fk in orphans
            )
        return problems, notes

    def vacuum(self, engine: Engine) -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA optimize")
            # Fold the WAL back in so the file size on disk is the real one.
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def chunk_change_triggers(self) -> list[str]:
        # The SQLite index caches each collection's matrix in memory; these make any
        # writer (raw SQL, forget_user, another process) visible to it through one row.
        bump = (
            "UPDATE knowledge_collections SET version = version + 1{extra} "
            "WHERE id = {row}.collection_id"
        )
        epoch = ", epoch = epoch + 1"
        return [
            "CREATE TRIGGER knowledge_chunks_ai AFTER INSERT ON knowledge_chunks BEGIN "
            + bump.format(extra="", row="NEW")
            + "; END",
            "CREATE TRIGGER knowledge_chunks_au AFTER UPDATE ON knowledge_chunks BEGIN "
            + bump.format(extra=epoch, row="OLD")
            + "; "
            + bump.format(extra=epoch, row="NEW")
            + "; END",
            "CREATE TRIGGER knowledge_chunks_ad AFTER DELETE ON knowledge_chunks BEGIN "
            + bump.format(extra=epoch, row="OLD")
            + "; END",
        ]

    def json_scalar(self, column: ColumnElement[Any], key: str, kind: str) -> ColumnElement[Any]:
        path = sa.literal('$."' + key + '"')
        json_type = sa.func.json_type(column, path)
        if kind == "boolean":
            # json_extract gives 1/0 for true/false; json_type tells them from numbers.
            return sa.case((json_type == "true", sa.true()), (json_type == "false", sa.false()))
        wanted = ("text",) if kind == "text" else ("integer", "real")
        matches = sa.or_(*(json_type == name for name in wanted))
        return sa.case((matches, sa.func.json_extract(column, path)))
