"""The export file: JSON Lines, gzip-compressed when its name ends in ``.gz``.

::

    {"format": "arquivo-export", "format_version": 1, "arquivo_version": "0.1.0",
     "revision": "0003", "dialect": "sqlite", "created_at": "...", "user_id": null,
     "tables": ["user_preferences", ...]}
    {"table": "user_preferences", "row": {"id": 1, "user_id": "u1", "key": "theme", ...}}
    ...
    {"end": true, "rows": {"user_preferences": 1, ...}}

The first line describes the file, one line per row follows (tables in an order where
parents come before the rows that refer to them), and the last line counts the rows
per table, so a truncated file is recognised instead of half-imported.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from arquivo.errors import StorageFullError, ValidationError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExportReport",
    "ImportReport",
    "Progress",
    "ProgressCallback",
    "atomic_text_file",
    "open_binary",
    "open_text",
]

FORMAT = "arquivo-export"
FORMAT_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"
# Level 6 (gzip's default) halves throughput for a few percent of size on this data.
_GZIP_LEVEL = 3


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a long export or import is.

    Attributes:
        stage: ``export``, ``validate`` (reading the file before writing) or ``import``.
        table: The table being worked on.
        done: Rows of that table done so far.
        total: Rows of that table in all (``None`` when not known yet).
    """

    stage: str
    table: str
    done: int
    total: int | None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_data` wrote.

    Attributes:
        path: The file written.
        rows: Rows written per table (every table of the schema, zeros included).
        total_rows: The sum of ``rows``.
        bytes: The file's size.
        seconds: How long it took.
        dialect: The database exported (``sqlite`` or ``postgresql``).
        revision: Its schema revision.
        user_id: The one user exported, or ``None`` for everything.
    """

    path: Path
    rows: Mapping[str, int]
    total_rows: int
    bytes: int
    seconds: float
    dialect: str
    revision: str | None
    user_id: str | None


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_data` did.

    Attributes:
        path: The file read.
        inserted: New rows written per table.
        skipped: Rows per table whose key (primary or unique) was already taken, left
            as they were; importing a file twice skips every row the second time.
        total_rows: Rows in the file.
        seconds: How long it took.
        source_dialect: The database the file was exported from.
        source_revision: The schema revision it was exported at.
        user_id: The one user the file holds, or ``None``.
    """

    path: Path
    inserted: Mapping[str, int]
    skipped: Mapping[str, int]
    total_rows: int
    seconds: float
    source_dialect: str
    source_revision: str | None
    user_id: str | None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_text_file(path: Path) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` complete, or not at all.

    It is written beside ``path`` under a temporary name (gzip-compressed when
    ``path`` ends in ``.gz``), flushed, fsynced and renamed over ``path`` when the
    block ends normally; on any error the temporary file is removed.

    Raises:
        StorageFullError: The disk filled up or the file could not be written.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        raw = open(temporary, "xb")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise StorageFullError(
            f"cannot create {temporary}: {exc.strerror}",
            hint="check that the folder exists and is writable",
        ) from exc
    try:
        try:
            binary: Any = raw
            zipped = None
            if path.name.endswith(".gz"):
                zipped = gzip.GzipFile(
                    filename=path.name[:-3], fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL
                )
                binary = zipped
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n", write_through=False)
            yield text
            text.flush()
            if zipped is not None:
                zipped.close()
            raw.flush()
            os.fsync(raw.fileno())
        finally:
            raw.close()
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StorageFullError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """Read an export file's bytes, gzip-compressed or not (told by its first bytes).

    Iterating the file gives its lines as bytes (split on ``\\n`` only, as written).

    Raises:
        ValidationError: The file does not exist or cannot be read.
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the ExitStack
    except OSError as exc:
        raise ValidationError(
            f"cannot open {path}: {exc.strerror}", hint="check the path of the export file"
        ) from exc
    with contextlib.ExitStack() as stack:
        stack.enter_context(raw)
        binary: Any = raw
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            binary = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        yield binary


@contextlib.contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Read an export file as text, gzip-compressed or not (told by its first bytes).

    Raises:
        ValidationError: The file does not exist or cannot be read.
    """
    with open_binary(path) as binary:
        yield io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
