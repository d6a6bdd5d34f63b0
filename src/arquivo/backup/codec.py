"""Compressing backup files: zstd when available, else gzip, or none.

Measured on a 300 MB SQLite file of chat messages on the 2-core build machine
(``benchmarks/backup.py`` repeats this): zstd level 1 costs about 4 CPU-seconds per GB
(230-290 MB per CPU-second) and compresses to 22% of the size; zlib level 1 is 3x slower
for a worse ratio; zstd's negative levels and tuned fast parameters gain at most 15% CPU
for 3-13 points of ratio, so level 1 stays. Compression is most of a backup's time, so it
runs in zstd's worker threads (one per CPU, up to 4) while this thread reads, hashes and
writes: with 4 processes writing to the database meanwhile, 2 workers cut the time by a
quarter to a third over one thread. gzip level 1 is the fallback when ``zstandard`` is
missing.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arquivo.backup.files import CHUNK
from arquivo.errors import MissingDependencyError, ValidationError

__all__ = ["CODECS", "compress_file", "decompress_file", "default_codec", "suffix"]

CODECS = ("zstd", "gzip", "none")
_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}

Progress = Callable[[int], None]

#: Read block while compressing: a few of zstd's jobs per call keeps its workers busy.
_COMPRESS_CHUNK = 4 * CHUNK


def _zstd_workers() -> int:
    """zstd worker threads: one per CPU (0, i.e. none, on a single CPU), at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if not cpus or cpus < 2 else min(cpus, 4)


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError as exc:
        raise MissingDependencyError(
            "this backup is compressed with zstd and the zstandard package is missing",
            hint="pip install zstandard",
        ) from exc
    return zstandard


def default_codec() -> str:
    """``zstd`` when the ``zstandard`` package is installed, else ``gzip``."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return "gzip"
    return "zstd"


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


def compress_file(source: Path, target: Path, codec: str, progress: Progress | None = None) -> str:
    """Write ``source`` compressed with ``codec`` into ``target`` and flush it to disk.

    Returns the hex SHA-256 of what was written (computed on the way, to spare a re-read).

    Args:
        source: The file to read.
        target: The file to create.
        codec: ``zstd``, ``gzip`` or ``none``.
        progress: Called with the number of source bytes consumed by each block.
    """
    suffix(codec)
    with open(source, "rb") as src, open(target, "wb") as dst:
        if codec == "zstd":
            zstd = _zstd().ZstdCompressor(level=1, threads=_zstd_workers())
            compressor = zstd.compressobj()
            push: Callable[[bytes], bytes] = compressor.compress
            end: Callable[[], bytes] = compressor.flush
        elif codec == "gzip":
            deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
            push, end = deflate.compress, deflate.flush
        else:
            push, end = bytes, bytes
        digest = hashlib.sha256()
        while block := src.read(_COMPRESS_CHUNK):
            out = push(block)
            digest.update(out)
            dst.write(out)
            if progress is not None:
                progress(len(block))
        out = end()
        digest.update(out)
        dst.write(out)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def decompress_file(
    source: Path, target: Path, codec: str, progress: Progress | None = None
) -> None:
    """Write the decompressed content of ``source`` into ``target`` and flush it to disk.

    Raises:
        ValidationError: The codec is unknown or the data is not valid for it.
        MissingDependencyError: The codec's package is not installed.
    """
    suffix(codec)
    with open(source, "rb") as src, open(target, "wb") as dst:
        bad_data: tuple[type[BaseException], ...] = (zlib.error, ValueError)
        if codec == "zstd":
            zstd = _zstd()
            decompressor = zstd.ZstdDecompressor().decompressobj()
            pull: Callable[[bytes], bytes] = decompressor.decompress
            bad_data = (*bad_data, zstd.ZstdError)
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
                f"the backup file {source.name} is not valid {codec} data: {exc}",
                hint="the backup is damaged; run `arquivo backup verify` and use another one",
            ) from exc
        dst.flush()
        os.fsync(dst.fileno())
