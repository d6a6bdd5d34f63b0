"""The interface each supported database implements.

Everything that differs between SQLite and PostgreSQL is a method here, so the rest of
the code base never asks which database it is talking to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from arquivo.errors import ArquivoError
from arquivo.settings import Settings

__all__ = ["READ_ONLY_OPTION", "DialectSupport"]

# Execution option marking a transaction that will only read. SQLite then starts a
# deferred transaction (no write lock); PostgreSQL a READ ONLY one.
READ_ONLY_OPTION = "arquivo_read_only"


class DialectSupport:
    """Behaviour of one database family; subclasses are registered by dialect name."""

    name: ClassVar[str]
    #: A cheap query that fails if the database is unreachable or unreadable.
    health_query: ClassVar[str] = "SELECT 1"

    def prepare(self, url: URL) -> None:
        """Do what must happen before the first connection (e.g. create a folder)."""

    def engine_options(self, url: URL, settings: Settings) -> dict[str, Any]:
        """Keyword arguments for :func:`sqlalchemy.create_engine`."""
        raise NotImplementedError

    def install(self, engine: Engine, settings: Settings) -> None:
        """Attach connection and transaction event hooks to a new engine."""

    def read_only_options(self) -> dict[str, Any]:
        """Execution options that make a connection's transactions read-only."""
        return {READ_ONLY_OPTION: True}

    #: Alembic's ``render_as_batch``: rebuild tables for ALTERs the database lacks.
    render_as_batch: ClassVar[bool] = False

    @contextlib.contextmanager
    def migration_connection(self, engine: Engine) -> Iterator[Connection]:
        """A connection inside one transaction that no other migrator can enter.

        Migrations run entirely inside it, so a failure leaves the schema as it was, and
        a second process that opens a fresh database at the same moment waits, then
        finds the work done.
        """
        with engine.begin() as connection:
            self.lock_for_migration(connection)
            yield connection

    def lock_for_migration(self, connection: Connection) -> None:
        """Block other migrators until the connection's transaction ends."""

    def translate(self, exc: DBAPIError) -> ArquivoError | None:
        """Map a driver error to an Arquivo error, or ``None`` to leave it alone."""
        return None

    def database_size(self, engine: Engine) -> int | None:
        """Bytes the database takes on disk, when that can be known."""
        return None
