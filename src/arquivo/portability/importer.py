"""Reading an export file back into a store, idempotently.

By default, two phases; the file is read once:

1. **validate**: every line is parsed and checked against the schema (known table and
   columns, key present, each value of its column's type and length), converted to
   the driver's values, and kept in a scratch file (:mod:`arquivo.portability.spill`);
   the row counts are compared with the file's last line. A bad or truncated file
   raises :class:`~arquivo.errors.ValidationError` naming the line, and nothing is
   written. A large plain file is checked in byte ranges by several processes at once
   (:mod:`arquivo.portability.parallel`), with the same outcome.
2. **import**: the checked batches are inserted, keeping their ids; a row whose
   primary or unique key is already taken is skipped (counted in ``skipped``), so
   importing the same file twice adds nothing the second time. On PostgreSQL the id
   sequences are moved past the imported ids afterwards.

By default consecutive batches of a table share a transaction sized to hold SQLite's
write lock about 0.2 s (a given ``batch_size`` makes it one batch per transaction), so
the lock is never held for long. If the database refuses a row that passed validation
(a foreign key to a row that is neither in the file nor in the database), the
transaction holding it is rolled back, the error names its line, and the transactions
before it stay imported: fix the file and run the import again (rows already in are
skipped). ``atomic=True`` runs the whole import as one transaction instead: all or
nothing, and no scratch file. Each line is checked and inserted as it is read, and any
bad line, or a wrong count at the end, rolls the whole transaction back, so nothing is
written either.

Each line is parsed once (orjson; the json module for the rare line orjson would read
differently), and each value goes from JSON to the driver's value in one step:
checked, decoded, then through its column type's bind processor, so what is stored is
what the ORM would store. A batch is then written by the database's bulk route: on
PostgreSQL, COPY into a temporary staging table and one ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING``; on SQLite (and for PostgreSQL's vector columns, which COPY's
text format cannot carry as bound) the driver's own ``executemany``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from arquivo.db.dialects import DialectSupport, get_dialect, translate_errors
from arquivo.db.fastpath import Prepared
from arquivo.errors import ArquivoError, ValidationError
from arquivo.portability.codec import DecodeError, TableCodec
from arquivo.portability.fileformat import ImportReport, Progress, ProgressCallback
from arquivo.portability.parallel import check_file, default_jobs
from arquivo.portability.reading import LineError, Segment
from arquivo.portability.scope import schema_tables

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["DEFAULT_BATCH", "import_data"]

#: Rows per INSERT, and what the file is checked and kept in between: 5,000 rows of chat
#: messages hold SQLite's write lock for tens of milliseconds.
DEFAULT_BATCH = 5_000
#: Unless a batch size is given, consecutive batches of a table share a transaction
#: sized to hold the write lock about this long. Each commit writes every index page
#: the batch touched, and rows inserted in an order other than an index's touch most of
#: them: at 400,000 rows, transactions of 20,000 rows made the import 24% faster.
_HOLD_S = 0.2
#: The most rows one such transaction gathers (they wait in memory meanwhile).
_MAX_TRANSACTION_ROWS = 25_000


def _stamp(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError:
        return (-1, -1)
    return (status.st_size, status.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How rows of one table with one set of columns are checked and inserted.

    Attributes:
        table: The table.
        names: The columns, in the order of the values :attr:`load` returns: the
            file's, then :attr:`missing`.
        missing: Columns the rows lack that have a Python-side default to fill in.
        load: A row (a dict of JSON values) -> the driver's values: checked, decoded
            and through the column types' bind processors.
        prepared: The INSERT ... ON CONFLICT DO NOTHING, compiled once (for databases
            without a bulk route).
        reorder: Positions of :attr:`names` in the statement's parameter order, when
            it differs (``None``: the same order, or parameters by name).
    """

    table: Table
    names: list[str]
    missing: list[str]
    load: Callable[[dict[str, Any]], tuple[Any, ...]]
    prepared: Prepared
    reorder: list[int] | None


def _check_columns(path: Path, number: int, codec: TableCodec, row: dict[str, Any]) -> None:
    """The checks that depend on the columns a row has, not on its values."""
    unknown = codec.unknown(row)
    if unknown:
        raise LineError(
            path,
            number,
            f"table {codec.table.name}: the table {codec.table.name} has no column {unknown[0]!r}",
        )
    for name in codec.primary_key:
        if name not in row:
            raise LineError(
                path, number, f"table {codec.table.name}: the key column {name} is missing"
            )


class _Writer:
    """Batches of rows of one table, inserted skipping rows whose key is taken.

    Values go through the column types' bind processors (what is stored is what the
    ORM would store), then into the database's bulk route
    (:meth:`~arquivo.db.dialects.DialectSupport.insert_ignoring`: COPY on PostgreSQL)
    or the driver's own ``executemany`` of an INSERT ... ON CONFLICT DO NOTHING
    compiled once per (table, columns); either way the count is the rows inserted.
    """

    def __init__(
        self, connection: Connection, support: DialectSupport, path: Path, *, atomic: bool
    ) -> None:
        self.connection = connection
        self.support = support
        self.path = path
        self.atomic = atomic
        self.inserted: dict[str, int] = {}
        self.touched: set[str] = set()
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}
        self._errors = support.driver_error_types()

    def plan(self, codec: TableCodec, row: dict[str, Any], number: int) -> _Plan:
        """The plan for rows of ``codec``'s table with the columns of ``row`` (at line
        ``number``, named if those columns are wrong)."""
        table = codec.table
        found = self._plans.get((table.name, frozenset(row)))
        if found is not None:
            return found
        _check_columns(self.path, number, codec, row)
        missing = codec.defaults_missing(row)
        names = [*row, *missing]
        dialect = self.connection.dialect
        values = {name: sa.bindparam(name, type_=table.c[name].type) for name in names}
        insert: Any = self.support.insert(table).values(values)
        prepared = Prepared(insert.on_conflict_do_nothing(), dialect)
        binds = {name: self.support.bulk_bind(table.c[name], dialect) for name in names}
        order = prepared.order
        reorder = None if order is None or list(order) == names else [names.index(n) for n in order]
        plan = _Plan(
            table, names, missing, codec.loader(names, binds, as_is=missing), prepared, reorder
        )
        self._plans[(table.name, frozenset(row))] = plan
        return plan

    def _run(self, plan: _Plan, rows: list[tuple[Any, ...]]) -> int:
        bulk = self.support.insert_ignoring(self.connection, plan.table, plan.names, rows)
        if bulk is not None:
            return bulk
        parameters: list[Any] = rows
        if plan.prepared.order is None:
            parameters = [dict(zip(plan.names, row, strict=True)) for row in rows]
        elif plan.reorder is not None:
            parameters = [tuple([row[i] for i in plan.reorder]) for row in rows]
        raw: Any = self.connection.connection.driver_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(plan.prepared.sql, parameters)
            return max(int(cursor.rowcount), 0)
        finally:
            cursor.close()

    def write(self, plan: _Plan, numbers: list[int], rows: list[tuple[Any, ...]]) -> None:
        """Insert one batch (driver values, with the line number of each row)."""
        try:
            if self.atomic:
                inserted = self._run(plan, rows)
            else:
                with self.connection.begin():
                    inserted = self._run(plan, rows)
        except self._errors as exc:
            raise self._explain(plan, numbers, rows, exc) from exc
        name = plan.table.name
        self.touched.add(name)
        self.inserted[name] = self.inserted.get(name, 0) + inserted

    def _reason(self, exc: BaseException) -> str:
        translated = self.support.translate(exc)
        return translated.message if translated is not None else str(exc)

    def _explain(
        self,
        plan: _Plan,
        numbers: list[int],
        rows: list[tuple[Any, ...]],
        exc: BaseException,
    ) -> ArquivoError:
        """The error for a refused batch, naming the first line the database refuses."""
        name = plan.table.name
        if self.atomic:
            # The transaction is aborted; its rows cannot be tried one by one.
            first, last = numbers[0], numbers[-1]
            return LineError(
                self.path,
                first,
                f"the database refused a row of {name} in lines {first}-{last}: "
                f"{self._reason(exc)}",
                hint="nothing was imported; fix the file and import it again",
            )
        for number, row in zip(numbers, rows, strict=True):
            try:
                with self.connection.begin() as trial:
                    self._run(plan, [row])
                    trial.rollback()
            except self._errors as row_exc:
                return LineError(
                    self.path,
                    number,
                    f"the database refused this row of {name}: {self._reason(row_exc)}",
                    hint="the lines before this batch were imported; fix the file and "
                    "import it again (rows already imported are skipped)",
                )
        return LineError(self.path, numbers[0], f"a batch of {name} failed: {exc}")

    def finish(self, tables: dict[str, Table]) -> None:
        """Move id sequences past the imported ids (on the databases that need it)."""
        for name in sorted(self.touched):
            if self.atomic:
                self.support.advance_sequences(self.connection, tables[name])
            else:
                with self.connection.begin():
                    self.support.advance_sequences(self.connection, tables[name])


def import_data(
    store: Arquivo,
    path: str | Path,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    atomic: bool = False,
    jobs: int | None = None,
) -> ImportReport:
    """Import an export file into the store, keeping ids; idempotent.

    The file is read once and checked completely (into a scratch file, about the size
    of the data, in ``TMPDIR``) before anything is written, or, with ``atomic``, while
    it is written in one transaction that any problem rolls back (see the module
    docstring); rows whose key is already taken are skipped, so running the same import
    again, or importing into a store that already holds part of the data, is safe.

    Args:
        store: The store to import into (migrated to this version's schema).
        path: A file written by :func:`export_data` (gzip-compressed or not).
        progress: Called with a :class:`Progress` every batch of rows.
        batch_size: Rows per INSERT and per transaction (unless ``atomic``). By default
            5,000 rows per INSERT, and transactions that hold SQLite's write lock about
            0.2 s each (at most 25,000 rows).
        atomic: One transaction for the whole import: all or nothing (holds SQLite's
            write lock throughout).
        jobs: Processes that check the file side by side before the import writes
            (see :mod:`arquivo.portability.parallel`). By default one per CPU and per
            16 MiB of file, at most 4 (a gzip file is first decompressed into a
            plain copy in ``TMPDIR``); 1 checks it in this process. Not used by an
            atomic import.

    Returns:
        The rows inserted and skipped per table.

    Raises:
        ValidationError: The file is missing, malformed, truncated or from a newer
            Arquivo (with its line number); nothing was written. Also raised, naming
            the line, when the database refuses a row (see the module docstring).
        StorageFullError: The scratch file's disk is full; nothing was written.
    """
    started = time.perf_counter()
    path = Path(path)
    if batch_size is not None and batch_size < 1:
        raise ValidationError(f"batch_size must be positive, not {batch_size}")
    if jobs is not None and jobs < 1:
        raise ValidationError(f"jobs must be positive, not {jobs}")
    tables = {table.name: table for table in schema_tables()}
    codecs = {name: TableCodec(table) for name, table in tables.items()}
    support = get_dialect(store.dialect)
    with (
        translate_errors(store.dialect),
        store.engine.connect() as connection,
        support.bulk_loading(connection),
    ):
        writer = _Writer(connection, support, path, atomic=atomic)
        batches = functools.partial(
            _batches, codecs=codecs, writer=writer, batch_size=batch_size or DEFAULT_BATCH
        )
        if atomic:
            # The one pass is reported as "import"; the other way, "validate" first.
            header, counts = _import_atomic(
                Segment(path, codecs), batches, writer, tables, progress
            )
        else:
            header, counts = _import_checked(
                path, codecs, batches, writer, tables, batch_size, progress, jobs
            )
    inserted = {name: writer.inserted.get(name, 0) for name in tables}
    return ImportReport(
        path=path,
        inserted=inserted,
        skipped={name: counts.get(name, 0) - inserted[name] for name in tables},
        total_rows=sum(counts.values()),
        seconds=time.perf_counter() - started,
        source_dialect=str(header.get("dialect")),
        source_revision=cast("str | None", header.get("revision")),
        user_id=cast("str | None", header.get("user_id")),
    )


_Batches = Callable[[Segment], Iterator[tuple[_Plan, list[int], list[tuple[Any, ...]]]]]


def _import_atomic(
    reading: Segment,
    batches: _Batches,
    writer: _Writer,
    tables: dict[str, Table],
    progress: ProgressCallback | None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """One pass checks and writes in one transaction, which anything wrong rolls back."""
    stamp = _stamp(reading.path)
    with writer.connection.begin():  # rolled back by any exception
        _write_all(writer, batches(reading), progress, None)
        _check_unchanged(reading.path, stamp)
        writer.finish(tables)
    return reading.header, reading.counts


def _import_checked(
    path: Path,
    codecs: dict[str, TableCodec],
    batches: _Batches,
    writer: _Writer,
    tables: dict[str, Table],
    batch_size: int | None,
    progress: ProgressCallback | None,
    jobs: int | None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Check and convert the whole file into scratch files (on ``jobs`` processes), then
    write its batches, in transactions of one batch (``batch_size`` given) or grown by
    time."""

    def describe(plan: _Plan) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        columns = plan.names[: len(plan.names) - len(plan.missing)]
        return plan.table.name, tuple(columns), tuple(plan.names)

    def resolve(table: str, columns: tuple[str, ...], line: int) -> _Plan:
        return writer.plan(codecs[table], dict.fromkeys(columns), line)

    with contextlib.ExitStack() as stack:
        checked = check_file(
            path,
            codecs,
            batches,
            describe,
            resolve,
            jobs=default_jobs(path) if jobs is None else jobs,
            progress=progress,
            stack=stack,
        )
        # The whole file is read and checked: from here on it is not read again.
        try:
            _write_all(writer, checked.replay(), progress, checked.counts, grow=batch_size is None)
            writer.finish(tables)
        except BaseException:
            if writer.touched:
                writer.finish(tables)  # the committed batches still need their sequences
            raise
    return checked.header, checked.counts


def _write_all(
    writer: _Writer,
    batches: Iterator[tuple[_Plan, list[int], list[tuple[Any, ...]]]],
    progress: ProgressCallback | None,
    totals: dict[str, int] | None,
    *,
    grow: bool = False,
) -> None:
    """Write the batches in order; with ``grow``, consecutive batches of one plan are
    joined into one write (one transaction) of as many rows as the last write took
    :data:`_HOLD_S` to insert, at most :data:`_MAX_TRANSACTION_ROWS`."""
    done: dict[str, int] = {}
    target = 0  # rows per write: 0 until a write has been timed

    def write(plan: _Plan, numbers: list[int], rows: list[tuple[Any, ...]]) -> None:
        nonlocal target
        started = time.perf_counter()
        writer.write(plan, numbers, rows)
        elapsed = max(time.perf_counter() - started, 1e-4)
        target = min(int(len(rows) * _HOLD_S / elapsed), _MAX_TRANSACTION_ROWS)
        name = plan.table.name
        done[name] = done.get(name, 0) + len(rows)
        if progress is not None:
            total = None if totals is None else totals.get(name)
            progress(Progress("import", name, done[name], total))

    group: tuple[_Plan, list[int], list[tuple[Any, ...]]] | None = None
    for plan, numbers, rows in batches:
        if not grow:
            write(plan, numbers, rows)
            continue
        if group is not None and (plan is not group[0] or len(group[2]) + len(rows) > target):
            write(*group)
            group = None
        if group is None:
            group = (plan, numbers, rows)
        else:
            group[1].extend(numbers)
            group[2].extend(rows)
    if group is not None:
        write(*group)


def _check_unchanged(path: Path, stamp: tuple[int, int]) -> None:
    if _stamp(path) != stamp:
        raise ValidationError(
            f"{path} changed while it was being checked", hint="import it again once it is complete"
        )


def _batches(
    reading: Segment, *, codecs: dict[str, TableCodec], writer: _Writer, batch_size: int
) -> Iterator[tuple[_Plan, list[int], list[tuple[Any, ...]]]]:
    """The file's rows, checked and converted to the driver's values, in batches of
    one plan (with the line number of each row)."""
    numbers: list[int] = []
    rows: list[tuple[Any, ...]] = []
    plan: _Plan | None = None
    current: str | None = None
    columns: frozenset[str] = frozenset()
    for number, table, row in reading.rows():
        # One INSERT needs the same columns in every row: a change of table or of the
        # columns present (a file from an older schema) starts a new batch.
        if table != current or row.keys() != columns or len(rows) >= batch_size:
            if rows and plan is not None:
                yield plan, numbers, rows
                numbers, rows = [], []
            current, columns = table, frozenset(row)
            plan = writer.plan(codecs[table], row, number)
        assert plan is not None
        if plan.missing:
            codecs[table].add_defaults(row, plan.missing)
        try:
            values = plan.load(row)
        except DecodeError as exc:
            raise LineError(reading.path, number, f"table {table}: {exc}") from None
        numbers.append(number)
        rows.append(values)
    if rows and plan is not None:
        yield plan, numbers, rows
