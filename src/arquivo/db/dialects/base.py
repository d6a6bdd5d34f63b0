"""The interface each supported database implements.

Everything that differs between SQLite and PostgreSQL is a method here, so the rest of
the code base never asks which database it is talking to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, cast

from sqlalchemy import URL, Column, Connection, Engine, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import ClauseElement, ColumnElement

from arquivo.errors import ArquivoError, ValidationError
from arquivo.settings import Settings

__all__ = ["READ_ONLY_OPTION", "DialectSupport", "Listener"]

# Execution option marking a transaction that will only read. SQLite then starts a
# deferred transaction (no write lock); PostgreSQL a READ ONLY one.
READ_ONLY_OPTION = "arquivo_read_only"


class Listener:
    """A dedicated connection subscribed to a notification channel.

    Subclasses deliver notifications; this base class never receives one, so a waiter
    using it just sleeps out each interval (and polls).
    """

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; ``True`` if a notification arrived."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection. Idempotent."""


class DialectSupport:
    """Behaviour of one database family; subclasses are registered by dialect name."""

    name: ClassVar[str]
    #: A cheap query that fails if the database is unreachable or unreadable.
    health_query: ClassVar[str] = "SELECT 1"

    def prepare(self, url: URL) -> None:
        """Do what must happen before the first connection (e.g. create a folder)."""

    def engine_options(self, url: URL, settings: Settings) -> dict[str, Any]:
        """Keyword arguments for :func:`sqlalchemy.create_engine`."""
        raise NotImplementedError

    def install(self, engine: Engine, settings: Settings) -> None:
        """Attach connection and transaction event hooks to a new engine."""

    def read_only_options(self) -> dict[str, Any]:
        """Execution options that make a connection's transactions read-only."""
        return {READ_ONLY_OPTION: True}

    #: Alembic's ``render_as_batch``: rebuild tables for ALTERs the database lacks.
    render_as_batch: ClassVar[bool] = False

    @contextlib.contextmanager
    def migration_connection(self, engine: Engine) -> Iterator[Connection]:
        """A connection inside one transaction that no other migrator can enter.

        Migrations run entirely inside it, so a failure leaves the schema as it was, and
        a second process that opens a fresh database at the same moment waits, then
        finds the work done.
        """
        with engine.begin() as connection:
            self.lock_for_migration(connection)
            yield connection

    def lock_for_migration(self, connection: Connection) -> None:
        """Block other migrators until the connection's transaction ends."""

    def translate(self, exc: BaseException) -> ArquivoError | None:
        """Map a driver exception to an Arquivo error, or ``None`` to leave it alone."""
        return None

    def translate_driver(self, exc: BaseException) -> ArquivoError | None:
        """Like :meth:`translate`, but any driver error becomes an ``ArquivoError``.

        The domain methods promise to raise nothing else; exceptions that are not the
        driver's (including ``ArquivoError`` itself) give ``None`` and propagate as they are.
        """
        if isinstance(exc, UnicodeEncodeError):
            return ValidationError(
                f"text is not valid Unicode: {exc.reason} at position {exc.start}",
                hint="lone surrogates cannot be stored; decode the text with errors='replace'",
            )
        if isinstance(exc, ArquivoError) or not isinstance(exc, self.driver_error_types()):
            return None
        return self.translate(exc) or ArquivoError(
            f"unexpected database error: {type(exc).__name__}: {exc}",
            hint="nothing was written; if it persists, check the server's or file's health",
        )

    def driver_error_types(self) -> tuple[type[BaseException], ...]:
        """The base exception classes of the DB-API driver."""
        return ()

    def streaming_cursor(self, connection: Any) -> Any:
        """A cursor of a raw DB-API connection that fetches a large result in parts
        (SQLite's cursors step through rows anyway)."""
        return connection.cursor()

    def begin_driver(self, connection: Any, *, write: bool, single: bool = False) -> None:
        """Start a transaction on a raw DB-API connection from the hot-path pool.

        ``single``: the unit is one write statement, which a database may run as its
        own implicit transaction (atomic and durable when it returns, one round trip).
        """

    def rollback_driver(self, connection: Any) -> bool:
        """Roll back a raw connection; ``False`` when it is no longer usable."""
        try:
            connection.rollback()
        except self.driver_error_types():  # a connection that cannot roll back is discarded
            return False
        return True

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the raw connection is broken and must be discarded."""
        return False

    #: Whether a multi-row INSERT into an integer-keyed table, made while holding the
    #: write lock, is given the ids max(id)+1, max(id)+2, ... (so RETURNING can be skipped).
    sequential_rowids: ClassVar[bool] = False

    #: Whether idle hot-path connections may go stale (a server can drop them).
    checks_idle_connections: ClassVar[bool] = False

    #: Whether the database takes one writer at a time (a file lock): threads of one
    #: process then do better queuing among themselves than sleeping on the lock.
    single_writer: ClassVar[bool] = False

    def still_usable(self, connection: Any, idle_seconds: float) -> bool:
        """Whether an idle raw connection can be handed out again."""
        return True

    def insert(self, table: Table) -> Insert:
        """This database's INSERT construct (the one with ``on_conflict_do_update``)."""
        raise NotImplementedError

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        *,
        conflict: Sequence[str],
        update: Sequence[str],
    ) -> ClauseElement:
        """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET update = excluded.update``."""
        # SQLite's and PostgreSQL's inserts share this API but no common base class.
        insert: Any = self.insert(table).values(**values)
        return cast(
            ClauseElement,
            insert.on_conflict_do_update(
                index_elements=[table.c[name] for name in conflict],
                set_={name: insert.excluded[name] for name in update},
            ),
        )

    def insert_ignoring(
        self,
        connection: Connection,
        table: Table,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> int | None:
        """Insert many rows, skipping those whose key is taken, by a bulk route faster
        than ``executemany``; in the connection's current transaction.

        Args:
            connection: The connection (in a transaction) to write on.
            table: The table written.
            names: The columns, in the order of each row's values.
            rows: The driver's values (already through the column types' bind
                processors), one sequence per row.

        Returns:
            The rows inserted; ``None`` when this database has no such route for these
            columns, and the caller runs ``executemany`` of an INSERT instead.
        """
        return None

    def bulk_bind(self, column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
        """The bind processor of ``column`` for bulk loads (imports): the column type's
        own, which a database may give faster routes from parsed JSON values
        (``from_json``, ``from_text``: see :mod:`arquivo.portability.codec`)."""
        return column.type.dialect_impl(dialect).bind_processor(dialect)

    @contextlib.contextmanager
    def bulk_loading(self, connection: Connection) -> Iterator[None]:
        """Settings of ``connection`` for inserting many rows, undone on leaving.

        Used outside any transaction (by imports); the default changes nothing.
        """
        yield

    def returning_id(self, statement: Insert, column: ColumnElement[Any]) -> ClauseElement:
        """``statement`` made to report the new row's id to :meth:`Driver.insert`."""
        return statement.returning(column)

    def json_listing(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """``column`` (JSON) as a listing of many rows should select it.

        Where the driver would decode each value itself, the text is selected instead and
        decoded a column at a time (:class:`arquivo.db.types.JSONText`).
        """
        return column

    def database_size(self, engine: Engine) -> int | None:
        """Bytes the database takes on disk, when that can be known."""
        return None

    def percentile_cont(
        self, fraction: float, value: ColumnElement[Any]
    ) -> ColumnElement[Any] | None:
        """The aggregate ``percentile_cont(fraction) WITHIN GROUP (ORDER BY value)``.

        ``None`` when the database has no such aggregate: callers then compute it from the
        sorted values with PostgreSQL's formula (``arquivo.domain.metrics.percentile_cont``).
        """
        return None

    def epoch_bucket(
        self, timestamp: ColumnElement[Any], width: ColumnElement[int]
    ) -> ColumnElement[int]:
        """The fixed-width time bucket ``timestamp`` falls in, numbered from the Unix epoch.

        That is ``floor(seconds since 1970-01-01 UTC / width)`` as an integer, for a
        ``width`` in whole seconds; bucket ``k`` starts at ``k * width`` seconds.
        """
        raise NotImplementedError

    def notify(self, connection: Any, channel: str, payload: str) -> None:
        """Send ``payload`` on ``channel`` from inside the caller's transaction.

        Delivered to listeners only if, and when, that transaction commits. A no-op
        where the database has no notifications (waiters poll there instead).
        """

    def listen(self, engine: Engine, channel: str) -> Listener | None:
        """A dedicated connection listening on ``channel``, or ``None`` if unsupported."""
        return None

    # --- export, import and maintenance -------------------------------------------

    def snapshot_options(self) -> dict[str, Any]:
        """Execution options for a read-only transaction that sees one snapshot.

        Every statement in it reads the database as of its first statement, so an
        export made while writers keep writing is consistent across tables.
        """
        return self.read_only_options()

    def advance_sequences(self, connection: Connection, table: Table) -> None:
        """Move ``table``'s id generator past ids that were inserted explicitly.

        Needed after an import keeps the ids of the file: SQLite takes the largest id
        plus one by itself, PostgreSQL's sequence does not know about them.
        """

    #: Whether ``arquivo db recover`` can salvage rows from a damaged database of this kind.
    can_salvage_rows: ClassVar[bool] = False

    def integrity_problems(
        self, connection: Connection, tables: Sequence[Table], *, full: bool
    ) -> tuple[list[str], list[str]]:
        """Check the database's storage; return (problems found, notes on what ran).

        ``full`` runs the slower, thorough checks.
        """
        raise NotImplementedError

    def vacuum(self, engine: Engine) -> None:
        """Reclaim free space and refresh the planner's statistics."""
        raise NotImplementedError

    # --- the native vector store ------------------------------------------------------

    def enable_vectors(self, connection: Connection, *, warn: bool = True) -> bool:
        """Make the native vector type available if the database can have it (a
        migration calls it before making the column); return whether it can.

        ``False`` means embeddings are stored portably and searched exactly; ``warn``
        logs why, with the hint to get an ANN index later.
        """
        return False

    def has_vector_column(self, connection: Connection) -> bool:
        """Whether ``knowledge_chunks.embedding`` is a native vector type (an ANN index
        can be built on it)."""
        return False

    def chunk_change_triggers(self) -> list[str]:
        """DDL keeping ``knowledge_collections.version``/``epoch`` current on every write.

        Only where an in-process cache of the vectors needs to notice other writers.
        """
        return []

    def drop_chunk_change_triggers(self) -> list[str]:
        """DDL removing what :meth:`chunk_change_triggers` made (when an ANN index takes
        over from the in-process cache)."""
        return []

    def json_scalar(self, column: ColumnElement[Any], key: str, kind: str) -> ColumnElement[Any]:
        """``column[key]`` when it is a JSON value of ``kind``, else SQL NULL.

        ``kind`` is ``text``, ``number`` or ``boolean``; a value of another type never
        compares (so a filter ``year > 2000`` skips rows whose ``year`` is a string).
        """
        raise NotImplementedError
