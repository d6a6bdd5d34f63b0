"""Alembic environment for Arquivo.

Run from code (``arquivo db ...``, or a store opening) the caller passes a live
connection, already inside the locked migration transaction, through
``config.attributes["connection"]``. Run by plain ``alembic`` from the repository root,
the database comes from ``sqlalchemy.url`` in alembic.ini if set, else from
``DATABASE_URL`` / ``.env``, and the same lock is taken here.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from arquivo.db.dialects import get_dialect
from arquivo.db.engine import create_engine
from arquivo.db.migrate import VERSION_TABLE, compare_type, include_name
from arquivo.models import Base
from arquivo.settings import Settings

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=get_dialect(connection.dialect.name).render_as_batch,
        compare_type=compare_type,
        compare_server_default=False,
    )


def _run_offline() -> None:
    settings = Settings.load()
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or settings.database_url,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    settings = Settings.load()
    engine = create_engine(
        config.get_main_option("sqlalchemy.url") or settings.database_url, settings
    )
    try:
        with get_dialect(engine.dialect.name).migration_connection(engine) as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
