"""The Chroma folder (``CHROMA_DB_PATH``) as a component of the backup set.

With the native knowledge backend the vectors are rows of the database and are in its
backup already. With Chroma's embedded client they live in a folder of their own: a
``chroma.sqlite3`` (collections, documents, metadata, and the write-ahead log of
embeddings) and one folder of HNSW index files per vector segment. That folder becomes a
``vectors`` component: a tar archive, compressed like the database, whose members are
each listed in the manifest with their size and SHA-256.

Consistency: the copy is taken while writes through this process's stores are held
(:func:`arquivo.knowledge.chroma.folder_lock`), ``chroma.sqlite3`` is copied with
SQLite's online backup API (one read transaction, never a torn page), the index files
are plain copies made while nothing writes them. Chroma's embedded client is meant to
be used by one process at a time; another process writing the same folder during a
backup is not paused (stop it, or back up from it). The index files may lag behind
``chroma.sqlite3`` (Chroma flushes them every ``hnsw:sync_threshold`` writes): Chroma
replays the difference from its log when it opens the folder, so a restored folder
answers like the original.

A Chroma *server* (``CHROMA_HOST``) is not in the backup set: its data lives on another
machine, under that server's own backup regime (back up its persist directory there).
Exporting its collections through the client API would copy every embedding over HTTP
on each backup and restore them by re-inserting (rebuilding every index), with no
snapshot isolation across collections; we chose to say so rather than ship a backup
that is neither consistent nor cheap. ``create`` records this in the manifest
(``vectors_note``) so that nobody believes otherwise.

Restore unpacks beside the target folder, opens the copy with Chroma to check that
every collection holds the counts the manifest recorded, then swaps the two folders in
one ``renameat2(RENAME_EXCHANGE)`` (three renames where that call is missing), after
the database has been swapped in: both are checked before either is replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arquivo.backup import codec as codecs
from arquivo.backup.base import Progress
from arquivo.backup.files import (
    exchange,
    fsync_dir,
    fsync_file,
    os_errors,
    remove_quietly,
    sha256_file,
)
from arquivo.backup.manifest import BackupInfo, ComponentRecord, FileRecord
from arquivo.errors import CorruptDatabaseError, MissingDependencyError, ValidationError

__all__ = [
    "COMPONENT",
    "KIND",
    "VectorTarget",
    "chroma_folder",
    "inspect_vectors",
    "snapshot_vectors",
    "staged",
    "verify_vectors",
    "writes_held",
]

COMPONENT = "vectors"
KIND = "chroma"
_SQLITE = "chroma.sqlite3"
_SIDE_FILES = ("-wal", "-shm", "-journal")


def chroma_folder(settings: Any) -> str | None:
    """The Chroma folder a store's backups include: ``CHROMA_DB_PATH`` when the knowledge
    backend is Chroma's embedded client (not a ``CHROMA_HOST`` server), else ``None``."""
    from arquivo.knowledge.settings import uses_chroma

    # The same choice the store makes (the seeds' CHROMA_DB_PATH alone selects Chroma).
    if not uses_chroma(settings) or settings.chroma_host:
        return None
    return str(settings.chroma_db_path)


@dataclass(frozen=True)
class VectorTarget:
    """A Chroma folder before a restore.

    Attributes:
        path: The folder.
        exists: It exists and holds files.
    """

    path: Path
    exists: bool


def inspect_vectors(path: str | Path) -> VectorTarget:
    """Whether the Chroma folder exists and holds anything."""
    folder = Path(path)
    exists = folder.is_dir() and any(folder.iterdir())
    return VectorTarget(folder, exists)


@contextlib.contextmanager
def _held(source: Path) -> Iterator[None]:
    # Imported here: the knowledge package (numpy...) is not needed by a plain backup.
    from arquivo.knowledge.chroma import folder_lock

    with folder_lock(source):
        yield


def _copy_sqlite(source: Path, target: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30.0)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        try:
            src.backup(dst)
        except sqlite3.DatabaseError as exc:
            raise CorruptDatabaseError(f"cannot read the Chroma database {source}: {exc}") from exc
        dst.execute("PRAGMA journal_mode=DELETE")


def _counts(sqlite_file: Path) -> dict[str, int]:
    """Chunks per collection, read from Chroma's own tables (best effort: {} if they differ)."""
    try:
        with contextlib.closing(sqlite3.connect(sqlite_file)) as connection:
            rows = connection.execute(
                "SELECT c.name, count(e.id) FROM collections c "
                "JOIN segments s ON s.collection = c.id AND s.scope = 'METADATA' "
                "LEFT JOIN embeddings e ON e.segment_id = s.id GROUP BY c.name"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {str(name): int(count) for name, count in rows}


def snapshot_vectors(
    source: str | Path, folder: Path, codec: str, progress: Progress
) -> ComponentRecord | None:
    """Copy the Chroma folder into the backup folder as one compressed archive.

    Returns ``None`` when there is no Chroma folder yet (nothing to back up).
    """
    source = Path(source)
    if not (source / _SQLITE).is_file():
        return None
    staging = folder / ".vectors"
    archive = folder / "vectors.chroma.tar"
    name = archive.name + codecs.suffix(codec)
    members: dict[str, dict[str, Any]] = {}
    try:
        with os_errors("cannot back up the Chroma folder"):
            progress(0, None, "copying vectors")
            with _held(source):
                for path in sorted(source.rglob("*")):
                    relative = path.relative_to(source)
                    copy = staging / relative
                    if path.is_dir():
                        copy.mkdir(parents=True, exist_ok=True)
                        continue
                    if path.name.startswith(_SQLITE) and path.name != _SQLITE:
                        continue  # its journal: the online backup below reads through it
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    if relative == Path(_SQLITE):
                        _copy_sqlite(path, copy)
                    else:
                        shutil.copyfile(path, copy)
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    key = path.relative_to(staging).as_posix()
                    members[key] = {"size_bytes": path.stat().st_size, "sha256": sha256_file(path)}
            counts = _counts(staging / _SQLITE)
            with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
                for key in members:
                    tar.add(staging / key, arcname=key, recursive=False)
            raw_size = archive.stat().st_size
            digest = codecs.compress_file(archive, folder / name, codec)
    finally:
        remove_quietly(staging)
        remove_quietly(archive)
    return ComponentRecord(
        name=COMPONENT,
        kind=KIND,
        files=(FileRecord(name, (folder / name).stat().st_size, digest),),
        codec=codec,
        raw_size_bytes=raw_size,
        details={"source": str(source.resolve()), "collections": counts, "members": members},
    )


def _unpack(info: BackupInfo, component: ComponentRecord, target: Path) -> None:
    """Decompress and extract the archive into ``target``, each member checked."""
    packed = info.path / component.files[0].path
    archive = target.with_name(target.name + ".tar")
    members: dict[str, Any] = component.details.get("members") or {}
    try:
        codecs.decompress_file(packed, archive, component.codec)
        target.mkdir(parents=True)
        with tarfile.open(archive, "r") as tar:
            names = sorted(m.name for m in tar.getmembers())
            if names != sorted(members):
                raise CorruptDatabaseError(
                    f"backup {info.id}: the vectors archive holds other files than its manifest"
                )
            # The "data" filter refuses absolute paths, links and escapes from target.
            tar.extractall(target, filter="data")
        for key, record in members.items():
            path = target / key
            if path.stat().st_size != record["size_bytes"] or sha256_file(path) != record["sha256"]:
                raise CorruptDatabaseError(
                    f"backup {info.id}: the vectors file {key} does not match its checksum"
                )
    finally:
        remove_quietly(archive)


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingDependencyError(
            "checking a backup of the Chroma folder needs chromadb, which is not installed",
            hint="pip install 'arquivo[chroma]'",
        ) from exc
    return chromadb


def _chroma_counts(folder: Path) -> dict[str, int]:
    """Open the folder with Chroma itself and count every collection."""
    chromadb = _chromadb()
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(folder), settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        counts = {}
        for entry in client.list_collections():
            name = entry if isinstance(entry, str) else entry.name
            counts[str(name)] = int(client.get_collection(name, embedding_function=None).count())
        return counts
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def _check(info: BackupInfo, component: ComponentRecord, folder: Path) -> dict[str, int]:
    expected: dict[str, int] = component.details.get("collections") or {}
    _chromadb()
    from chromadb.errors import ChromaError

    try:
        found = _chroma_counts(folder)
    except (ChromaError, ValueError, RuntimeError, OSError, sqlite3.Error) as exc:
        raise CorruptDatabaseError(
            f"backup {info.id}: Chroma cannot open the restored vectors: {exc}",
            hint="the backup is damaged; use another one (`arquivo backup list`)",
        ) from exc
    if expected and found != expected:
        raise CorruptDatabaseError(
            f"backup {info.id}: the restored collections hold {found}, the manifest {expected}",
            hint="the backup is damaged; use another one (`arquivo backup list`)",
        )
    return found


def verify_vectors(info: BackupInfo, scratch: Path) -> dict[str, int]:
    """Unpack the vectors into ``scratch``, open them with Chroma, compare the counts.

    Returns the chunks per collection found.

    Raises:
        CorruptDatabaseError: A file or a count does not match, or Chroma cannot open it.
    """
    component = info.component(COMPONENT)
    if component is None or component.kind != KIND:
        raise ValidationError(f"backup {info.id} holds no Chroma folder")
    target = scratch / "chroma"
    try:
        _unpack(info, component, target)
        return _check(info, component, target)
    finally:
        remove_quietly(target)


@contextlib.contextmanager
def staged(
    info: BackupInfo, path: str | Path | None, progress: Progress | None
) -> Iterator[Callable[[], None]]:
    """Unpack and check the backup's Chroma folder beside ``path``; yield its swap.

    The block restores the database, then calls the yielded function, which exchanges
    the checked folder with the one at ``path`` in one rename (the old one is deleted
    when the block ends). A failure before the call leaves ``path`` as it was. With
    ``path`` ``None`` (no Chroma folder to restore) the function does nothing. No
    Chroma client of this process may have ``path`` open (a store restoring its own
    data closes itself first).

    Raises:
        CorruptDatabaseError: A file or a count does not match, or Chroma cannot open it.
    """
    if path is None:
        yield lambda: None
        return
    component = info.component(COMPONENT)
    if component is None or component.kind != KIND:
        raise ValidationError(f"backup {info.id} holds no Chroma folder")
    report = progress or (lambda done, total, what: None)
    target = Path(path).resolve()
    temp = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")

    def swap() -> None:
        with os_errors(f"cannot replace the Chroma folder {target}"):
            if target.exists():
                exchange(temp, target)  # temp now holds the old folder, deleted below
            else:
                os.rename(temp, target)
            fsync_dir(target.parent)

    try:
        with os_errors(f"cannot restore the Chroma folder {target}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            report(0, None, "unpacking vectors")
            _unpack(info, component, temp)
            report(0, None, "checking vectors")
            _check(info, component, temp)
            for item in sorted(temp.rglob("*"), reverse=True):
                (fsync_file if item.is_file() else fsync_dir)(item)
            fsync_dir(temp)
        yield swap
    finally:
        remove_quietly(temp)


@contextlib.contextmanager
def writes_held(path: str | Path | None) -> Iterator[None]:
    """Hold this process's writes to the Chroma folder ``path`` (nothing when ``None``)."""
    if path is None:
        yield
        return
    with _held(Path(path)):
        yield
