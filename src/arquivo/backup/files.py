"""Durable file operations: fsync, atomic replace, checksums, and disk-full translation.

A backup or a restore is only as safe as its weakest write, so every file that matters is
written to a temporary name, flushed to disk, then renamed into place, and the folder
holding it is flushed too (a rename is not durable until its directory is).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arquivo.errors import ArquivoError, StorageFullError

__all__ = [
    "CHUNK",
    "atomic_write_bytes",
    "exchange",
    "fsync_dir",
    "fsync_file",
    "os_errors",
    "remove_quietly",
    "sha256_file",
]

#: Read/write block for streaming copies: large enough to amortise system calls.
CHUNK = 1 << 20

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def fsync_file(path: Path) -> None:
    """Flush one file's content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        remove_quietly(temp)
        raise
    fsync_dir(path.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library older than glibc 2.28
        return None


def exchange(first: Path, second: Path) -> None:
    """Swap two paths (folders, typically): each name then points at the other's content.

    One ``renameat2(RENAME_EXCHANGE)`` on Linux: at every instant each name exists and
    names a complete folder. Elsewhere (or on a file system that refuses it) three
    renames, with ``second`` missing for a moment.
    """
    call = _renameat2()
    if call is not None:
        result = call(
            _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(second))
    aside = second.with_name(f".{second.name}.exchange-{os.getpid()}")
    os.rename(second, aside)
    os.rename(first, second)
    os.rename(aside, first)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def remove_quietly(path: Path) -> None:
    """Delete a file or a folder tree if it exists; cleanup must not mask the real error."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


@contextlib.contextmanager
def os_errors(action: str, *, full_hint: str | None = None) -> Iterator[None]:
    """Turn ``OSError`` raised inside the block into an :class:`ArquivoError`.

    A full disk (or quota, or file size limit) becomes :class:`StorageFullError`, with
    ``full_hint`` if given.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFullError(
                f"{action}: the disk is full ({exc.strerror})", hint=full_hint
            ) from exc
        where = f" ({exc.filename})" if exc.filename else ""
        raise ArquivoError(
            f"{action}: {exc.strerror or exc}{where}",
            hint="check that the folder exists, is writable and is on a healthy disk",
        ) from exc
