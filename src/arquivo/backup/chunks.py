"""A SQLite snapshot written as chunk files, sharing the unchanged ones with the last backup.

Why chunks: compressing is most of a backup's cost (about 1.9 CPU-seconds per GB with
lz4 on the build machine), and between two scheduled backups of a chat database most of
the file does not change: new messages land at its end and in a few index pages. So the
file is cut into 4 MiB chunks, each compressed into a file of its own. The next backup
decompresses the newest earlier backup's chunk at the same place (about 0.8 CPU-seconds
per GB with lz4) and, where the bytes are the same, hard-links that file instead of
compressing the chunk again.

Why compare bytes rather than keep a hash of each chunk: hashing every chunk would cost
every backup, the first included, 0.65 CPU-seconds per GB (a first backup measured 24%
slower); comparing costs only the backups that have something to share, needs nothing in
the manifest, and never links a file whose content is not exactly the chunk's (a damaged
parent file simply does not match).

Each backup folder still stands alone: a hard link is a file like any other, so pruning
or copying one backup never breaks another, and ``verify`` checks every file's
checksum, shared or not. A file system without hard links (or a parent file that is
missing or has the wrong size) only costs the compression it would have saved.
"""

from __future__ import annotations

import collections
import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arquivo.backup import codec as codecs
from arquivo.backup.manifest import BackupInfo, FileRecord, scan

__all__ = ["CHUNK_BYTES", "Chunk", "Parent", "chunk_name", "write_chunks"]

#: Bytes per chunk: one lz4 frame of its largest block size.
CHUNK_BYTES = codecs.COMPRESS_CHUNK

#: Reads a chunk: (offset, size) -> its bytes (a view of a mapped file, or a read).
Reader = Callable[[int, int], "bytes | memoryview"]


def chunk_name(index: int, codec: str) -> str:
    """The file name of chunk ``index`` (``database.000012.sqlite.lz4``)."""
    return f"database.{index:06d}.sqlite{codecs.suffix(codec)}"


@dataclass(frozen=True)
class Chunk:
    """One chunk as written.

    Attributes:
        record: Its file, with size and checksum.
        shared: Whether the file is a hard link to the parent backup's.
    """

    record: FileRecord
    shared: bool


class Parent:
    """The chunk files of an earlier backup that a new one may link to.

    Args:
        info: The earlier backup (its ``database`` component is in chunks).
    """

    def __init__(self, info: BackupInfo) -> None:
        component = info.component("database")
        assert component is not None
        self.id = info.id
        self._folder = info.path
        self._files = dict(enumerate(component.files))
        self._decompress = codecs.block_decompressor(component.codec)

    @classmethod
    def newest(cls, root: Path, codec: str) -> Parent | None:
        """The newest complete backup in ``root`` in chunks of this codec and size."""
        for info in scan(root)[0]:
            component = info.component("database")
            if component is None or component.kind != "sqlite" or component.codec != codec:
                continue
            if component.details.get("chunk_bytes") != CHUNK_BYTES:
                continue
            return cls(info)
        return None

    def link(self, index: int, block: bytes | memoryview, target: Path) -> FileRecord | None:
        """Hard-link the parent's chunk ``index`` to ``target`` if it holds ``block``.

        Returns its record, or ``None`` when there is nothing to share (the chunk
        changed, or the parent's file is missing, damaged, or cannot be linked).
        """
        record = self._files.get(index)
        if record is None:
            return None
        source = self._folder / record.path
        try:
            with open(source, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size != record.size_bytes:
                    return None
                packed = handle.read()
            if self._decompress(packed) != block:
                return None
            os.link(source, target)
        except Exception:  # noqa: BLE001 (unreadable or undecodable: compress it anew)
            return None
        return FileRecord(target.name, record.size_bytes, record.sha256)


def write_chunks(
    read: Reader,
    size: int,
    folder: Path,
    codec: str,
    parent: Parent | None,
    workers: int,
    progress: Callable[[int], None],
) -> list[Chunk]:
    """Write ``size`` bytes as chunk files in ``folder`` and flush the new ones to disk.

    The work of each chunk (hash, then link or compress and write) runs on ``workers``
    threads; ``read`` is called on the calling thread, in order. Whatever ``read``
    returned is no longer used once this returns or raises.
    """
    compress = codecs.block_compressor(codec)
    pending: collections.deque[Future[Chunk]] = collections.deque()
    done: list[Chunk] = []
    pool = ThreadPoolExecutor(max(1, workers), "arquivo-chunks")
    try:
        for index, offset in enumerate(range(0, size, CHUNK_BYTES)):
            block = read(offset, min(CHUNK_BYTES, size - offset))
            target = folder / chunk_name(index, codec)
            pending.append(pool.submit(_one_chunk, index, block, target, compress, parent))
            while len(pending) > 2 * workers:
                done.append(pending.popleft().result())
                progress(min(len(done) * CHUNK_BYTES, size))
        while pending:
            done.append(pending.popleft().result())
            progress(min(len(done) * CHUNK_BYTES, size))
        # Shared files are already on disk; the new ones are flushed together (a file
        # system batches concurrent flushes into fewer journal commits).
        fresh = [folder / chunk.record.path for chunk in done if not chunk.shared]
        list(pool.map(_flush, fresh))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done


def _one_chunk(
    index: int,
    block: bytes | memoryview,
    target: Path,
    compress: Callable[[Any], bytes],
    parent: Parent | None,
) -> Chunk:
    if parent is not None:
        record = parent.link(index, block, target)
        if record is not None:
            return Chunk(record, shared=True)
    packed = compress(block)
    with open(target, "xb") as out:
        out.write(packed)
    record = FileRecord(target.name, len(packed), hashlib.sha256(packed).hexdigest())
    return Chunk(record, shared=False)


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
