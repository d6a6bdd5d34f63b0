"""Restoring a backup into a database of the other kind (SQLite <-> PostgreSQL).

A physical backup only restores onto its own kind of database (a SQLite file, or a
``pg_dump`` archive). To cross over, the backup is rebuilt as a throwaway database of
its own kind (a scratch file, or a temporary database on a PostgreSQL server), checked
against the manifest and migrated to the code's schema; its rows then go through the
portable export (:mod:`arquivo.portability`) into a fresh database beside the target,
which is checked and swapped in exactly as a same-kind restore is (a rename of the file,
or of the database). Nothing is written into the target itself, so a failure or a kill
at any step leaves it as it was.

A ``pg_dump`` archive can only be read by PostgreSQL, so restoring one into SQLite
needs a server to unpack it on (``via``; by default the bound database's server, else
the server the backup came from).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from arquivo.backup.base import Progress, backend_for, counts_differ
from arquivo.backup.files import os_errors
from arquivo.backup.manifest import BackupInfo
from arquivo.db import migrate
from arquivo.db.engine import create_engine
from arquivo.errors import CorruptDatabaseError

if TYPE_CHECKING:
    from arquivo.portability import Progress as RowProgress
    from arquivo.store import Arquivo

__all__ = ["check_across", "restore_across", "source_server"]


def source_server(info: BackupInfo, via: URL | None, bound: URL | None) -> URL | None:
    """The PostgreSQL server to unpack a backup on, when it needs one.

    ``via`` when given; else the bound database's URL when it is on a server; else the
    server the backup was taken from (its password is not in the manifest: libpq finds
    it in ``PGPASSWORD`` or ``~/.pgpass``, or the server needs none).
    """
    if via is not None:
        return via
    if bound is not None and bound.get_backend_name() == info.dialect:
        return bound
    try:
        source = make_url(info.source)
    except (ArgumentError, ValueError):  # "data", or a URL this SQLAlchemy cannot parse
        return None
    if source.get_backend_name() != info.dialect or not source.database:
        return None
    # hide_password() wrote "***" in its place: that is not the password.
    return source.set(password=None) if source.password == "***" else source


def check_across(info: BackupInfo, server: URL | None, pg_bin_dir: str | None) -> None:
    """Check, before anything is written, that the backup can be unpacked here.

    Raises:
        ValidationError: A server is needed and none is known.
        MissingDependencyError: A tool the unpacking needs (``pg_restore``) is missing.
    """
    assert info.dialect is not None
    backend_for(info.dialect, pg_bin_dir=pg_bin_dir).check_scratch(info, server)


def _open(url: URL) -> Arquivo:
    # Not Arquivo.open: that reads the environment (ARQUIVO_AUTO_MIGRATE=false would
    # refuse the fresh database); this store is ours alone and is migrated right here.
    from arquivo.store import Arquivo

    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "head")
    except BaseException:
        engine.dispose()
        raise
    return Arquivo(engine, owns_engine=True)


def restore_across(
    info: BackupInfo,
    url: URL,
    *,
    scratch_dir: Path,
    server: URL | None,
    pg_bin_dir: str | None,
    progress: Progress,
) -> str | None:
    """Replace the database at ``url`` (of another kind) with the backup's rows.

    Returns the revision the backup was migrated from, or ``None`` when it was at head.

    Raises:
        CorruptDatabaseError: The backup, or the database rebuilt from it, fails a check.
        ValidationError: The backup needs a server to be unpacked and none is known.
        StorageFullError: The disk filled up; the target is intact.
    """
    from arquivo.portability import export_data, import_data

    assert info.dialect is not None
    source = backend_for(info.dialect, pg_bin_dir=pg_bin_dir)
    target = backend_for(url.get_backend_name(), pg_bin_dir=pg_bin_dir)

    def rows_progress(step: RowProgress) -> None:
        progress(step.done, step.total, f"{step.stage} {step.table}"[:30])

    with (
        os_errors("cannot restore across databases"),
        tempfile.TemporaryDirectory(dir=scratch_dir, prefix=".across-") as tmp,
    ):
        rows = Path(tmp) / "rows.jsonl"
        with (
            source.scratch_copy(info, Path(tmp), progress, server) as copy,
            _open(copy) as store,
        ):
            exported = dict(export_data(store, rows, progress=rows_progress).rows)
        if info.revision == migrate.head_revision():
            # Same schema as the manifest's counts: the export must hold every row.
            manifest = {k: v for k, v in info.tables.items() if k in exported}
            differ = counts_differ(exported, manifest)
            if differ:
                raise CorruptDatabaseError(
                    f"the rows read from backup {info.id} differ from its manifest in: "
                    f"{', '.join(differ)}; nothing was changed",
                    hint="verify the backup (`arquivo backup verify ID`); use another one",
                )

        def load(fresh: URL) -> None:
            with _open(fresh) as store:
                import_data(store, rows, atomic=True, progress=rows_progress)

        progress(0, None, "importing")
        target.replace_with(url, load, exported)
    return None if info.revision == migrate.head_revision() else (info.revision or "base")
