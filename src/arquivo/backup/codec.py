"""Compressing backup files: lz4 by default, or zstd, gzip, none.

Measured on SQLite files of chat messages on the 2-core build machine
(``benchmarks/backup.py --codec ...`` repeats this): zstd level 1 costs about 4
CPU-seconds per GB and compresses to 22% of the size; lz4 (its fastest level) costs
about 1.9 and compresses to 40%; zlib level 1 is 3x slower than zstd for a worse ratio;
zstd's negative levels gain nothing on this data. Compression is most of a backup's
time, and a backup of a live database competes for the CPU with its writers: with 4
processes appending, a 200 MB backup took 1.1 s with lz4 against 1.8-3.0 s with zstd.
So lz4 is the default (``zstd`` when a backup should be small). Both spread the work:
zstd over its worker threads, lz4 over a thread pool that compresses one frame per
block (concatenated frames are one valid lz4 stream), while the calling thread reads,
hashes what is written and writes. gzip level 1 is the fallback when neither package is
installed. The codec is recorded in each backup's manifest, so old backups restore.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib
import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from arquivo.backup.files import CHUNK
from arquivo.errors import MissingDependencyError, ValidationError

__all__ = [
    "CODECS",
    "Packer",
    "block_compressor",
    "compress_file",
    "compress_workers",
    "decompress_file",
    "decompress_files",
    "default_codec",
    "suffix",
]

CODECS = ("lz4", "zstd", "gzip", "none")
_SUFFIX = {"zstd": ".zst", "lz4": ".lz4", "gzip": ".gz", "none": ""}

Progress = Callable[[int], None]

#: Read block while compressing: a few of zstd's jobs per call keeps its workers busy.
COMPRESS_CHUNK = 4 * CHUNK


def _zstd_workers() -> int:
    """zstd worker threads: one per CPU (0, i.e. none, on a single CPU), at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if not cpus or cpus < 2 else min(cpus, 4)


def compress_workers() -> int:
    """Threads that compress blocks side by side: one per CPU, at most 4."""
    return max(1, _zstd_workers())


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError as exc:
        raise MissingDependencyError(
            "this backup is compressed with zstd and the zstandard package is missing",
            hint="pip install zstandard",
        ) from exc
    return zstandard


def _lz4() -> Any:
    try:
        import lz4.frame
    except ImportError as exc:
        raise MissingDependencyError(
            "this backup is compressed with lz4 and the lz4 package is missing",
            hint="pip install lz4",
        ) from exc
    return lz4.frame


def default_codec() -> str:
    """``lz4`` when its package is installed, else ``zstd``, else ``gzip``."""
    for codec, module in (("lz4", "lz4.frame"), ("zstd", "zstandard")):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return codec
    return "gzip"


def suffix(codec: str) -> str:
    """The file-name suffix of a codec (``.zst``, ``.gz`` or nothing).

    Raises:
        ValidationError: The codec is unknown.
    """
    try:
        return _SUFFIX[codec]
    except KeyError:
        raise ValidationError(
            f"unknown compression {codec!r}", hint=f"use one of: {', '.join(CODECS)}"
        ) from None


class Packer:
    """Compresses blocks into a file as they come, hashing what is written on the way.

    Args:
        target: The file to create.
        codec: ``zstd``, ``gzip`` or ``none``.
    """

    def __init__(self, target: Path, codec: str) -> None:
        suffix(codec)
        self._push: Callable[[bytes], bytes]
        self._end: Callable[[], bytes]
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 0
        self._pending: collections.deque[Future[bytes]] = collections.deque()
        if codec == "zstd":
            zstd = _zstd().ZstdCompressor(level=1, threads=_zstd_workers())
            compressor = zstd.compressobj()
            self._push, self._end = compressor.compress, compressor.flush
        elif codec == "lz4":
            # One frame per block, compressed by a pool (lz4 lets go of the GIL) and
            # written in order: concatenated frames are one valid lz4 stream.
            self._push = block_compressor("lz4")
            self._end = bytes
            self._workers = compress_workers()
            self._pool = ThreadPoolExecutor(self._workers, "arquivo-lz4")
        elif codec == "gzip":
            deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
            self._push, self._end = deflate.compress, deflate.flush
        else:
            self._push, self._end = bytes, bytes
        self._digest = hashlib.sha256()
        self._file: BinaryIO = open(target, "wb")  # noqa: SIM115 (closed by finish/close)

    def write(self, block: bytes) -> None:
        """Compress and write one block."""
        if self._pool is None:
            self._out(self._push(block))
            return
        self._pending.append(self._pool.submit(self._push, block))
        while len(self._pending) > 2 * self._workers:
            self._out(self._pending.popleft().result())

    def _out(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            self._file.write(data)

    def finish(self) -> str:
        """Write the end of the stream, flush the file to disk, close it; the hex SHA-256."""
        while self._pending:
            self._out(self._pending.popleft().result())
        self._out(self._end())
        self._file.flush()
        os.fsync(self._file.fileno())
        self.close()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Close the file (unfinished, after an error) and stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._file.close()


def compress_file(source: Path, target: Path, codec: str, progress: Progress | None = None) -> str:
    """Write ``source`` compressed with ``codec`` into ``target`` and flush it to disk.

    Returns the hex SHA-256 of what was written (computed on the way, to spare a re-read).

    Args:
        source: The file to read.
        target: The file to create.
        codec: ``zstd``, ``gzip`` or ``none``.
        progress: Called with the number of source bytes consumed by each block.
    """
    packer = Packer(target, codec)
    try:
        with open(source, "rb") as src:
            while block := src.read(COMPRESS_CHUNK):
                packer.write(block)
                if progress is not None:
                    progress(len(block))
    except BaseException:
        packer.close()
        raise
    return packer.finish()


def block_compressor(codec: str) -> Callable[[bytes | memoryview], bytes]:
    """A call that compresses one whole block into a stream of its own (thread-safe).

    Several such streams, decompressed one after the other, give the blocks back
    (:func:`decompress_files`).
    """
    suffix(codec)
    if codec == "zstd":
        zstd = _zstd()
        # A compressor is not thread-safe: one per block (its set-up is microseconds).
        return lambda block: bytes(zstd.ZstdCompressor(level=1).compress(block))
    if codec == "lz4":
        return functools.partial(_lz4().compress, compression_level=0)
    if codec == "gzip":

        def deflate(block: bytes | memoryview) -> bytes:
            packer = zlib.compressobj(1, zlib.DEFLATED, 31)
            return packer.compress(block) + packer.flush()

        return deflate
    return bytes


def decompress_file(
    source: Path, target: Path, codec: str, progress: Progress | None = None
) -> None:
    """Write the decompressed content of ``source`` into ``target`` and flush it to disk.

    Raises:
        ValidationError: The codec is unknown or the data is not valid for it.
        MissingDependencyError: The codec's package is not installed.
    """
    decompress_files([source], target, codec, progress)


def decompress_files(
    sources: Sequence[Path], target: Path, codec: str, progress: Progress | None = None
) -> None:
    """Write the decompressed contents of ``sources``, in order, into ``target``; flush it.

    Raises:
        ValidationError: The codec is unknown or the data is not valid for it.
        MissingDependencyError: The codec's package is not installed.
    """
    suffix(codec)
    with open(target, "wb") as dst:
        for source in sources:
            with open(source, "rb") as src:
                _decompress(src, dst, source.name, codec, progress)
        dst.flush()
        os.fsync(dst.fileno())


def _decompress(
    src: BinaryIO, dst: BinaryIO, name: str, codec: str, progress: Progress | None
) -> None:
    bad_data: tuple[type[BaseException], ...] = (zlib.error, ValueError)
    if codec == "zstd":
        zstd = _zstd()
        decompressor = zstd.ZstdDecompressor().decompressobj()
        pull: Callable[[bytes], bytes] = decompressor.decompress
        bad_data = (*bad_data, zstd.ZstdError)
    elif codec == "lz4":
        frames = _Lz4Frames(_lz4())
        pull = frames.decompress
        bad_data = (*bad_data, RuntimeError)
    elif codec == "gzip":
        inflate = zlib.decompressobj(31)
        pull = inflate.decompress
    else:
        pull = bytes
    try:
        while block := src.read(CHUNK):
            dst.write(pull(block))
            if progress is not None:
                progress(len(block))
    except bad_data as exc:
        raise ValidationError(
            f"the backup file {name} is not valid {codec} data: {exc}",
            hint="the backup is damaged; run `arquivo backup verify` and use another one",
        ) from exc


class _Lz4Frames:
    """Decompresses a run of concatenated lz4 frames (one per compressed block)."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame
        self._current = frame.LZ4FrameDecompressor()

    def decompress(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            out.append(self._current.decompress(data))
            if not self._current.eof:
                break
            data = self._current.unused_data
            self._current = self._frame.LZ4FrameDecompressor()
        return b"".join(out)
