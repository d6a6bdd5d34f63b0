"""PostgreSQL backups: ``pg_dump -Fc`` of one snapshot; restores swapped in by renaming.

The manifest's row counts and revision are read in the very snapshot ``pg_dump`` dumps
(``pg_export_snapshot`` in a REPEATABLE READ transaction, then ``pg_dump --snapshot``),
so they describe the dump exactly while writers keep writing.

A restore never writes into the target: it creates a fresh database beside it, restores
there, checks and migrates it, and only then swaps the names in one transaction
(``ALTER DATABASE ... RENAME`` is transactional). A failure or a kill before the swap
leaves the target untouched (and at worst a ``*_arquivo_restore_*`` database to drop).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from arquivo.backup.base import (
    DatabaseBackend,
    Loader,
    Progress,
    Snapshot,
    TargetState,
    counts_differ,
    register,
)
from arquivo.backup.files import sha256_file
from arquivo.backup.manifest import BackupInfo, ComponentRecord, FileRecord
from arquivo.backup.migrating import migrate_to_head
from arquivo.backup.pgtools import connection_args, find_tool, run_tool, tool_major
from arquivo.db.dialects import translate_errors
from arquivo.db.migrate import VERSION_TABLE
from arquivo.errors import CorruptDatabaseError, DatabaseUnavailableError, ValidationError

__all__ = ["PostgresBackend"]

_DUMP = "database.pgdump"
# "database ... is being accessed by other users": a session came back before the rename.
_OBJECT_IN_USE = "55006"
_SWAP_ATTEMPTS = 5
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def _tables(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.exec_driver_sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
        "('pg_catalog', 'information_schema') AND left(table_schema, 8) <> 'pg_toast' "
        "ORDER BY table_schema, table_name"
    ).all()
    return [(str(schema), str(name)) for schema, name in rows]


def _count_rows(connection: Connection) -> dict[str, int]:
    counts = {}
    for schema, name in _tables(connection):
        key = name if schema == "public" else f"{schema}.{name}"
        quoted = f'"{schema}"."{name}"'
        counts[key] = int(connection.exec_driver_sql(f"SELECT count(*) FROM {quoted}").scalar_one())
    return counts


def _revision(connection: Connection) -> str | None:
    if ("public", VERSION_TABLE) not in _tables(connection):
        return None
    value = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    return None if value is None else str(value)


@contextlib.contextmanager
def _autocommit(url: URL) -> Iterator[Connection]:
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with translate_errors("postgresql"), engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _maintenance(url: URL) -> URL:
    # CREATE/DROP/RENAME DATABASE run from another database on the same server.
    return url.set(database="postgres")


def _server_major(connection: Connection) -> int:
    return int(connection.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10_000


def _temporary_name(url: URL) -> str:
    # Recognisable (a kill leaves one behind: drop it) and within the 63-byte limit.
    return f"{(url.database or 'db')[:40]}_arquivo_restore_{secrets.token_hex(4)}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@register
class PostgresBackend(DatabaseBackend):
    """PostgreSQL: ``pg_dump -Fc`` and ``pg_restore`` into a database swapped in by rename."""

    dialect = "postgresql"
    kind = "pg_dump"

    def snapshot(self, engine: Engine, folder: Path, codec: str, progress: Progress) -> Snapshot:
        """Dump the database in the snapshot its row counts were read in."""
        target = folder / _DUMP
        with translate_errors("postgresql"), engine.connect() as base:
            connection = base.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                server = _server_major(connection)
                pg_dump = find_tool("pg_dump", server, self.pg_bin_dir)
                snapshot_id = str(
                    connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                )
                revision = _revision(connection)
                tables = _count_rows(connection)
                raw_size = int(
                    connection.exec_driver_sql(
                        "SELECT pg_database_size(current_database())"
                    ).scalar_one()
                )
                progress(0, None, "pg_dump")
                conninfo, env = connection_args(engine.url)
                # Level 1: most of gzip's ratio at several times the speed of its default.
                run_tool(
                    [
                        str(pg_dump),
                        "--format=custom",
                        "--compress=1",
                        f"--snapshot={snapshot_id}",
                        f"--file={target}",
                        f"--dbname={conninfo}",
                    ],
                    env,
                    "pg_dump",
                )
        record = FileRecord(_DUMP, target.stat().st_size, sha256_file(target))
        component = ComponentRecord(
            name="database",
            kind=self.kind,
            files=(record,),
            codec="pg_dump",
            raw_size_bytes=raw_size,
            details={
                "server_major": server,
                "pg_dump": str(pg_dump),
                "pg_dump_major": tool_major(str(pg_dump)),
            },
        )
        return Snapshot(component, revision, tables)

    def inspect_target(self, url: URL) -> TargetState:
        """Whether the database exists on the server, and its rows."""
        with _autocommit(_maintenance(url)) as admin:
            exists = admin.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": url.database}
            ).scalar()
        if not exists:
            return TargetState(exists=False, rows=0)
        with _autocommit(url) as connection:
            counts = _count_rows(connection)
        counts.pop(VERSION_TABLE, None)
        return TargetState(exists=True, rows=sum(counts.values()))

    def _restore_into(self, info: BackupInfo, url: URL, progress: Progress) -> str:
        """Create a fresh database beside ``url``'s and restore the dump into it."""
        component = info.component("database")
        if component is None or component.kind != self.kind:
            raise ValidationError(f"backup {info.id} holds no pg_dump archive")
        name = _temporary_name(url)
        with _autocommit(_maintenance(url)) as admin:
            pg_restore = find_tool("pg_restore", _server_major(admin), self.pg_bin_dir)
            admin.exec_driver_sql(f"CREATE DATABASE {_quote(name)} TEMPLATE template0")
        try:
            progress(0, None, "pg_restore")
            conninfo, env = connection_args(url.set(database=name))
            run_tool(
                [
                    str(pg_restore),
                    "--exit-on-error",
                    "--no-owner",
                    "--no-acl",
                    f"--dbname={conninfo}",
                    str(info.path / component.files[0].path),
                ],
                env,
                "pg_restore",
            )
            progress(0, None, "checking")
            with _autocommit(url.set(database=name)) as connection:
                counts = _count_rows(connection)
            if counts != info.tables:
                differ = sorted(
                    k for k in set(counts) | set(info.tables) if counts.get(k) != info.tables.get(k)
                )
                raise CorruptDatabaseError(
                    f"the restored database's row counts differ from the manifest in: "
                    f"{', '.join(differ)}",
                    hint="the backup is damaged; use another one (`arquivo backup list`)",
                )
        except BaseException:
            self._drop(url, name)
            raise
        return name

    def _drop(self, url: URL, name: str) -> None:
        with _autocommit(_maintenance(url)) as admin:
            admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")

    def verify(
        self, info: BackupInfo, scratch: Path, progress: Progress, server: URL | None
    ) -> dict[str, int]:
        """Restore into a temporary database on ``server``, count its rows, drop it."""
        if server is None:
            raise ValidationError(
                f"verifying PostgreSQL backup {info.id} needs a server to restore it on",
                hint="run it with --url (or DATABASE_URL) naming a database on a server",
            )
        name = self._restore_into(info, server, progress)
        self._drop(server, name)
        return dict(info.tables)

    def restore(self, info: BackupInfo, url: URL, progress: Progress) -> str | None:
        """Restore beside the target, migrate, then swap the two names in one transaction."""
        name = self._restore_into(info, url, progress)
        try:
            migrated_from = migrate_to_head(url.set(database=name), info)
            self._swap(url, name)
        except BaseException:
            self._drop(url, name)
            raise
        return migrated_from

    def _swap(self, url: URL, name: str) -> None:
        target = url.database or ""
        old = f"{target[:40]}_arquivo_replaced_{secrets.token_hex(4)}"
        with _autocommit(_maintenance(url)) as admin:
            exists = admin.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": target}
            ).scalar()
            for attempt in range(_SWAP_ATTEMPTS):
                if exists:
                    # A database being accessed cannot be renamed: end its sessions. Not
                    # by first closing it to new connections (ALLOW_CONNECTIONS false): a
                    # kill between that and the renames would leave it unusable.
                    admin.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %(name)s AND pid <> pg_backend_pid()",
                        {"name": target},
                    )
                if self._renames(admin, target, name, old if exists else None):
                    break
                time.sleep(0.1 * (attempt + 1))
            else:
                raise DatabaseUnavailableError(
                    f"the database {target} kept getting new sessions; it was not replaced",
                    hint="stop the programs using it and run the restore again; "
                    "nothing was changed",
                )
            if exists:
                admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote(old)} WITH (FORCE)")

    @staticmethod
    def _renames(admin: Connection, target: str, name: str, old: str | None) -> bool:
        """Both renames in one transaction; ``False`` when sessions came back meanwhile.

        The transaction makes the two one step (the target name always names a complete
        database), and a kill before its commit leaves the server as it was.
        """
        admin.exec_driver_sql("BEGIN")
        try:
            if old is not None:
                admin.exec_driver_sql(f"ALTER DATABASE {_quote(target)} RENAME TO {_quote(old)}")
            admin.exec_driver_sql(f"ALTER DATABASE {_quote(name)} RENAME TO {_quote(target)}")
            admin.exec_driver_sql("COMMIT")
        except sa.exc.DBAPIError as exc:
            with contextlib.suppress(sa.exc.DBAPIError):
                admin.exec_driver_sql("ROLLBACK")
            if getattr(exc.orig, "sqlstate", None) == _OBJECT_IN_USE:
                return False
            raise
        except BaseException:
            with contextlib.suppress(sa.exc.DBAPIError):
                admin.exec_driver_sql("ROLLBACK")
            raise
        return True

    def check_scratch(self, info: BackupInfo, server: URL | None) -> None:
        """A server to unpack on must be known, reachable, and ``pg_restore`` installed."""
        server = self._need_server(info, server)
        with _autocommit(_maintenance(server)) as admin:
            find_tool("pg_restore", _server_major(admin), self.pg_bin_dir)

    @staticmethod
    def _need_server(info: BackupInfo, server: URL | None) -> URL:
        if server is None:
            raise ValidationError(
                f"backup {info.id} is a pg_dump archive: reading its rows needs a "
                "PostgreSQL server to unpack it on (a temporary database is created there)",
                hint="name one with --via postgresql://user@host/db (or set DATABASE_URL "
                "to a PostgreSQL database)",
            )
        return server

    @contextlib.contextmanager
    def _scratch(self, info: BackupInfo, progress: Progress, server: URL | None) -> Iterator[URL]:
        server = self._need_server(info, server)
        name = self._restore_into(info, server, progress)
        try:
            copy = server.set(database=name)
            migrate_to_head(copy, info)
            yield copy
        finally:
            self._drop(server, name)

    def scratch_copy(
        self, info: BackupInfo, scratch: Path, progress: Progress, server: URL | None
    ) -> contextlib.AbstractContextManager[URL]:
        """``pg_restore`` into a temporary database on ``server``; dropped after."""
        return self._scratch(info, progress, server)

    def replace_with(self, url: URL, load: Loader, expected: dict[str, int]) -> None:
        """Fill a fresh database beside the target, count its rows, swap the names."""
        name = _temporary_name(url)
        with _autocommit(_maintenance(url)) as admin:
            admin.exec_driver_sql(f"CREATE DATABASE {_quote(name)} TEMPLATE template0")
        try:
            fresh = url.set(database=name)
            load(fresh)
            with _autocommit(fresh) as connection:
                counts = _count_rows(connection)
            differ = counts_differ(counts, expected)
            if differ:
                raise CorruptDatabaseError(
                    f"the restored database's row counts differ from the backup in: "
                    f"{', '.join(differ)}; the target was not changed",
                    hint="verify the backup (`arquivo backup verify ID`) and report this",
                )
            self._swap(url, name)
        except BaseException:
            self._drop(url, name)
            raise
