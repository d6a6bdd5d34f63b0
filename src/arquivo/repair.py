"""Checking a database for damage, salvaging rows from a corrupt SQLite file, vacuuming.

Recovery never touches the damaged file: it is copied (with its WAL) to a scratch
folder first. Rows are read from the copy either through the ``sqlite3`` shell's
``.recover`` (when the shell is installed; it also rebuilds rows from pages the schema
no longer reaches) or by Arquivo's own salvage, which walks each table in rowid order
and, where a page cannot be read, seeks past it and carries on. The output is a new
database made by the migrations and filled in one transaction, checked, then renamed
into place; rows it refuses (e.g. an action whose session was lost) are written to a
``.rejected.jsonl`` file beside it rather than dropped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from arquivo.db import migrate
from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.db.engine import create_engine
from arquivo.errors import ArquivoError, CorruptDatabaseError, ValidationError
from arquivo.portability.scope import schema_tables

__all__ = [
    "IntegrityReport",
    "RecoverReport",
    "VacuumReport",
    "check_integrity",
    "recover_shell",
    "recover_sqlite",
    "vacuum",
]

_MAX_ROWID = 2**63 - 1
_BATCH = 1_000


@dataclass(frozen=True)
class IntegrityReport:
    """The result of :func:`check_integrity`.

    Attributes:
        ok: No problem was found.
        problems: What is wrong, one line each.
        checks: What was checked (and notes on what could not be).
        full: Whether the thorough checks ran.
    """

    ok: bool
    problems: list[str]
    checks: list[str]
    full: bool


@dataclass(frozen=True)
class RecoverReport:
    """What :func:`recover_sqlite` salvaged.

    Attributes:
        output: The new database.
        method: ``sqlite3 .recover`` or ``salvage`` (Arquivo's own reader).
        rows: Rows written to the output per table.
        rejected: Rows per table the output refused (see ``rejected_file``).
        rejected_file: Where the refused rows were written, if any were.
        unreadable_ranges: Per table, how many damaged stretches were skipped.
        lost_and_found: Rows ``.recover`` found whose table it could not tell.
        seconds: How long it took.
    """

    output: Path
    method: str
    rows: Mapping[str, int]
    rejected: Mapping[str, int]
    rejected_file: Path | None
    unreadable_ranges: Mapping[str, int]
    lost_and_found: int
    seconds: float


@dataclass(frozen=True)
class VacuumReport:
    """What :func:`vacuum` did.

    Attributes:
        size_before: Bytes on disk before (``None`` when unknown).
        size_after: Bytes on disk after.
        seconds: How long it took.
    """

    size_before: int | None
    size_after: int | None
    seconds: float


def check_integrity(engine: Engine, *, full: bool = False) -> IntegrityReport:
    """Look for damage: SQLite's ``quick_check`` (``integrity_check`` when ``full``) and
    ``foreign_key_check``; on PostgreSQL a read of every table and amcheck if installed.

    A file too damaged to open is reported as a problem, not raised.
    """
    support = get_dialect(engine.dialect.name)
    try:
        with translate_errors(engine.dialect.name), engine.connect() as connection:
            problems, checks = support.integrity_problems(connection, schema_tables(), full=full)
    except CorruptDatabaseError as exc:
        return IntegrityReport(False, [exc.message], ["open the database"], full)
    return IntegrityReport(not problems, problems, checks, full)


def vacuum(engine: Engine) -> VacuumReport:
    """Rebuild the database compactly and refresh statistics (``VACUUM``).

    On SQLite this needs free disk space about the size of the database and holds the
    write lock while it runs.
    """
    support = get_dialect(engine.dialect.name)
    started = time.perf_counter()
    before = support.database_size(engine)
    with translate_errors(engine.dialect.name):
        support.vacuum(engine)
    return VacuumReport(before, support.database_size(engine), time.perf_counter() - started)


def _copy_source(source: Path, scratch: Path) -> Path:
    copy = scratch / "source.db"
    shutil.copyfile(source, copy)
    for suffix in ("-wal", "-shm"):
        extra = source.with_name(source.name + suffix)
        if extra.exists():
            shutil.copyfile(extra, copy.with_name(copy.name + suffix))
    return copy


def recover_shell() -> str | None:
    """The ``sqlite3`` shell, if installed and its ``.recover`` works (some builds lack
    the page-reading virtual table it needs and fail on every file)."""
    shell = shutil.which("sqlite3")
    if shell is None:
        return None
    with tempfile.TemporaryDirectory(prefix="arquivo-probe-") as folder:
        probe = Path(folder) / "probe.db"
        with contextlib.closing(sqlite3.connect(probe)) as db:
            db.execute("CREATE TABLE t (a)")
            db.execute("INSERT INTO t VALUES (42)")
            db.commit()
        try:
            done = subprocess.run(
                [shell, str(probe), ".recover"], capture_output=True, check=False, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return None
    return shell if done.returncode == 0 and b"42" in done.stdout else None


def _shell_recover(shell: str, copy: Path, scratch: Path) -> Path:
    """Run ``sqlite3 COPY .recover | sqlite3 RECOVERED``; return the recovered file."""
    recovered = scratch / "recovered.db"
    dump = subprocess.run(
        [shell, str(copy), ".recover"], capture_output=True, check=False, timeout=3600
    )
    load = subprocess.run(
        [shell, str(recovered)], input=dump.stdout, capture_output=True, check=False, timeout=3600
    )
    if dump.returncode != 0 or not recovered.exists():
        problem = (dump.stderr or load.stderr).decode(errors="replace").strip()
        raise CorruptDatabaseError(
            f"sqlite3 .recover failed: {problem}", hint="run again with --method salvage"
        )
    return recovered


def _probe(source: sqlite3.Connection, table: str, at: int) -> bool:
    """Whether a seek to rowid ``at`` lands on a readable page."""
    try:
        source.execute(f'SELECT rowid FROM "{table}" WHERE rowid >= ? LIMIT 1', (at,)).fetchall()
    except sqlite3.DatabaseError:
        return False
    return True


def _skip_damage(source: sqlite3.Connection, table: str, last: int) -> int | None:
    """The smallest rowid after ``last`` from which reading works again, if any."""
    step = 1
    failing = last
    while True:
        probe = min(last + step, _MAX_ROWID)
        if _probe(source, table, probe):
            break
        failing = probe
        if probe == _MAX_ROWID:
            return None
        step *= 2
    # Readable from `probe`, not from `failing`: find where the damaged stretch ends.
    low, high = failing, probe
    while high - low > 1:
        middle = (low + high) // 2
        if _probe(source, table, middle):
            high = middle
        else:
            low = middle
    return high


def _first_rowid(source: sqlite3.Connection, table: str, at: int) -> int | None:
    try:
        row = source.execute(
            f'SELECT rowid FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1', (at,)
        ).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else int(row[0])


def _salvage(
    source: sqlite3.Connection, table: str, columns: list[str], damage: dict[str, int]
) -> Iterator[tuple[Any, ...]]:
    """Every readable row of ``table`` in rowid order, skipping damaged pages."""
    names = ", ".join(f'"{name}"' for name in columns)
    query = f'SELECT rowid, {names} FROM "{table}" WHERE rowid >= ? ORDER BY rowid'
    start = -_MAX_ROWID - 1
    while True:
        last: int | None = None
        try:
            for row in source.execute(query, (start,)):
                last = row[0]
                yield row[1:]
            return
        except sqlite3.DatabaseError:
            damage[table] = damage.get(table, 0) + 1
        if last is None:
            # Nothing read from `start`: either its leaf is damaged (seek past it) or
            # the first row's own content is (an overflow page): skip that one row.
            first = _first_rowid(source, table, start)
            if first is not None:
                if first >= _MAX_ROWID:
                    return
                start = first + 1
                continue
            last = max(start - 1, -_MAX_ROWID - 1)
        resume = _skip_damage(source, table, last)
        if resume is None:
            return
        start = resume


def _columns(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def recover_sqlite(
    source: str | Path,
    output: str | Path,
    *,
    method: str = "auto",
    progress: Callable[[str, int], None] | None = None,
) -> RecoverReport:
    """Salvage the rows of a damaged SQLite database into a new one.

    Args:
        source: The damaged database file (never modified).
        output: The new database to create (must not exist yet).
        method: ``shell`` (the ``sqlite3`` shell's ``.recover``), ``salvage``
            (Arquivo's reader) or ``auto`` (the shell when installed).
        progress: Called with (table, rows written so far) as rows are copied.

    Returns:
        The rows recovered per table, and what could not be.

    Raises:
        ValidationError: ``source`` is missing, ``output`` exists, or a bad ``method``.
        CorruptDatabaseError: Nothing is readable (the schema page is gone).
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise ValidationError(f"{source} is not a file", hint="give the damaged database file")
    if output.exists():
        raise ValidationError(
            f"{output} already exists", hint="choose a new file name for the recovered copy"
        )
    if method not in ("auto", "shell", "salvage"):
        raise ValidationError(
            f"unknown recovery method {method!r}", hint="use auto, shell or salvage"
        )
    shell = recover_shell() if method != "salvage" else None
    if method == "auto":
        method = "shell" if shell else "salvage"
    if method == "shell" and shell is None:
        raise ValidationError(
            "the sqlite3 shell is not installed, or its .recover does not work",
            hint="use --method salvage (Arquivo's own reader)",
        )
    with tempfile.TemporaryDirectory(prefix="arquivo-recover-") as folder:
        scratch = Path(folder)
        copy = _copy_source(source, scratch)
        if method == "shell":
            assert shell is not None
            copy = _shell_recover(shell, copy, scratch)
        temporary = output.with_name(f".{output.name}.recovering")
        temporary.unlink(missing_ok=True)
        try:
            result = _fill(copy, temporary, output, progress)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, output)
    rows, rejected, rejected_file, damage, lost = result
    return RecoverReport(
        output=output,
        method="sqlite3 .recover" if method == "shell" else "salvage",
        rows=rows,
        rejected=rejected,
        rejected_file=rejected_file,
        unreadable_ranges=damage,
        lost_and_found=lost,
        seconds=time.perf_counter() - started,
    )


def _fill(
    copy: Path, temporary: Path, output: Path, progress: Callable[[str, int], None] | None
) -> tuple[dict[str, int], dict[str, int], Path | None, dict[str, int], int]:
    engine = create_engine(f"sqlite:///{temporary}")
    try:
        migrate.upgrade(engine, "head")
    finally:
        engine.dispose()
    try:
        reader = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        known = {row[0] for row in reader.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabaseError(
            f"the database's schema cannot be read ({exc}); no row can be attributed",
            hint="restore the last backup (`arquivo backup list`); if the sqlite3 shell is "
            "installed, `sqlite3 BROKEN.db .recover` may still find rows",
        ) from exc
    writer = sqlite3.connect(temporary, isolation_level=None)
    writer.execute("PRAGMA foreign_keys = ON")
    rows: dict[str, int] = {}
    rejected: dict[str, int] = {}
    damage: dict[str, int] = {}
    rejected_path = output.with_name(output.name + ".rejected.jsonl")
    rejects: Any = None
    try:
        writer.execute("BEGIN IMMEDIATE")
        for table in schema_tables():
            rows[table.name] = rejected[table.name] = 0
            if table.name not in known:
                continue
            wanted = set(_columns(writer, table.name))
            columns = [name for name in _columns(reader, table.name) if name in wanted]
            names = ", ".join(f'"{name}"' for name in columns)
            marks = ", ".join("?" for _ in columns)
            insert = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
            for row in _salvage(reader, table.name, columns, damage):
                try:
                    writer.execute(insert, row)
                except sqlite3.IntegrityError as exc:
                    if rejects is None:
                        rejects = open(rejected_path, "w", encoding="utf-8")  # noqa: SIM115
                    record: dict[str, Any] = {"table": table.name, "reason": str(exc)}
                    record["row"] = dict(zip(columns, map(_json_safe, row), strict=True))
                    rejects.write(json.dumps(record, default=str) + "\n")
                    rejected[table.name] += 1
                    continue
                rows[table.name] += 1
                if progress is not None and rows[table.name] % _BATCH == 0:
                    progress(table.name, rows[table.name])
            if progress is not None:
                progress(table.name, rows[table.name])
        lost = 0
        if "lost_and_found" in known:
            lost = int(reader.execute("SELECT count(*) FROM lost_and_found").fetchone()[0])
        writer.execute("COMMIT")
        problems = [row[0] for row in writer.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise ArquivoError(
                f"the recovered database fails its integrity check: {problems[:3]}",
                hint="report this as a bug; the damaged file was not changed",
            )
    finally:
        reader.close()
        writer.close()
        if rejects is not None:
            rejects.close()
    return rows, rejected, rejected_path if rejects is not None else None, damage, lost
