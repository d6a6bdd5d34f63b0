"""A scratch file of checked, converted batches: an import reads its file only once.

An import that must not write anything from a bad file has to see the whole file
before its first write. Reading the file twice (check, then convert and write) parsed
and checked every line twice, which a profile put at about 60% of the import's time.
Instead, the checking pass keeps
what it produced, the driver's values of every row, in an unnamed temporary file
(deleted by the kernel however the process ends), and the writing pass replays them.

Batches are written with :mod:`marshal` (the C serializer of Python's own literals:
SQLite's values are all str, int, float, bytes or None), or with :mod:`pickle` when a
batch holds anything else (PostgreSQL's datetimes and JSON wrappers). The file lives
only within one process and one Python, so marshal's version-specific format is fine.
"""

from __future__ import annotations

import marshal
import pickle
import struct
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, Generic, TypeVar

from arquivo.backup.files import os_errors
from arquivo.errors import ArquivoError

__all__ = ["Spill"]

P = TypeVar("P")

_HEAD = struct.Struct("<BQ")  # serializer (0 marshal, 1 pickle), payload length
_MARSHAL, _PICKLE = 0, 1
_FULL_HINT = (
    "the import keeps its checked rows in a temporary file about the size of the data: "
    "free space there or point TMPDIR to a larger folder (or import with --atomic, "
    "which needs no scratch file); nothing was imported"
)


class Spill(Generic[P]):
    """Batches of (plan, line numbers, rows) written once, then read back in order.

    Args:
        folder: Where the unnamed file is created (default: the system's temp folder,
            ``TMPDIR``).
    """

    def __init__(self, folder: str | None = None) -> None:
        with os_errors("cannot create the import's scratch file"):
            self._file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115 (closed by close)
                prefix="arquivo-import-", dir=folder
            )
        self._plans: list[P] = []
        self._index: dict[int, int] = {}
        #: Bytes written so far.
        self.size = 0

    def __enter__(self) -> Spill[P]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, plan: P, numbers: list[int], rows: list[tuple[Any, ...]]) -> None:
        """Append one batch (its rows share ``plan``; ``numbers`` are their lines).

        Raises:
            StorageFullError: The scratch file's disk is full.
        """
        index = self._index.get(id(plan))
        if index is None:
            index = self._index[id(plan)] = len(self._plans)
            self._plans.append(plan)
        payload = (index, numbers, rows)
        try:
            data, kind = marshal.dumps(payload), _MARSHAL
        except ValueError:  # a value marshal cannot write
            data, kind = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), _PICKLE
        with os_errors("cannot write the import's scratch file", full_hint=_FULL_HINT):
            self._file.write(_HEAD.pack(kind, len(data)))
            self._file.write(data)
        self.size += _HEAD.size + len(data)

    @property
    def plans(self) -> list[P]:
        """The plans of the batches added, in the order first seen."""
        return list(self._plans)

    def flush(self) -> None:
        """Write what is buffered to the file (before another process reads it).

        Raises:
            StorageFullError: The scratch file's disk is full.
        """
        with os_errors("cannot write the import's scratch file", full_hint=_FULL_HINT):
            self._file.flush()

    def batches(
        self, plans: Sequence[P] | None = None
    ) -> Iterator[tuple[P, list[int], list[tuple[Any, ...]]]]:
        """Every batch added, in order (one in memory at a time).

        Args:
            plans: The plans in :attr:`plans`'s order, when the batches were added by
                another process (a fork sharing the file): its plans are not this one's.
        """
        known = self._plans if plans is None else plans
        with os_errors("cannot read the import's scratch file"):
            self._file.flush()
            self._file.seek(0)
        read = self._file.read
        while head := read(_HEAD.size):
            kind, length = _HEAD.unpack(head)
            data = read(length)
            if len(data) != length:
                raise ArquivoError("the import's scratch file ended early: it was changed")
            index, numbers, rows = (marshal if kind == _MARSHAL else pickle).loads(data)
            yield known[index], numbers, rows

    def close(self) -> None:
        """Close (and so delete) the file."""
        self._file.close()
