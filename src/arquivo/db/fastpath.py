"""The hot path: Core statements compiled once, run on the driver's own connection.

The domain methods are called hundreds of times per agent turn. Executing through a
SQLAlchemy ``Connection`` costs several times what the database itself spends on a small
INSERT (pool checkout, reset, result wrapping), so the hot methods run their statements
on the DB-API connection directly. Statements are still written as SQLAlchemy Core and
compiled for the engine's dialect, and values still pass through the column types' own
bind and result processors, so what is stored is byte-for-byte what the ORM stores.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from arquivo.db.dialects import DialectSupport, get_dialect
from arquivo.errors import ArquivoError, DatabaseUnavailableError

__all__ = ["Builder", "Driver", "DriverPool", "Prepared", "StatementCache"]

_Processor = Callable[[Any], Any] | None


class Prepared:
    """A Core statement compiled once for a dialect, with its type processors resolved."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        binds: dict[str, _Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        # Parameters needing a processor; a name used several times (a multi-row
        # INSERT's shared timestamp) is processed once.
        self._binds = binds
        self._processed = [(name, process) for name, process in binds.items() if process]
        # Positional and each name used once: one pass builds the driver's tuple.
        self._single_pass: list[tuple[str, _Processor]] | None = None
        if self._order is not None and len(set(self._order)) == len(self._order):
            self._single_pass = [(name, binds[name]) for name in self._order]
        self._defaults = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.callable is None
        }
        self._dialect = dialect
        #: Whether the statement returns rows (a SELECT, or DML with RETURNING).
        self.returns_rows = bool(getattr(statement, "exported_columns", ()))
        self._result_types = [
            column.type.dialect_impl(dialect)
            for column in getattr(statement, "exported_columns", ())
        ]
        # Result processors depend on the driver's type codes (psycopg's floats do), so
        # they are resolved from the first execution's cursor description.
        self._results: list[tuple[int, Callable[[Any], Any]]] | None = None
        #: Rows need no processing: return the driver's tuples as they are.
        self.passthrough = False

    @property
    def order(self) -> tuple[str, ...] | None:
        """The bound names in the order of a positional statement's parameters
        (``None``: the driver takes them by name)."""
        return None if self._order is None else tuple(self._order)

    def bind_results(self, description: Sequence[Sequence[Any]]) -> None:
        """Resolve the result processors from a cursor description (once)."""
        codes = [column[1] for column in description]
        if len(codes) != len(self._result_types):
            codes = [None] * len(self._result_types)
        self._results = [
            (index, process)
            for index, (impl, code) in enumerate(zip(self._result_types, codes, strict=True))
            if (process := impl.result_processor(self._dialect, code)) is not None
        ]
        self.passthrough = not self._results

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """Driver parameters for ``values``, each passed through its column type."""
        if self._defaults:
            values = {**self._defaults, **values}
        if self._single_pass is not None:
            return tuple([values[n] if p is None else p(values[n]) for n, p in self._single_pass])
        if self._processed:
            values = {
                **values,
                **{name: process(values[name]) for name, process in self._processed},
            }
        if self._order is None:
            return values if isinstance(values, dict) else dict(values)
        return tuple([values[name] for name in self._order])

    def converter(
        self, before: Mapping[str, Callable[[Any], Any]]
    ) -> Callable[[Mapping[str, Any]], Sequence[Any] | dict[str, Any]]:
        """A function like :meth:`parameters` that first runs ``before[name]`` on each
        non-NULL value of that name, for every bound name of a statement without defaults.

        A bulk load (an import) turns each row into driver parameters in one call per
        value, instead of a converted copy of the row and then :meth:`parameters`.
        """
        if self._defaults or (self._order is not None and self._single_pass is None):
            # Not needed by any caller: statements with defaults or repeated names.
            raise ValueError("converter() needs a statement binding each name once")
        names = list(self._order) if self._order is not None else list(self._binds)
        plan = [(name, _compose(before.get(name), self._binds[name])) for name in names]
        if self._order is not None:

            def positional(values: Mapping[str, Any]) -> Sequence[Any]:
                return tuple([values[n] if f is None else f(values[n]) for n, f in plan])

            return positional

        def named(values: Mapping[str, Any]) -> dict[str, Any]:
            return {n: values[n] if f is None else f(values[n]) for n, f in plan}

        return named

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A result row with every column through its type's result processor."""
        assert self._results is not None, "bind_results() runs on the first execution"
        row = list(raw)
        for index, process in self._results:
            row[index] = process(row[index])
        return tuple(row)

    def rows(self, raws: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Many result rows, processed a column at a time.

        A listing of a thousand rows pays per value for each processor call; going by
        column lets a type decode the whole column in one call (see :func:`batched`).
        """
        if len(raws) < _COLUMNWISE_FROM:
            return [self.row(raw) for raw in raws]
        assert self._results is not None, "bind_results() runs on the first execution"
        columns: list[Sequence[Any]] = list(zip(*raws, strict=True))
        for index, process in self._results:
            many = getattr(process, "many", None)
            columns[index] = many(columns[index]) if many else list(map(process, columns[index]))
        return list(zip(*columns, strict=True))


def _compose(before: Callable[[Any], Any] | None, process: _Processor) -> _Processor:
    """``process(before(value))``, ``before`` skipped for NULL; ``None`` for no work."""
    if before is None:
        return process
    if process is None:
        return lambda value: None if value is None else before(value)
    return lambda value: process(None if value is None else before(value))


#: Below this many rows, processing row by row is as fast as transposing.
_COLUMNWISE_FROM = 8


Builder = Callable[[DialectSupport], ClauseElement]


class StatementCache:
    """Prepared statements of one engine, keyed by the function that builds them.

    A builder receives the dialect support, for the few statements whose SQL differs
    between databases (an upsert, say).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._dialect = dialect
        self.support = get_dialect(dialect.name)
        self._prepared: dict[Any, Prepared] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, build: Builder) -> Prepared:
        """The prepared form of ``build(support)``, compiled on first use."""
        prepared = self._prepared.get(key)
        if prepared is None:
            with self._lock:
                prepared = self._prepared.get(key)
                if prepared is None:
                    prepared = Prepared(build(self.support), self._dialect)
                    self._prepared[key] = prepared
        return prepared


class Driver:
    """One DB-API connection inside a transaction the caller controls.

    Repositories take a ``Driver``, run statements on it and never commit.
    """

    __slots__ = ("_cache", "connection")

    def __init__(self, connection: Any, cache: StatementCache) -> None:
        self.connection = connection
        self._cache = cache

    @property
    def support(self) -> DialectSupport:
        """What the database can do (capability flags, dialect-specific SQL)."""
        return self._cache.support

    def execute(
        self, build: Builder, values: Mapping[str, Any], *, key: Any = None
    ) -> list[tuple[Any, ...]]:
        """Run the statement ``build`` makes with ``values``; return its processed rows.

        ``key`` names the statement in the cache when one builder makes several
        (a multi-row INSERT for each batch size, say).
        """
        return self.run(self._cache.get(build if key is None else key, build), values)

    def run(self, prepared: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Like :meth:`execute`, for a statement prepared by the caller (one built per
        call, e.g. with a filter the caller composed)."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(prepared.sql, prepared.parameters(values))
            description = cursor.description
            if description is None:
                return []
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if prepared._results is None:
            prepared.bind_results(description)
        if prepared.passthrough:
            return rows  # type: ignore[no-any-return]
        return prepared.rows(rows)

    def run_many(self, prepared: Prepared, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a DML statement once per row of values (``executemany``); rows touched."""
        cursor = self.connection.cursor()
        try:
            cursor.executemany(prepared.sql, [prepared.parameters(values) for values in rows])
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def rowcount_of(self, prepared: Prepared, values: Mapping[str, Any]) -> int:
        """Run a DML statement prepared by the caller; rows touched."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def prepare(self, statement: ClauseElement) -> Prepared:
        """Compile a statement for this connection's dialect (not cached).

        Write IN lists as ``column.in_([bindparam(...), ...])``: expanding parameters
        are not supported here.
        """
        return Prepared(statement, self._cache.dialect)

    def insert(self, build: Builder, values: Mapping[str, Any]) -> int:
        """Run a one-row INSERT and return the new row's id.

        The builder should end with ``support.returning_id(statement, column)``, which
        asks for the id with RETURNING only where the driver cannot report it for free.
        """
        prepared = self._cache.get(build, build)
        cursor = self.connection.cursor()
        try:
            cursor.execute(prepared.sql, prepared.parameters(values))
            if prepared.returns_rows:
                return int(cursor.fetchone()[0])
            return int(cursor.lastrowid)
        finally:
            cursor.close()

    def rowcount(self, build: Builder, values: Mapping[str, Any]) -> int:
        """Run a DML statement and return how many rows it touched."""
        prepared = self._cache.get(build, build)
        cursor = self.connection.cursor()
        try:
            cursor.execute(prepared.sql, prepared.parameters(values))
            return int(cursor.rowcount)
        finally:
            cursor.close()


_POOLS: weakref.WeakSet[DriverPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class DriverPool:
    """Idle DB-API connections for the hot path, outside the SQLAlchemy pool.

    Connections are made by the engine (so its connect hooks apply: WAL, pragmas, JSON
    adapters), then detached from its pool; this keeps them out of the pool's
    checkout/reset cycle, which costs more than a small write itself.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_connections: int = 15,
        acquire_timeout: float = 30.0,
        keep_idle: int = 5,
        idle_timeout: float = 60.0,
    ) -> None:
        """Set up the pool; no connection is opened until the first call.

        Args:
            engine: The engine that makes the connections.
            max_connections: Connections in use at once, at most (a server's
                ``max_connections`` must not be exhausted by many threads).
            acquire_timeout: Seconds a call waits for a free connection.
            keep_idle: Idle connections kept however long they wait.
            idle_timeout: Seconds after which an idle connection beyond ``keep_idle``
                is closed.
        """
        self._engine = engine
        # An in-memory SQLite database lives in the one connection of a StaticPool: the
        # hot path must use that very connection (serially), never a detached one.
        self._shared = isinstance(engine.pool, StaticPool)
        if self._shared:
            max_connections = 1
        self._shared_fairy: Any = None
        self._support: DialectSupport = get_dialect(engine.dialect.name)
        self.cache = StatementCache(engine.dialect)
        self._idle: list[tuple[Any, float]] = []
        self._keep_idle = keep_idle
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._slots = _slots(max_connections)
        self._acquire_timeout = acquire_timeout
        self._check_idle = self._support.checks_idle_connections
        self._closed = False
        _POOLS.add(self)

    def _forget_after_fork(self) -> None:
        # A forked child must not touch its parent's connections (closing them would
        # disturb the parent's use of the same file or socket): drop them unclosed.
        self._idle = []
        self._slots = _slots(self._max_connections)

    def _acquire(self) -> Any:
        if self._closed:
            raise ArquivoError("this Arquivo store is closed", hint="open a new one")
        try:
            self._slots.get(timeout=self._acquire_timeout)
        except queue.Empty:
            raise DatabaseUnavailableError(
                f"no free database connection after {self._acquire_timeout:g} s",
                hint="raise ARQUIVO_POOL_SIZE / ARQUIVO_MAX_OVERFLOW, or keep calls shorter",
            ) from None
        try:
            return self._checkout()
        except BaseException:
            self._slots.put(None)
            raise

    def _checkout(self) -> Any:
        while True:
            try:
                connection, since = self._idle.pop()
            except IndexError:
                break
            if not self._check_idle or self._support.still_usable(
                connection, time.monotonic() - since
            ):
                return connection
            _close_quietly(connection)
        cannot_connect: tuple[type[BaseException], ...] = (
            sa_exc.DBAPIError,
            *self._support.driver_error_types(),
        )
        try:
            fairy = self._engine.raw_connection()
        except cannot_connect as exc:
            # Cannot connect (server down, file unreadable): say so as an ArquivoError.
            # The pool raises the driver's own error here, not SQLAlchemy's wrapper.
            cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
            raise (self._support.translate_driver(cause) or ArquivoError(str(exc))) from exc
        connection = fairy.driver_connection
        if self._shared:
            self._shared_fairy = fairy  # the engine's own connection: keep, never close
        else:
            fairy.detach()
        return connection

    def _release(self, connection: Any) -> None:
        if self._shared:
            self._idle.append((connection, 0.0))
        elif self._closed:
            _close_quietly(connection)
        else:
            now = time.monotonic()
            self._idle.append((connection, now))
            if len(self._idle) > self._keep_idle:
                self._reap(now)
        self._slots.put(None)

    def _reap(self, now: float) -> None:
        # Closing every connection beyond a fixed few on release (as a pool's overflow
        # does) makes a steady load of more threads than that open a new connection for
        # nearly every call: milliseconds each on PostgreSQL, which set the server's p99.
        # So a burst's connections stay while they are used, and go once they are not.
        # The oldest idle one is first in the list, as checkout takes the newest.
        try:
            while len(self._idle) > self._keep_idle and now - self._idle[0][1] > self._idle_timeout:
                _close_quietly(self._idle.pop(0)[0])
        except IndexError:
            pass  # other threads took the idle connections meanwhile

    def _discard(self, connection: Any) -> None:
        if self._shared:
            self._idle.append((connection, 0.0))
        else:
            _close_quietly(connection)
        self._slots.put(None)

    def transaction(self, *, write: bool, single: bool = False) -> PooledTransaction:
        """A connection in a new transaction, committed when the block ends normally.

        Driver errors raised in the block are translated to ``ArquivoError``. With
        ``single`` the block runs one write statement (see ``begin_driver``).
        """
        return PooledTransaction(self, write, single)

    def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        if self._shared:
            return  # the engine's connection: disposing of the engine closes it
        for connection, _since in idle:
            _close_quietly(connection)


class PooledTransaction:
    """Context manager for :meth:`DriverPool.transaction` (a class: it is on the hot path)."""

    __slots__ = ("_connection", "_pool", "_single", "_write")

    def __init__(self, pool: DriverPool, write: bool, single: bool = False) -> None:
        self._pool = pool
        self._write = write
        self._single = single
        self._connection: Any = None

    def __enter__(self) -> Driver:
        pool = self._pool
        connection = self._connection = pool._acquire()
        try:
            pool._support.begin_driver(connection, write=self._write, single=self._single)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return Driver(connection, pool.cache)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool, connection = self._pool, self._connection
        support = pool._support
        if exc is None:
            try:
                connection.commit()
            except support.driver_error_types() as commit_error:
                exc = commit_error
            else:
                pool._release(connection)
                return
        healthy = support.rollback_driver(connection) and not support.is_disconnect(exc)
        if healthy:
            pool._release(connection)
        else:
            pool._discard(connection)
        translated = support.translate_driver(exc)
        if translated is not None:
            raise translated from exc


def _slots(count: int) -> queue.SimpleQueue[None]:
    # One token per connection allowed in use. SimpleQueue is implemented in C: taking
    # a token costs far less than a threading.Semaphore (pure Python) on the hot path.
    tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
    for _ in range(count):
        tokens.put(None)
    return tokens


def _close_quietly(connection: Any) -> None:
    # Closing a connection whose server or file went away raises; it is gone either way.
    with contextlib.suppress(Exception):
        connection.close()
