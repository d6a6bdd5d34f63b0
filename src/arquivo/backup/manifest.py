"""The backup set on disk: one folder per backup, described by a ``manifest.json``.

Layout of a backup directory::

    data/backups/
      20261126T011500Z-3fa2c1/        a complete backup: its manifest was written last
        manifest.json
        database.000000.sqlite.lz4    a SQLite database, in 4 MiB chunks (``chunks``):
        database.000001.sqlite.lz4    unchanged ones are hard links to the last backup's
      .partial-20261126T013000Z-9b0d2e-4242/   being written by process 4242 (or left by a
                                                crash: garbage that ``prune`` removes)

A backup is made in a ``.partial-*`` folder, its manifest is written into it last (to a
temporary name, flushed, renamed), and only then is the folder renamed to its id. So a
folder whose name is an id always holds a complete manifest, and listing never shows a
half-written backup.

The manifest describes a list of *components*, each a set of files with sizes and
checksums: the database dump today, and the vector store (its own component kind) when it
joins the backup set; a reader skips component kinds it does not know.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arquivo.backup.files import atomic_write_bytes, os_errors, sha256_file
from arquivo.errors import ValidationError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "PARTIAL_PREFIX",
    "BackupInfo",
    "ComponentRecord",
    "FileRecord",
    "IncompleteBackup",
    "check_files",
    "new_backup_id",
    "read_manifest",
    "scan",
    "validate_backup_id",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class FileRecord:
    """One file of a backup component.

    Attributes:
        path: Its name inside the backup folder.
        size_bytes: Its size on disk.
        sha256: The hex SHA-256 of its content.
    """

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ComponentRecord:
    """One part of a backup set (the database, later the vector store).

    Attributes:
        name: What it holds: ``database``, ``data`` (a ``BackupManager`` payload),
            ``vectors``...
        kind: How it was made, which says how to restore it: ``sqlite`` (an online-backup
            snapshot), ``pg_dump`` (custom format), ``json``...
        files: Its files, with sizes and checksums.
        codec: The compression of its files: ``lz4``, ``zstd``, ``gzip`` or ``none``.
        raw_size_bytes: Its size before compression.
        details: Kind-specific facts (tool versions, source paths...).
    """

    name: str
    kind: str
    files: tuple[FileRecord, ...]
    codec: str = "none"
    raw_size_bytes: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupInfo:
    """A complete backup, as its manifest describes it.

    Attributes:
        id: Its identifier, also its folder's name (``20261126T011500Z-3fa2c1``).
        created_at: When the snapshot was taken (UTC).
        label: A free-text note given at creation (``pre-restore``, ``nightly``...).
        backup_type: ``full`` for a database backup, or what ``BackupManager.backup_data``
            was given.
        dialect: ``sqlite`` or ``postgresql``; ``None`` for a data-only backup.
        revision: The Alembic revision of the backed-up schema.
        arquivo_version: The Arquivo version that wrote it.
        source: Where it came from (a URL with its password hidden).
        tables: Row counts per table, in the snapshot.
        components: Its parts (see :class:`ComponentRecord`).
        size_bytes: Total size of its files.
        duration_s: How long it took to make.
        path: Its folder.
    """

    id: str
    created_at: datetime
    label: str
    backup_type: str
    dialect: str | None
    revision: str | None
    arquivo_version: str
    source: str
    tables: dict[str, int]
    components: tuple[ComponentRecord, ...]
    size_bytes: int
    duration_s: float
    path: Path

    def component(self, name: str) -> ComponentRecord | None:
        """The component called ``name``, if the backup has one."""
        return next((c for c in self.components if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON values (what ``manifest.json`` holds, plus the path)."""
        return {
            "format": FORMAT_VERSION,
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "label": self.label,
            "backup_type": self.backup_type,
            "dialect": self.dialect,
            "revision": self.revision,
            "arquivo_version": self.arquivo_version,
            "source": self.source,
            "tables": dict(self.tables),
            "components": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "codec": c.codec,
                    "raw_size_bytes": c.raw_size_bytes,
                    "details": dict(c.details),
                    "files": [
                        {"path": f.path, "size_bytes": f.size_bytes, "sha256": f.sha256}
                        for f in c.files
                    ],
                }
                for c in self.components
            ],
            "size_bytes": self.size_bytes,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class IncompleteBackup:
    """A folder in the backup directory that is not a complete backup.

    Attributes:
        path: The folder.
        reason: Why it is not a backup (``being written by process 42``, ``no manifest``...).
        in_progress: A live process is still writing it; ``prune`` leaves it alone.
    """

    path: Path
    reason: str
    in_progress: bool


def new_backup_id(now: datetime) -> str:
    """A fresh id: the UTC time to the second, then random hex (sorts by time)."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def validate_backup_id(backup_id: str) -> str:
    """Check that ``backup_id`` names a folder directly inside the backup directory.

    Raises:
        ValidationError: It is empty, too long, or could escape the folder
            (``..``, slashes, a leading dot).
    """
    if not isinstance(backup_id, str) or not _ID.match(backup_id) or ".." in backup_id:
        raise ValidationError(
            f"{backup_id!r} is not a backup id",
            hint="backup ids look like 20261126T011500Z-3fa2c1; `arquivo backup list` shows them",
        )
    return backup_id


def write_manifest(info: BackupInfo) -> None:
    """Write ``info`` as the folder's ``manifest.json``, atomically and durably."""
    data = json.dumps(info.to_dict(), indent=2, ensure_ascii=False).encode()
    with os_errors("cannot write the backup manifest"):
        atomic_write_bytes(info.path / MANIFEST, data + b"\n")


def read_manifest(folder: Path) -> BackupInfo:
    """Parse a backup folder's manifest.

    Raises:
        ValueError: The manifest is missing fields or has values of the wrong type.
        OSError: It cannot be read.
    """
    raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION:
        raise ValueError("unknown manifest format")
    components = tuple(
        ComponentRecord(
            name=str(c["name"]),
            kind=str(c["kind"]),
            codec=str(c.get("codec", "none")),
            raw_size_bytes=int(c.get("raw_size_bytes", 0)),
            details=dict(c.get("details") or {}),
            files=tuple(
                FileRecord(path=str(f["path"]), size_bytes=int(f["size_bytes"]), sha256=f["sha256"])
                for f in c["files"]
            ),
        )
        for c in raw["components"]
    )
    created = datetime.fromisoformat(raw["created_at"])
    return BackupInfo(
        id=validate_backup_id(str(raw["id"])),
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        label=str(raw.get("label") or ""),
        backup_type=str(raw.get("backup_type") or "full"),
        dialect=raw.get("dialect"),
        revision=raw.get("revision"),
        arquivo_version=str(raw.get("arquivo_version") or ""),
        source=str(raw.get("source") or ""),
        tables={str(k): int(v) for k, v in (raw.get("tables") or {}).items()},
        components=components,
        size_bytes=int(raw.get("size_bytes", 0)),
        duration_s=float(raw.get("duration_s", 0.0)),
        path=folder,
    )


def check_files(info: BackupInfo) -> list[str]:
    """Compare every file of a backup with its manifest record; one line per problem."""
    problems = []
    for component in info.components:
        for record in component.files:
            path = info.path / record.path
            if Path(record.path).name != record.path:
                problems.append(f"{record.path}: not a plain file name")
            elif not path.is_file():
                problems.append(f"{record.path}: missing")
            elif path.stat().st_size != record.size_bytes:
                problems.append(
                    f"{record.path}: {path.stat().st_size} bytes, manifest says {record.size_bytes}"
                )
            elif sha256_file(path) != record.sha256:
                problems.append(f"{record.path}: checksum mismatch (the file was altered)")
    return problems


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scan(directory: Path) -> tuple[list[BackupInfo], list[IncompleteBackup]]:
    """The complete backups in ``directory`` (newest first) and the folders that are not."""
    complete: list[BackupInfo] = []
    incomplete: list[IncompleteBackup] = []
    # A name the OS refuses (too long, say) raises from is_dir(), not only from reads.
    with os_errors("cannot read the backup folder"):
        if not directory.is_dir():
            return complete, incomplete
        entries = sorted(directory.iterdir())
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink():
            continue
        if entry.name.startswith(PARTIAL_PREFIX):
            pid_text = entry.name.rsplit("-", 1)[-1]
            pid = int(pid_text) if pid_text.isdigit() else -1
            # A live writer owns it, unless the pid was reused by some other process
            # after a crash: a day-old partial is garbage whoever holds its pid now.
            age = datetime.now(UTC).timestamp() - entry.stat().st_mtime
            live = pid > 0 and _alive(pid) and age < 86_400
            reason = f"being written by process {pid}" if live else "left by an interrupted backup"
            incomplete.append(IncompleteBackup(entry, reason, in_progress=live))
            continue
        if entry.name.startswith("."):
            continue
        try:
            info = read_manifest(entry)
        except FileNotFoundError:
            incomplete.append(IncompleteBackup(entry, "no manifest", in_progress=False))
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            incomplete.append(IncompleteBackup(entry, f"unreadable manifest: {exc}", False))
            continue
        if info.id != entry.name:
            incomplete.append(IncompleteBackup(entry, "manifest names another id", False))
            continue
        complete.append(info)
    complete.sort(key=lambda b: (b.created_at, b.id), reverse=True)
    return complete, incomplete
