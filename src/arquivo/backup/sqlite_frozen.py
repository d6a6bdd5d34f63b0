"""A SQLite database file held still, so its bytes can be read as one consistent snapshot.

Why this is safe: in WAL mode SQLite changes the database file only when a checkpoint
copies WAL frames back into it, and a checkpoint must first lock read-mark 0 exclusively.
A reader takes read-mark 0 (shared) when every frame of the WAL is already in the file,
and it then reads the file alone. So: with the write lock held for a moment (no commit
can land), a passive checkpoint folds the whole WAL into the file, a read transaction is
opened on it, and the write lock is let go. From then until that read transaction ends,
the file's bytes are exactly the last committed state: writers keep committing to the WAL
and no checkpoint can touch the file. In rollback-journal mode the shared lock of any read
transaction already keeps writers from changing the file.

Why the file descriptor is never closed: POSIX file locks belong to the process, and
closing *any* descriptor of a file drops every lock the process holds on it, including
those of SQLite's own connections (the store's pool). A descriptor per database file is
therefore opened once and kept for the life of the process (SQLite does the same).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FrozenFile", "frozen", "read_descriptor"]

#: Attempts at folding the WAL while holding the write lock, before giving up (the caller
#: then takes the online backup API's path). Readers of an older snapshot (a long
#: query) keep frames from being folded; each attempt waits a little longer for them.
_ATTEMPTS = 12
#: How long one attempt waits for the write lock (a writer's transaction to end).
_HOLD_WAIT_S = 2.0
#: How long one attempt holds the write lock waiting for the WAL to be all folded in.
_FOLD_WAIT_S = 0.25

_descriptors: dict[tuple[int, int], int] = {}
_parked: list[int] = []
_descriptors_lock = threading.Lock()


def read_descriptor(path: Path) -> int:
    """A read-only descriptor of ``path``'s current file, kept open for the process's life."""
    with _descriptors_lock:
        info = os.stat(path)
        fd = _descriptors.get((info.st_dev, info.st_ino))
        if fd is not None:
            return fd
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        # Keyed by what was really opened: the path may have been replaced meanwhile.
        opened = os.fstat(fd)
        kept = _descriptors.setdefault((opened.st_dev, opened.st_ino), fd)
        if kept != fd:
            _parked.append(fd)  # never closed either (see the module docstring)
        return kept


def _same_file(fd: int, before: os.stat_result) -> bool:
    now = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)


@dataclass(frozen=True)
class FrozenFile:
    """The open read transaction and what it sees.

    Attributes:
        connection: The connection holding the read transaction (query it for counts).
        fd: A descriptor of the database file, for ``os.pread``.
        size: Bytes of the snapshot: its page count times its page size.
        page_size: SQLite's page size.
    """

    connection: sqlite3.Connection
    fd: int
    size: int
    page_size: int


def _fold_and_begin(source: Path, reader: sqlite3.Connection) -> bool | None:
    """Under the write lock: checkpoint the whole WAL, then begin reading.

    True on success, False if older readers kept frames from being folded in (worth
    another try), None if the write lock stayed taken (a long write transaction).
    """
    holder = sqlite3.connect(source, timeout=_HOLD_WAIT_S, isolation_level=None)
    try:
        try:
            holder.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return None
        try:
            # No frame can be added now, so what stops the fold is short-lived: another
            # process's checkpoint in progress (busy) or a reader of older frames.
            deadline = time.monotonic() + _FOLD_WAIT_S
            while True:
                busy, log, folded = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if not busy and log == folded:
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return True
        finally:
            holder.execute("ROLLBACK")
    finally:
        holder.close()


@contextlib.contextmanager
def frozen(source: Path, *, timeout: float = 30.0) -> Iterator[FrozenFile | None]:
    """Hold ``source`` still for the block; ``None`` if that could not be arranged.

    ``None`` means nothing was held (the WAL could not be folded in, or the file was
    replaced meanwhile): the caller takes another path.
    """
    before = os.stat(source)
    reader = sqlite3.connect(source, timeout=timeout, isolation_level=None)
    try:
        # Only WAL is a lasting mode; any other is a rollback journal for this connection.
        mode = str(reader.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode != "wal":
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        else:
            # Fold what is there first without holding anybody up: under the write lock
            # only what was committed meanwhile is left to copy.
            reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            for attempt in range(_ATTEMPTS):
                begun = _fold_and_begin(source, reader)
                if begun is None:
                    yield None
                    return
                if begun:
                    break
                time.sleep(0.005 * (attempt + 1))
            else:
                yield None
                return
        fd = read_descriptor(source)
        if not _same_file(fd, before):
            yield None
            return
        page_size = int(reader.execute("PRAGMA page_size").fetchone()[0])
        pages = int(reader.execute("PRAGMA page_count").fetchone()[0])
        if os.fstat(fd).st_size < pages * page_size:
            yield None
            return
        yield FrozenFile(reader, fd, pages * page_size, page_size)
        reader.execute("COMMIT")
    finally:
        reader.close()
