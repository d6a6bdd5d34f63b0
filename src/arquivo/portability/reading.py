"""Reading an export file's lines: parsing, and the checks of the file's structure.

The header comes first, one row object per line, nothing after the end line, and the
end line's counts match the rows. A :class:`Segment` reads the whole file, or a byte
range of a plain file (so that several processes can check one file side by side, see
:mod:`arquivo.portability.parallel`); the values in the rows are checked by the
importer.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from arquivo.db import migrate
from arquivo.errors import ValidationError
from arquivo.portability.codec import TableCodec
from arquivo.portability.fileformat import (
    FORMAT,
    FORMAT_VERSION,
    Progress,
    ProgressCallback,
    open_binary,
)

__all__ = ["PROGRESS_EVERY", "LineError", "Segment"]

#: Rows between two progress reports.
PROGRESS_EVERY = 10_000


class LineError(ValidationError):
    """A problem at one line of an export file (a ValidationError, with the line number).

    Attributes:
        path: The file.
        line: The line, counted from 1.
        problem: What is wrong there (the message without the place).
    """

    def __init__(self, path: Path, line: int, problem: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{path}, line {line}: {problem}",
            hint=hint or "the file is not a valid Arquivo export; nothing was imported",
        )
        self.path = path
        self.line = line
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent from the processes that check a file's ranges (pickled by the pipe).
        return (_line_error, (self.path, self.line, self.problem, self.hint))

    def moved(self, lines_before: int) -> LineError:
        """The same error, for a line counted from ``lines_before`` lines further up."""
        return LineError(self.path, self.line + lines_before, self.problem, hint=self.hint)


def _line_error(path: Path, line: int, problem: str, hint: str) -> LineError:
    return LineError(path, line, problem, hint=hint)


# orjson reads an integer beyond 64 bits as a float, silently: a line holding a run of
# 19 or more digits (which any such integer has) is read by the json module instead.
_DIGIT_MAP = bytes(ord("0") if ord("0") <= code <= ord("9") else ord(" ") for code in range(256))
_LONG_NUMBER = b"0" * 19

_BLANK = object()


def _parse_slowly(path: Path, number: int, line: bytes) -> Any:
    """A line orjson would read differently (integers beyond 64 bits) or refuses (NaN,
    lone surrogates, numbers beyond a double, or not JSON at all), read by the json
    module, so the same files import as before; ``_BLANK`` for a blank line.

    Raises:
        LineError: The line is not JSON.
        UnicodeDecodeError: The line is not UTF-8.
    """
    try:
        return json.loads(line.decode("utf-8"))
    except json.JSONDecodeError as exc:
        if not line.strip():
            return _BLANK
        raise LineError(path, number, f"not JSON: {exc.msg}") from exc


def _check_header(path: Path, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise LineError(path, 1, "the first line is not an Arquivo export header")
    version = value.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise LineError(
            path,
            1,
            f"format version {version!r} is newer than this Arquivo reads ({FORMAT_VERSION})",
            hint="upgrade the arquivo package to import this file",
        )
    revision = value.get("revision")
    if revision is not None and revision not in {r.id for r in migrate.history()}:
        raise LineError(
            path,
            1,
            f"the file was exported at schema revision {revision!r}, unknown to this Arquivo",
            hint="upgrade the arquivo package to import this file",
        )
    return value


def _limited(lines: IO[bytes], size: int) -> Iterator[bytes]:
    """The lines of the next ``size`` bytes (which end at the end of a line)."""
    for line in lines:
        yield line
        size -= len(line)
        if size <= 0:
            return


class Segment:
    """One streaming pass over an export file, or over a byte range of a plain one.

    A pass over the whole file (the default) checks everything once its last row is
    taken, so a consumer must exhaust :meth:`rows`. A range (``start``/``stop``, at
    line boundaries) reads its lines only, numbered from 1 within it; a range after
    the first takes the header as already read (``after_header``), and the checks that
    need the whole file are left to whoever joins the ranges (:attr:`first_line`,
    :attr:`lines`, :attr:`end` and :attr:`counts` tell what it saw).

    Args:
        path: The export file.
        codecs: The tables a row may belong to.
        progress: Called with a :class:`Progress` every few thousand rows of a table.
        start: The first byte to read.
        stop: The byte after the last one to read (``None``: to the end of the file).
        after_header: Whether the range starts after the header line.
        source: The file to read, when it is not ``path`` (which errors still name):
            the plain copy of a gzip-compressed file.
    """

    def __init__(
        self,
        path: Path,
        codecs: dict[str, TableCodec],
        *,
        progress: ProgressCallback | None = None,
        start: int = 0,
        stop: int | None = None,
        after_header: bool = False,
        source: Path | None = None,
    ) -> None:
        self.path = path
        self.source = path if source is None else source
        self.codecs = codecs
        self.progress = progress
        self.start = start
        self.stop = stop
        self.after_header = after_header
        #: The file's header (an empty dict until read, and in a range after the first).
        self.header: dict[str, Any] = {}
        #: Rows read per table.
        self.counts: dict[str, int] = {}
        #: The end line's value, once read.
        self.end: dict[str, Any] | None = None
        #: The first and last lines that are not blank (0: none), and all the lines read.
        self.first_line = 0
        self.last_line = 0
        self.lines = 0

    @property
    def whole(self) -> bool:
        """Whether the pass reads the whole file."""
        return self.start == 0 and self.stop is None and not self.after_header

    def rows(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(line number, table, row) for every row line, in file order."""
        path = self.path
        with open_binary(self.source) as binary:
            lines: Iterable[bytes] = binary
            if self.stop is not None or self.start:
                binary.seek(self.start)
                if self.stop is not None:
                    lines = _limited(binary, self.stop - self.start)
            try:
                yield from self._rows(lines)
            except UnicodeDecodeError as exc:
                raise LineError(path, self.lines, "not UTF-8 text") from exc
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise LineError(
                    path, self.lines + 1, f"the compressed data is damaged or cut short ({exc})"
                ) from exc
        if self.whole:
            self.check_complete(self.header, self.end, self.counts, self.last_line)

    def _rows(self, lines: Iterable[bytes]) -> Iterator[tuple[int, str, dict[str, Any]]]:
        path, codecs, counts, progress = self.path, self.codecs, self.counts, self.progress
        loads, digits, long_number = orjson.loads, _DIGIT_MAP, _LONG_NUMBER
        header_read = self.after_header
        end: dict[str, Any] | None = None
        number = 0
        between = header_read  # after the header, before the end line
        for number, line in enumerate(lines, 1):
            self.lines = number
            value: Any = _BLANK
            if long_number not in line.translate(digits):
                try:
                    value = loads(line)
                except orjson.JSONDecodeError:
                    value = _BLANK  # the json module reads it, or says what is wrong
            if value is _BLANK:
                value = _parse_slowly(path, number, line)
                if value is _BLANK:
                    continue
            self.last_line = number
            if not self.first_line:
                self.first_line = number
            # Nearly every line: {"table": <a known table>, "row": {...}}.
            if between and type(value) is dict and len(value) == 2:
                table, row = value.get("table"), value.get("row")
                if type(row) is dict and type(table) is str and table in codecs:
                    done = counts[table] = counts.get(table, 0) + 1
                    if progress is not None and done % PROGRESS_EVERY == 0:
                        progress(Progress("validate", table, done, None))
                    yield number, table, row
                    continue
            if not header_read:
                self.header = _check_header(path, value)
                header_read = between = True
                continue
            if end is not None:
                raise LineError(path, number, "there is more after the end line")
            if isinstance(value, dict) and value.get("end") is True:
                end, between = value, False
                self.end = end
                continue
            _refuse_row(path, number, value, codecs)

    def check_complete(
        self,
        header: dict[str, Any],
        end: dict[str, Any] | None,
        counts: dict[str, int],
        last_line: int,
    ) -> None:
        """The checks of a whole file: a header, an end line, and the rows it counts.

        Raises:
            LineError: The file is empty, cut short, or its rows are not those counted.
        """
        path = self.path
        if not header:
            raise LineError(path, 1, "the file is empty")
        if end is None:
            raise LineError(
                path,
                last_line + 1,
                "the file ends before its end line: it was cut short",
                hint="export again, or copy the complete file; nothing was imported",
            )
        declared = end.get("rows")
        if not isinstance(declared, dict) or {k: v for k, v in declared.items() if v} != counts:
            raise LineError(
                path,
                last_line,
                f"the end line counts {declared!r} rows but the file holds {counts!r}",
                hint="the file was edited or damaged; export again",
            )


def _refuse_row(path: Path, number: int, value: Any, codecs: dict[str, TableCodec]) -> None:
    """Raise the error of a line that is not a row of a known table."""
    if not isinstance(value, dict) or len(value) != 2 or "table" not in value or "row" not in value:
        raise LineError(path, number, 'expected {"table": ..., "row": {...}}')
    table = value["table"]
    if not isinstance(table, str) or table not in codecs:
        raise LineError(
            path,
            number,
            f"unknown table {table!r}",
            hint="the file comes from a newer Arquivo, or is not an Arquivo export",
        )
    raise LineError(path, number, "the row is not a JSON object")
