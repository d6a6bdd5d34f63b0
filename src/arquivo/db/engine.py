"""Creating engines with the settings each database needs to be safe and fast."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import URL, Engine

from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.db.urls import normalize_url
from arquivo.settings import Settings

__all__ = ["create_engine", "ping"]


def create_engine(url: str | URL, settings: Settings | None = None, **overrides: Any) -> Engine:
    """Create a SQLAlchemy engine for a supported database URL.

    SQLite gets WAL, ``busy_timeout``, ``foreign_keys=ON``, the configured ``synchronous``
    level and write transactions that take the lock up front (``BEGIN IMMEDIATE``);
    PostgreSQL gets a sized pool with pre-ping and timeouts.

    Args:
        url: The database URL (``postgres://`` and ``postgresql://`` use psycopg 3).
        settings: Tuning options; the defaults when omitted (the environment is not read).
        **overrides: Extra keyword arguments for :func:`sqlalchemy.create_engine`.

    Raises:
        ConfigurationError: The URL is invalid or names an unsupported database.
        MissingDependencyError: The database's driver extra is not installed.
    """
    settings = settings if settings is not None else Settings.model_construct()
    parsed = normalize_url(url)
    support = get_dialect(parsed.get_backend_name())
    support.prepare(parsed)
    options = support.engine_options(parsed, settings)
    options.update(overrides)
    engine = sa.create_engine(parsed, echo=settings.echo, **options)
    support.install(engine, settings)
    return engine


def ping(engine: Engine) -> None:
    """Open one connection and run a trivial query, translating any failure.

    Raises:
        DatabaseUnavailableError: The server cannot be reached.
        CorruptDatabaseError: The SQLite file is not a healthy database.
    """
    with translate_errors(engine.dialect.name), engine.connect() as connection:
        connection.exec_driver_sql(get_dialect(engine.dialect.name).health_query)
