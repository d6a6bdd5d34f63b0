"""PostgreSQL through psycopg 3: a sized pool, pre-ping, timeouts, advisory locks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL, Column, Connection, Engine, Table, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import ColumnElement

from arquivo.db.dialects.base import DialectSupport, Listener
from arquivo.db.types import (
    JSONText,
    UTCDateTime,
    Vector,
    export_utc_layout,
    json_text,
    register_psycopg_vectors,
)
from arquivo.errors import (
    ArquivoError,
    ConfigurationError,
    ConflictError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    DuplicateError,
    MissingDependencyError,
    StorageFullError,
    ValidationError,
)
from arquivo.settings import Settings

__all__ = ["MIGRATION_LOCK_KEY", "PostgresSupport"]

# pg_advisory_xact_lock key shared by every process migrating an Arquivo schema
# (the bytes of "arquivo" read as a big-endian integer; any fixed bigint would do).
MIGRATION_LOCK_KEY = int.from_bytes(b"arquivo", "big")

_log = logging.getLogger("arquivo")
# The change counters of the exact (numpy) index, kept only where pgvector is missing.
_BUMP_FUNCTION = "arquivo_knowledge_bump"
_TRIGGER_PREFIX = "knowledge_chunks_"

# Hot-path connections idle for longer than this are pinged before reuse.
_TRUST_IDLE_S = 30.0

# The staging table of a bulk insert (a temporary table: private to the session).
_STAGING = "arquivo_insert_staging"


class _PostgresListener(Listener):
    """``LISTEN`` on a psycopg connection of its own, in autocommit mode."""

    def __init__(self, connection: Any, channel: str) -> None:
        from psycopg import sql

        self._connection = connection
        connection.autocommit = True
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout: float) -> bool:
        # notifies() returns after the first notification or when the timeout passes.
        received = False
        for _notification in self._connection.notifies(timeout=max(timeout, 0.0), stop_after=1):
            received = True
        return received

    def close(self) -> None:
        import psycopg

        # A broken connection is being thrown away anyway.
        with contextlib.suppress(psycopg.Error):
            self._connection.close()


def _json_as_text(bind: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``bind``, carrying ``from_json``: a parsed JSON value -> its JSON text for jsonb."""

    def process(value: Any) -> Any:
        return value if bind is None else bind(value)

    def from_json(value: Any) -> Any:
        # jsonb keeps the value, not the text, so orjson's text stores what json.dumps'
        # would; where that is not sure, the general path.
        out = json_text(value)
        return process(value) if out is None else out

    process.from_json = from_json  # type: ignore[attr-defined]
    return process


def _timestamp_as_text(bind: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``bind``, carrying ``from_text``: an ISO 8601 text -> a timestamptz's UTC text."""

    def process(value: Any) -> Any:
        return value if bind is None else bind(value)

    fromisoformat = datetime.fromisoformat

    def from_text(text: str) -> str:
        value = fromisoformat(text)  # ValueError: not a timestamp (the loader says so)
        if export_utc_layout(text):
            return text  # the server reads it as is
        # Any other form Python reads (naive is UTC; week dates, basic format) is written
        # out in that layout, so the server never parses what Python did not.
        return str(process(value).isoformat())

    process.from_text = from_text  # type: ignore[attr-defined]
    return process


def _keys_free(
    cursor: Any, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]], quote: Any
) -> bool:
    """Whether no row of ``table`` has an integer key in the range of ``rows``' keys (one
    index probe): then the rows most likely all go in, as in a first import."""
    keys = list(table.primary_key.columns)
    if len(keys) != 1 or keys[0].name not in names or not rows:
        return False
    at = list(names).index(keys[0].name)
    values = [row[at] for row in rows]
    if not all(type(value) is int for value in values):
        return False
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {quote(table.name)} "
        f"WHERE {quote(keys[0].name)} BETWEEN %s AND %s)",
        (min(values), max(values)),
    )
    return not cursor.fetchone()[0]


def _copy_unless_taken(
    cursor: Any, target: str, columns: str, rows: Sequence[Sequence[Any]]
) -> int | None:
    """COPY the rows straight into the table (a third less of the server's time than
    through a staging table); ``None``, with nothing written, if a key is taken after
    all (another unique key, or the same key twice in the rows)."""
    from psycopg import errors

    cursor.execute("SAVEPOINT arquivo_copy")
    try:
        with cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    except errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT arquivo_copy")
        cursor.execute("RELEASE SAVEPOINT arquivo_copy")
        return None
    # Any other refusal (a foreign key to nowhere) fails the write as the staging
    # route would: the caller's transaction is rolled back.
    cursor.execute("RELEASE SAVEPOINT arquivo_copy")
    return len(rows)


class PostgresSupport(DialectSupport):
    """PostgreSQL 13+ with the psycopg 3 driver."""

    name = "postgresql"
    checks_idle_connections = True

    def prepare(self, url: URL) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError(
                "PostgreSQL needs the psycopg driver, which is not installed",
                hint="pip install 'arquivo[postgres]'",
            ) from exc
        # Before any connection exists, so every connection knows how to send vectors.
        register_psycopg_vectors()

    def engine_options(self, url: URL, settings: Settings) -> dict[str, Any]:
        connect_args: dict[str, Any] = {
            "connect_timeout": settings.connect_timeout_s,
            "application_name": "arquivo",
        }
        # Sessions in UTC: timestamps arrive already in the zone Arquivo returns (no
        # per-value conversion), and server-side date arithmetic matches the stored UTC.
        # connect_args replace the URL's own ?options=..., so those are kept, after ours
        # (a later -c wins, so a URL's own TimeZone still applies).
        given = url.query.get("options", "")
        given = " ".join(given) if isinstance(given, tuple) else given
        options = ["-c TimeZone=UTC", given]
        if settings.statement_timeout_ms:
            options.append(f"-c statement_timeout={settings.statement_timeout_ms}")
        connect_args["options"] = " ".join(part for part in options if part)
        return {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout_s,
            # A server restart or an idle-connection reaper must not surface as an
            # error on the next request; recycling also caps a connection's lifetime.
            "pool_pre_ping": True,
            "pool_recycle": 1800,
            "connect_args": connect_args,
        }

    def read_only_options(self) -> dict[str, Any]:
        return {**super().read_only_options(), "postgresql_readonly": True}

    def snapshot_options(self) -> dict[str, Any]:
        return {**self.read_only_options(), "isolation_level": "REPEATABLE READ"}

    def advance_sequences(self, connection: Connection, table: Table) -> None:
        column = table.autoincrement_column
        if column is None:
            return
        # Only ever forward: a sequence behind max(id) would hand out taken ids, one
        # ahead of it is harmless.
        quoted = connection.dialect.identifier_preparer
        connection.execute(
            text(
                f"SELECT setval(seq, top) FROM "
                f"(SELECT pg_get_serial_sequence(:table, :column)::regclass AS seq) AS s, "
                f"(SELECT max({quoted.quote(column.name)}) AS top "
                f"FROM {quoted.format_table(table)}) AS m "
                f"WHERE seq IS NOT NULL AND top IS NOT NULL "
                f"AND top > coalesce(pg_sequence_last_value(seq), 0)"
            ),
            {"table": quoted.format_table(table), "column": column.name},
        )

    def lock_for_migration(self, connection: Connection) -> None:
        # Transaction-scoped: released by the commit or rollback, even if we crash.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})

    def database_size(self, engine: Engine) -> int | None:
        with engine.connect() as connection:
            size = connection.execute(text("SELECT pg_database_size(current_database())"))
            return int(size.scalar_one())

    def insert(self, table: Table) -> Insert:
        return pg_dialect.insert(table)

    def bulk_bind(self, column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
        # An import's documents and timestamps go to COPY (and to INSERTs that cast each
        # parameter) as their text: psycopg's JSON dumper runs json.dumps per value, and
        # the scratch file must pickle JSON wrappers and datetimes, but marshals text.
        bind = super().bulk_bind(column, dialect)
        if isinstance(column.type.dialect_impl(dialect), pg_dialect.JSONB):
            return _json_as_text(bind)
        if isinstance(column.type, UTCDateTime):
            return _timestamp_as_text(bind)
        return bind

    def insert_ignoring(
        self,
        connection: Connection,
        table: Table,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> int | None:
        # COPY streams the rows: psycopg's executemany pays a protocol round of Python
        # work per row (measured: 3x the CPU of the whole rest of an import). Vectors
        # are bound as binary real[] (Float32Array), which COPY's text format cannot
        # carry: those tables keep executemany.
        if any(isinstance(table.c[name].type, Vector) for name in names):
            return None
        quote = connection.dialect.identifier_preparer.quote
        target = quote(table.name)
        columns = ", ".join(quote(name) for name in names)
        raw: Any = connection.connection.driver_connection
        with raw.cursor() as cursor:
            if _keys_free(cursor, table, names, rows, quote):
                copied = _copy_unless_taken(cursor, target, columns, rows)
                if copied is not None:
                    return copied
            # COPY into a bare staging table, then one INSERT ... SELECT ... ON CONFLICT
            # DO NOTHING. Created per call and dropped at its end (or with an aborted
            # transaction), so no staging table outlives the write.
            cursor.execute(
                f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS "
                f"SELECT {columns} FROM {target} WITH NO DATA"
            )
            with cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {_STAGING} "
                "ON CONFLICT DO NOTHING"
            )
            inserted = max(int(cursor.rowcount), 0)
            cursor.execute(f"DROP TABLE {_STAGING}")
        return inserted

    def driver_error_types(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def streaming_cursor(self, connection: Any) -> Any:
        # A named cursor is a server-side one: rows come in fetchmany()-sized parts
        # instead of the whole result at once. It lives in the current transaction.
        return connection.cursor(name=f"arquivo_stream_{id(connection):x}")

    def begin_driver(self, connection: Any, *, write: bool, single: bool = False) -> None:
        # Reads, and writes of one statement, in autocommit: no BEGIN/COMMIT round trips
        # around it. A lone INSERT is its own transaction, committed (and flushed to the
        # WAL, synchronous_commit being on) before the server answers it: an append is
        # one round trip instead of three, with the same guarantee.
        autocommit = single or not write
        if connection.autocommit != autocommit:
            connection.autocommit = autocommit

    def is_disconnect(self, exc: BaseException) -> bool:
        return type(exc).__name__ == "OperationalError"

    def still_usable(self, connection: Any, idle_seconds: float) -> bool:
        if connection.closed:
            return False
        if idle_seconds < _TRUST_IDLE_S:
            return True
        # The server may have restarted or reaped the idle connection meanwhile.
        try:
            connection.execute("SELECT 1")
            connection.rollback()
        except self.driver_error_types():  # any failure means: do not reuse it
            return False
        return True

    def translate(self, orig: BaseException) -> ArquivoError | None:
        state: str | None = getattr(orig, "sqlstate", None)
        detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        if state is None:
            # psycopg raises OperationalError without a SQLSTATE for every failure to
            # connect, so the server's FATAL message is all there is to tell them apart.
            if "database" in detail and "does not exist" in detail:
                state = "3D000"
            elif "authentication failed" in detail or (
                "role" in detail and "does not exist" in detail
            ):
                state = "28P01"
        if state is None:
            if type(orig).__name__ == "OperationalError":
                return DatabaseUnavailableError(
                    f"cannot reach PostgreSQL: {detail}",
                    hint="check that the server is running and accepts connections, "
                    "and that the host and port in DATABASE_URL are right",
                )
            return None
        if state == "23505":
            return DuplicateError(f"duplicate key: {detail}")
        if state.startswith("23"):
            return ValidationError(f"the data breaks a database constraint: {detail}")
        if state == "25006":
            return ValidationError(
                f"a read-only transaction tried to write: {detail}",
                hint="use store.transaction() without read_only=True for writes",
            )
        if state in ("40001", "40P01"):
            return ConflictError(f"a concurrent transaction conflicted: {detail}")
        if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
            return CorruptDatabaseError(
                f"PostgreSQL found damaged data: {detail}",
                hint="restore the last good backup; to recover what is readable, "
                "`pg_amcheck DBNAME` lists the damaged tables and indexes (REINDEX "
                "repairs an index)",
            )
        if state in ("53100", "53400"):
            return StorageFullError(f"the server is out of disk space: {detail}")
        if state.startswith("08") or state in ("57P01", "57P02", "57P03", "53300"):
            return DatabaseUnavailableError(f"PostgreSQL is unavailable: {detail}")
        if state == "57014":
            return DatabaseUnavailableError(
                f"the statement was cancelled: {detail}",
                hint="raise ARQUIVO_STATEMENT_TIMEOUT_MS or narrow the query",
            )
        if state == "3D000":
            return ConfigurationError(
                f"the database does not exist: {detail}",
                hint="create it (createdb NAME) or fix the database name in DATABASE_URL",
            )
        if state in ("28P01", "28000"):
            return ConfigurationError(
                f"PostgreSQL refused the credentials: {detail}",
                hint="check the user and password in DATABASE_URL",
            )
        return None

    def json_listing(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        # psycopg runs json.loads once per JSONB value; ::text and one parse per column is
        # several times cheaper on listings.
        return sa.type_coerce(sa.cast(column, sa.Text), JSONText).label(column.key)

    def percentile_cont(
        self, fraction: float, value: ColumnElement[Any]
    ) -> ColumnElement[Any] | None:
        return sa.func.percentile_cont(fraction).within_group(value)

    def epoch_bucket(
        self, timestamp: ColumnElement[Any], width: ColumnElement[int]
    ) -> ColumnElement[int]:
        # extract(epoch) keeps the microseconds (numeric), so floor() is exact at the edges.
        return sa.cast(sa.func.floor(sa.extract("epoch", timestamp) / width), sa.BigInteger)

    def notify(self, connection: Any, channel: str, payload: str) -> None:
        # pg_notify() (unlike NOTIFY) takes its arguments as parameters; the server
        # queues it with the transaction and delivers it at COMMIT, never on ROLLBACK.
        connection.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def listen(self, engine: Engine, channel: str) -> Listener | None:
        # Made by the engine so its connect arguments apply, then taken out of the pool:
        # it lives only as long as the wait and must not be handed to anyone else.
        fairy = engine.raw_connection()
        connection = fairy.driver_connection
        fairy.detach()
        assert connection is not None
        try:
            return _PostgresListener(connection, channel)
        except BaseException:
            connection.close()
            raise

    def integrity_problems(
        self, connection: Connection, tables: Sequence[Table], *, full: bool
    ) -> tuple[list[str], list[str]]:
        problems: list[str] = []
        quote = connection.dialect.identifier_preparer.format_table
        # Reading every row (every value, with TOAST, when full) makes the server
        # check each page it reads; a damaged one raises an error.
        read = "sum(length(t::text))" if full else "count(*)"
        notes = [f"SELECT {read} from each table"]
        for table in tables:
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql(f"SELECT {read} FROM {quote(table)} AS t")
            except sa.exc.DBAPIError as exc:
                problems.append(f"reading {table.name} failed: {exc.orig}")
        installed = connection.exec_driver_sql(
            "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"
        ).first()
        if installed is None:
            notes.append(
                "amcheck is not installed, so indexes were not verified "
                "(CREATE EXTENSION amcheck, as a superuser, enables it)"
            )
            return problems, notes
        notes.append(
            "amcheck bt_index_check on every index" + (" (heapallindexed)" if full else "")
        )
        indexes = connection.execute(
            text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am a ON a.oid = c.relam "
                "WHERE a.amname = 'btree' AND t.relname = ANY(:tables) "
                "AND pg_table_is_visible(t.oid)"
            ),
            {"tables": [table.name for table in tables]},
        ).scalars()
        for index in indexes:
            try:
                with connection.begin_nested():
                    connection.execute(
                        text("SELECT bt_index_check(CAST(:index AS regclass), :full)"),
                        {"index": index, "full": full},
                    )
            except sa.exc.DBAPIError as exc:
                problems.append(f"index {index}: {exc.orig}")
        return problems, notes

    def vacuum(self, engine: Engine) -> None:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE)")

    def enable_vectors(self, connection: Connection, *, warn: bool = True) -> bool:
        installed = connection.execute(
            text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        ).first()
        if installed is not None:
            return True
        available = connection.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
        if available is None:
            if not warn:
                return False
            _log.warning(
                "PostgreSQL has no pgvector extension: the knowledge store keeps embeddings "
                "as real[] and searches exactly (numpy). For an HNSW index, install pgvector "
                "on the server (https://github.com/pgvector/pgvector), then run "
                "`arquivo kb enable-ann`."
            )
            return False
        try:
            # A savepoint: a refused CREATE EXTENSION must not abort the migration.
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        except sa.exc.DBAPIError as exc:
            if not warn:
                return False
            _log.warning(
                "cannot create the pgvector extension (%s): the knowledge store keeps "
                "embeddings as real[] and searches exactly (numpy). For an HNSW index, a "
                "superuser can run CREATE EXTENSION vector; in this database, then run "
                "`arquivo kb enable-ann`.",
                str(exc.orig).strip().splitlines()[0],
            )
            return False
        return True

    def has_vector_column(self, connection: Connection) -> bool:
        found = connection.execute(
            text(
                "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = to_regclass('knowledge_chunks') "
                "AND a.attname = 'embedding' AND NOT a.attisdropped"
            )
        ).scalar()
        return found == "vector"

    def chunk_change_triggers(self) -> list[str]:
        # Only without pgvector, where the exact index caches matrices in memory (as on
        # SQLite). Statement-level with transition tables: one UPDATE per statement and
        # collection, however many rows a bulk insert writes.
        function = (
            f"CREATE OR REPLACE FUNCTION {_BUMP_FUNCTION}() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'INSERT' THEN "
            "UPDATE knowledge_collections SET version = version + 1 "
            "WHERE id IN (SELECT DISTINCT collection_id FROM changed); "
            "ELSE "
            "UPDATE knowledge_collections SET version = version + 1, epoch = epoch + 1 "
            "WHERE id IN (SELECT DISTINCT collection_id FROM changed); "
            "END IF; RETURN NULL; END $$"
        )
        triggers = [
            f"CREATE TRIGGER {_TRIGGER_PREFIX}{suffix} AFTER {event} ON knowledge_chunks "
            f"REFERENCING {table} TABLE AS changed FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {_BUMP_FUNCTION}()"
            for suffix, event, table in (
                ("ai", "INSERT", "NEW"),
                ("au", "UPDATE", "OLD"),
                ("ad", "DELETE", "OLD"),
            )
        ]
        return [function, *triggers]

    def drop_chunk_change_triggers(self) -> list[str]:
        return [
            *(
                f"DROP TRIGGER IF EXISTS {_TRIGGER_PREFIX}{suffix} ON knowledge_chunks"
                for suffix in ("ai", "au", "ad")
            ),
            f"DROP FUNCTION IF EXISTS {_BUMP_FUNCTION}()",
        ]

    def json_scalar(self, column: ColumnElement[Any], key: str, kind: str) -> ColumnElement[Any]:
        value = column.op("->")(sa.literal(key, sa.Text))
        as_text = column.op("->>")(sa.literal(key, sa.Text))
        json_type = sa.func.jsonb_typeof(value)
        if kind == "boolean":
            return sa.case((json_type == "boolean", sa.cast(as_text, sa.Boolean)))
        if kind == "number":
            return sa.case((json_type == "number", sa.cast(as_text, sa.Float)))
        return sa.case((json_type == "string", as_text))
