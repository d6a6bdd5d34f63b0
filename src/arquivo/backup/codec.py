"""Compressing backup files: zstd when available, else gzip, or none.

Measured on a 118 MB SQLite file of chat messages on the 2-core build machine
(``benchmarks/backup.py`` repeats this): zstd level 1 compresses at about 134 MB/s to 24%
of the size and decompresses at about 150 MB/s; zlib level 1 manages 38 MB/s (28%) and
46 MB/s back; zstd level 3 halves the speed for 2 points of ratio; zstd's worker threads
only slow it down on a busy 2-core machine. So the default is zstd level 1 in one thread
(the ``zstandard`` package is a dependency), with gzip level 1 when it is missing.
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
            compressor = _zstd().ZstdCompressor(level=1).compressobj()
            push: Callable[[bytes], bytes] = compressor.compress
            end: Callable[[], bytes] = compressor.flush
        elif codec == "gzip":
            deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
            push, end = deflate.compress, deflate.flush
        else:
            push, end = bytes, bytes
        digest = hashlib.sha256()
        while block := src.read(CHUNK):
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
