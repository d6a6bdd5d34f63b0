"""``store.backups``: create, list, verify, prune and restore backup sets."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine

from arquivo.backup import codec as codecs
from arquivo.backup import vectors
from arquivo.backup.across import check_across, restore_across, source_server
from arquivo.backup.base import Progress, backend_for, no_progress
from arquivo.backup.files import (
    fsync_dir,
    os_errors,
    remove_quietly,
)
from arquivo.backup.manifest import (
    MANIFEST,
    PARTIAL_PREFIX,
    BackupInfo,
    ComponentRecord,
    FileRecord,
    IncompleteBackup,
    check_files,
    new_backup_id,
    scan,
    validate_backup_id,
    write_manifest,
)
from arquivo.backup.migrating import check_revision
from arquivo.backup.reports import PruneReport, RestoreReport, VerifyReport
from arquivo.db.engine import create_engine
from arquivo.db.urls import hide_password, normalize_url
from arquivo.errors import (
    ConflictError,
    CorruptDatabaseError,
    NotFoundError,
    ValidationError,
)

__all__ = [
    "DEFAULT_BACKUP_DIR",
    "Backups",
    "PruneReport",
    "RestoreReport",
    "VerifyReport",
]

DEFAULT_BACKUP_DIR = "./data/backups"


def arquivo_version() -> str:
    """The installed Arquivo version (``0.0.0`` in a source tree never installed)."""
    try:
        return version("arquivo")
    except PackageNotFoundError:
        return "0.0.0"


class Backups:
    """Backup sets of one database, kept as folders in one directory.

    ``store.backups`` is bound to the store's database and to ``ARQUIVO_BACKUP_DIR``
    (default ``./data/backups``)::

        info = store.backups.create(label="before upgrade")
        store.backups.verify(info.id).ok
        store.backups.prune(keep_last=28, max_age=timedelta(days=30))
        store.backups.restore(info.id, to="sqlite:///data/copy.db")
    """

    def __init__(
        self,
        engine: Engine | None,
        directory: str | Path = DEFAULT_BACKUP_DIR,
        *,
        before_restore: Callable[[], None] | None = None,
        pg_bin_dir: str | None = None,
        chroma_path: str | Path | None = None,
    ) -> None:
        """Bind to a database and a backup directory.

        Args:
            engine: The database to back up (and the default restore target); ``None``
                for a manager of data-only backups.
            directory: Where backup folders live (created on first backup).
            before_restore: Called before the bound database itself is replaced (the
                store uses it to close its connections).
            pg_bin_dir: The folder of ``pg_dump``/``pg_restore`` (``ARQUIVO_PG_BIN_DIR``);
                searched for when omitted.
            chroma_path: The Chroma folder (``CHROMA_DB_PATH``) when the knowledge store
                is Chroma's embedded client: it joins every backup set and is restored
                with the database (see :mod:`arquivo.backup.vectors`).
        """
        self._pg_bin_dir = pg_bin_dir
        self._chroma_path = None if chroma_path is None else Path(chroma_path)
        self._engine = engine
        self._directory = Path(directory)
        self._before_restore = before_restore

    @property
    def directory(self) -> Path:
        """The folder holding the backups."""
        return self._directory

    @property
    def chroma_path(self) -> Path | None:
        """The Chroma folder included in each backup set, if any."""
        return self._chroma_path

    def _server_url(self) -> URL | None:
        return None if self._engine is None else self._engine.url

    def _bound(self) -> Engine:
        if self._engine is None:
            raise ValidationError(
                "this backup manager is not bound to a database",
                hint="open a store (Arquivo.open) and use store.backups",
            )
        return self._engine

    # -- creating ---------------------------------------------------------------------

    def create(
        self,
        *,
        label: str = "",
        codec: str | None = None,
        progress: Progress | None = None,
    ) -> BackupInfo:
        """Take a consistent backup of the database (writers may keep writing).

        With a Chroma folder configured, it is copied into the same backup set (a
        ``vectors`` component) while this process's writes to it are held.

        Args:
            label: A note kept in the manifest (``nightly``, ``before upgrade``...).
            codec: ``lz4``, ``zstd``, ``gzip`` or ``none`` (SQLite and the Chroma folder;
                default: lz4 when its package is installed, else zstd, else gzip).
            progress: Called as work advances (the CLI draws a progress bar).

        Raises:
            StorageFullError: The disk filled up; the partial backup was removed.
            MissingDependencyError: ``pg_dump`` is missing or older than the server.
        """
        engine = self._bound()
        chosen = codec if codec is not None else codecs.default_codec()
        codecs.suffix(chosen)
        backend = backend_for(engine.dialect.name, pg_bin_dir=self._pg_bin_dir)

        def write(folder: Path) -> tuple[str | None, dict[str, int], list[ComponentRecord]]:
            with vectors.writes_held(self._chroma_path):
                snap = backend.snapshot(engine, folder, chosen, progress or no_progress)
                parts = [snap.component, *self._vectors(folder, chosen, progress)]
            return snap.revision, snap.tables, parts

        return self._write_backup(
            label=label,
            backup_type="full",
            dialect=engine.dialect.name,
            source=hide_password(engine.url),
            write=write,
        )

    def _vectors(
        self, folder: Path, codec: str, progress: Progress | None
    ) -> list[ComponentRecord]:
        if self._chroma_path is None:
            return []
        part = vectors.snapshot_vectors(self._chroma_path, folder, codec, progress or no_progress)
        return [] if part is None else [part]

    def create_data(
        self, data: Mapping[str, Any], *, backup_type: str = "full", label: str = ""
    ) -> BackupInfo:
        """Back up a JSON-serialisable mapping (the seeds' ``BackupManager.backup_data``).

        Raises:
            ValidationError: ``data`` cannot be written as JSON.
        """
        try:
            payload = json.dumps(data, ensure_ascii=False, sort_keys=True, default=_jsonable)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"backup data is not JSON-serialisable: {exc}") from exc
        raw = payload.encode()
        keys = sorted(str(key) for key in data)

        def write(folder: Path) -> tuple[str | None, dict[str, int], list[ComponentRecord]]:
            plain = folder / "data.json.raw"
            try:
                with open(plain, "wb") as handle:
                    handle.write(raw)
                name = "data.json" + codecs.suffix("gzip")
                digest = codecs.compress_file(plain, folder / name, "gzip")
            finally:
                remove_quietly(plain)
            record = FileRecord(name, (folder / name).stat().st_size, digest)
            counts = {key: _size_of(data[key]) for key in keys}
            component = ComponentRecord("data", "json", (record,), "gzip", len(raw), {"keys": keys})
            return None, counts, [component]

        return self._write_backup(
            label=label, backup_type=backup_type, dialect=None, source="data", write=write
        )

    def _write_backup(
        self,
        *,
        label: str,
        backup_type: str,
        dialect: str | None,
        source: str,
        write: Callable[[Path], tuple[str | None, dict[str, int], list[ComponentRecord]]],
    ) -> BackupInfo:
        started = time.monotonic()
        now = datetime.now(UTC)
        backup_id = new_backup_id(now)
        partial = self._directory / f"{PARTIAL_PREFIX}{backup_id}-{os.getpid()}"
        final = self._directory / backup_id
        with os_errors(f"cannot create the backup folder in {self._directory}"):
            self._directory.mkdir(parents=True, exist_ok=True)
            partial.mkdir()
        try:
            revision, tables, components = write(partial)
            info = BackupInfo(
                id=backup_id,
                created_at=now,
                label=label,
                backup_type=backup_type,
                dialect=dialect,
                revision=revision,
                arquivo_version=arquivo_version(),
                source=source,
                tables=tables,
                components=tuple(components),
                size_bytes=sum(f.size_bytes for c in components for f in c.files),
                duration_s=time.monotonic() - started,
                path=partial,
            )
            # The manifest goes in last, and the folder gets its listed name only after:
            # a crash at any point before leaves a `.partial-*` folder that is never listed.
            write_manifest(info)
            with os_errors("cannot finish the backup"):
                fsync_dir(partial)
                os.rename(partial, final)
                fsync_dir(self._directory)
        except BaseException:
            remove_quietly(partial)
            raise
        return dataclasses.replace(info, path=final)

    # -- reading ----------------------------------------------------------------------

    def list(self) -> builtins.list[BackupInfo]:
        """The complete backups, newest first (interrupted ones are never listed)."""
        return scan(self._directory)[0]

    def incomplete(self) -> builtins.list[IncompleteBackup]:
        """Folders that are not complete backups: being written, or left by a crash."""
        return scan(self._directory)[1]

    def get(self, backup_id: str) -> BackupInfo:
        """One backup by id (``latest`` names the newest).

        Raises:
            ValidationError: The id could not be a backup's (e.g. ``../x``).
            NotFoundError: There is no complete backup with that id.
        """
        backups = self.list()
        if backup_id == "latest":
            if not backups:
                raise NotFoundError(
                    f"there are no backups in {self._directory}",
                    hint="create one with `arquivo backup create`",
                )
            return backups[0]
        validate_backup_id(backup_id)
        for info in backups:
            if info.id == backup_id:
                return info
        raise NotFoundError(
            f"no complete backup {backup_id!r} in {self._directory}",
            hint="`arquivo backup list` shows the backups (check ARQUIVO_BACKUP_DIR / --dir)",
        )

    def load_data(self, backup_id: str) -> dict[str, Any]:
        """The mapping a data backup (``BackupManager.backup_data``) holds, checksums checked.

        Raises:
            NotFoundError: No such backup, or it holds no data component.
            CorruptDatabaseError: Its files do not match their checksums.
        """
        info = self.get(backup_id)
        component = info.component("data")
        if component is None:
            raise NotFoundError(f"backup {backup_id} holds no data payload")
        problems = check_files(info)
        if problems:
            raise CorruptDatabaseError(f"backup {backup_id} is damaged: {problems[0]}")
        with tempfile.TemporaryDirectory(dir=self._directory, prefix=".load-") as scratch:
            plain = Path(scratch) / "data.json"
            codecs.decompress_file(info.path / component.files[0].path, plain, component.codec)
            loaded: dict[str, Any] = json.loads(plain.read_text(encoding="utf-8"))
        return loaded

    # -- checking ---------------------------------------------------------------------

    def verify(
        self, backup_id: str, *, restore: bool = True, progress: Progress | None = None
    ) -> VerifyReport:
        """Check a backup's files against their checksums, then restore it and check that.

        Args:
            backup_id: The backup (or ``latest``).
            restore: Also restore it into a throwaway database (a temporary file, or a
                temporary database on the same PostgreSQL server), run the integrity
                check and count every table against the manifest.
            progress: Called as work advances.
        """
        info = self.get(backup_id)
        problems = check_files(info)
        files = sum(len(c.files) for c in info.components)
        tables: dict[str, int] = {}
        collections: dict[str, int] = {}
        restored = False
        if not problems and restore and info.component(vectors.COMPONENT) is not None:
            try:
                with tempfile.TemporaryDirectory(dir=self._directory, prefix=".verify-") as tmp:
                    collections = vectors.verify_vectors(info, Path(tmp))
            except (CorruptDatabaseError, ValidationError) as exc:
                problems.append(exc.message)
        if not problems and restore and info.dialect is not None:
            backend = backend_for(info.dialect, pg_bin_dir=self._pg_bin_dir)
            try:
                with (
                    os_errors("cannot verify"),
                    tempfile.TemporaryDirectory(dir=self._directory, prefix=".verify-") as tmp,
                ):
                    tables = backend.verify(
                        info, Path(tmp), progress or no_progress, self._server_url()
                    )
                restored = True
            except (CorruptDatabaseError, ValidationError) as exc:
                problems.append(exc.message)
        elif not problems and info.component("data") is not None:
            try:
                self.load_data(info.id)
                restored = True
                tables = dict(info.tables)
            except ValueError as exc:
                problems.append(f"data payload is not valid JSON: {exc}")
        return VerifyReport(
            info.id, not problems, files, restored, tables, tuple(problems), collections
        )

    # -- retention --------------------------------------------------------------------

    def prune(
        self,
        *,
        keep_last: int | None = None,
        max_age: timedelta | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> PruneReport:
        """Delete backups beyond the newest ``keep_last`` or older than ``max_age``.

        Either rule removes a backup; the newest complete backup is never removed, so
        pruning cannot leave you with nothing. Folders of interrupted backups (whose
        writer is gone) are removed too.

        Args:
            keep_last: Keep at most this many backups (at least 1).
            max_age: Remove backups older than this.
            dry_run: Report what would be removed, remove nothing.
            now: The current time (for tests); default: now, UTC.

        Raises:
            ValidationError: Neither rule was given, or ``keep_last`` is below 1.
        """
        if keep_last is None and max_age is None:
            raise ValidationError(
                "prune needs a retention rule",
                hint="give --keep-last N and/or --max-age 30d",
            )
        if keep_last is not None and keep_last < 1:
            raise ValidationError(
                f"keep_last must be at least 1, not {keep_last}",
                hint="the newest backup is always kept; use --keep-last 1 to keep only it",
            )
        moment = now if now is not None else datetime.now(UTC)
        complete, incomplete = scan(self._directory)
        removed, kept = [], []
        for rank, info in enumerate(complete):
            too_many = keep_last is not None and rank >= keep_last
            too_old = max_age is not None and moment - info.created_at > max_age
            if rank > 0 and (too_many or too_old):
                removed.append(info)
            else:
                kept.append(info)
        garbage = [folder for folder in incomplete if not folder.in_progress]
        if not dry_run:
            for info in removed:
                _delete_backup(info.path)
            for folder in garbage:
                _delete_backup(folder.path)
        return PruneReport(tuple(removed), tuple(kept), tuple(garbage), dry_run)

    # -- restoring --------------------------------------------------------------------

    def restore(
        self,
        backup_id: str,
        *,
        to: str | URL | None = None,
        force: bool = False,
        dry_run: bool = False,
        if_db_not_exists: bool = False,
        via: str | URL | None = None,
        progress: Progress | None = None,
    ) -> RestoreReport:
        """Replace a database with a backup, safely.

        The backup's checksums are checked first. A target that holds rows is replaced
        only with ``force``, and then a safety backup of it is taken first (its id is in
        the report). The backup is restored beside the target, checked (integrity and row
        counts), migrated forward if it is older than the code, and swapped in atomically
        (a rename on SQLite, a database rename on PostgreSQL); a failure at any step
        leaves the target as it was.

        A backup restores into the other kind of database too (SQLite into PostgreSQL
        and back): it is rebuilt as a throwaway database of its own kind, and its rows
        go through the portable export into a fresh database swapped in the same way
        (see :mod:`arquivo.backup.across`).

        Args:
            backup_id: The backup (or ``latest``).
            to: The database to replace; default the store's own (this store is then
                closed: open a new one afterwards).
            force: Replace a database that holds rows.
            dry_run: Check everything, change nothing, report what would happen.
            if_db_not_exists: Do nothing (and succeed) when the target already exists.
            via: A PostgreSQL server to unpack a ``pg_dump`` backup on when restoring it
                into SQLite (default: the bound database's server, else the backup's).
            progress: Called as work advances.

        Raises:
            ConflictError: The target holds rows and ``force`` was not given.
            SchemaTooNewError: The backup was made by a newer Arquivo.
            CorruptDatabaseError: The backup fails its checksums or integrity check.
            StorageFullError: The disk filled up; the target is intact.
            DatabaseUnavailableError: Another process holds the SQLite target open.
        """
        started = time.monotonic()
        info = self.get(backup_id)
        if info.dialect is None:
            raise ValidationError(
                f"backup {info.id} is a data backup, not a database",
                hint="read it with BackupManager.load_data / store.backups.load_data",
            )
        check_revision(info)
        own = to is None
        url = self._bound().url if to is None else normalize_url(to)
        across = url.get_backend_name() != info.dialect
        problems = check_files(info)
        if problems:
            raise CorruptDatabaseError(
                f"backup {info.id} is damaged: {problems[0]}",
                hint="use another backup (`arquivo backup list`)",
            )
        backend = backend_for(info.dialect, pg_bin_dir=self._pg_bin_dir)
        server = None
        if across:
            server = source_server(
                info, None if via is None else normalize_url(via), self._server_url()
            )
            check_across(info, server, self._pg_bin_dir)
        state = backend_for(url.get_backend_name(), pg_bin_dir=self._pg_bin_dir).inspect_target(url)
        target = hide_password(url)
        chroma = None
        if self._chroma_path is not None and info.component(vectors.COMPONENT) is not None:
            chroma = vectors.inspect_vectors(self._chroma_path)

        def report(**changes: Any) -> RestoreReport:
            base = RestoreReport(
                info.id,
                target,
                dry_run,
                False,
                state.rows,
                None,
                None,
                dict(info.tables),
                time.monotonic() - started,
                "logical" if across else "physical",
                None if chroma is None else str(chroma.path.resolve()),
            )
            return dataclasses.replace(base, **changes)

        if state.exists and if_db_not_exists:
            return report(skipped=True)
        if state.rows != 0 and not force:
            held = "an unreadable database" if state.rows < 0 else f"{state.rows} rows"
            raise ConflictError(
                f"the target database {target} holds {held}; nothing was changed",
                hint="add --force to replace it (a safety backup of it is taken first)",
            )
        if chroma is not None and chroma.exists and not force:
            raise ConflictError(
                f"the Chroma folder {chroma.path} is not empty; nothing was changed",
                hint="add --force to replace it with the backup's (a safety backup of it "
                "is taken first)",
            )
        if dry_run:
            return report()
        safety = None
        if state.rows > 0 or (chroma is not None and chroma.exists):
            safety = self._safety_backup(url, info.id, database=state.rows != 0)
        # The store lets go of its connections, and of the Chroma folder's files.
        if (own or chroma is not None) and self._before_restore is not None:
            self._before_restore()
        with vectors.staged(info, None if chroma is None else chroma.path, progress) as swap:
            if not across:
                migrated_from = backend.restore(info, url, progress or no_progress)
            else:
                with os_errors("cannot restore"):
                    self._directory.mkdir(parents=True, exist_ok=True)
                migrated_from = restore_across(
                    info,
                    url,
                    scratch_dir=self._directory,
                    server=server,
                    pg_bin_dir=self._pg_bin_dir,
                    progress=progress or no_progress,
                )
            # The vectors were unpacked and checked before the database was swapped in;
            # their swap is one rename.
            swap()
        return report(safety_backup_id=safety, migrated_from=migrated_from)

    def _safety_backup(self, url: URL, backup_id: str, *, database: bool) -> str:
        label = f"pre-restore of {backup_id}"
        if not database:  # only the Chroma folder holds something
            return self._write_backup(
                label=label,
                backup_type="vectors",
                dialect=None,
                source=str(self._chroma_path),
                write=lambda at: (None, {}, self._vectors(at, codecs.default_codec(), None)),
            ).id
        engine = create_engine(url)
        try:
            safety = Backups(
                engine, self._directory, pg_bin_dir=self._pg_bin_dir, chroma_path=self._chroma_path
            ).create(label=label)
        finally:
            engine.dispose()
        return safety.id


def _delete_backup(path: Path) -> None:
    # The manifest goes first: a deletion cut short leaves garbage, never a listed
    # backup with missing files.
    remove_quietly(path / MANIFEST)
    remove_quietly(path)


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, (list, dict, tuple, str)) else 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
