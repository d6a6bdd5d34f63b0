"""A read-only memory map of a file, made without duplicating its descriptor.

Why: reading a 4 MiB block with ``os.pread`` copies it from the page cache into a new
buffer, which on the build machine costs about 0.85 CPU-seconds per GB, as much as
hashing it. The compressors and the checksum can read the page cache directly through a
map instead. Python's ``mmap.mmap`` cannot be used before Python 3.13 (``trackfd``): it
duplicates the descriptor and closes the copy when unmapped, and closing any descriptor
of a file drops every POSIX lock the process holds on it, SQLite's included (see
``sqlite_frozen``). So the map is made with the C library's ``mmap`` through ctypes.

A map of a file that shrinks under it faults (SIGBUS) when read past the new end: the
caller must hold the file still, as a frozen SQLite database is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
from collections.abc import Iterator

__all__ = ["mapped"]

_MAP_FAILED = ctypes.c_void_p(-1).value


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
        )
        libc.mmap.restype = ctypes.c_void_p
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.munmap.restype = ctypes.c_int
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        libc.madvise.restype = ctypes.c_int
    except (OSError, AttributeError, TypeError):
        return None  # no C library to load by name (Windows): the caller reads instead
    return libc


_LIBC = _libc()


@contextlib.contextmanager
def mapped(fd: int, size: int) -> Iterator[memoryview | None]:
    """The first ``size`` bytes of the file open as ``fd``, mapped read-only.

    Yields ``None`` when the platform cannot map it (the caller then reads). Every view
    taken from the yielded one must be released before the block ends: the memory is
    unmapped then, and reading it afterwards would crash the process.
    """
    protection, sharing = getattr(mmap, "PROT_READ", None), getattr(mmap, "MAP_SHARED", None)
    if _LIBC is None or protection is None or sharing is None or size <= 0:
        yield None
        return
    address = _LIBC.mmap(None, size, protection, sharing, fd, 0)
    if address is None or address == _MAP_FAILED:
        yield None
        return
    try:
        # Sequential reading: the kernel reads ahead further and maps more per fault.
        _LIBC.madvise(address, size, getattr(mmap, "MADV_SEQUENTIAL", 2))
        view = memoryview((ctypes.c_char * size).from_address(address)).cast("B")
        try:
            yield view
        finally:
            view.release()
    finally:
        _LIBC.munmap(address, size)
