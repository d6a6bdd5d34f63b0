"""Parsing, normalising and displaying database URLs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from arquivo.errors import ConfigurationError

__all__ = ["hide_password", "normalize_url", "sqlite_path"]

# Drivers we ship and test. Anything else is refused up front rather than failing later
# in some code path that assumed one of these.
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_ALIASES = {"postgres", "postgresql", "postgresql+psycopg", "postgres+psycopg"}
_POSTGRES_DRIVER = "postgresql+psycopg"


def normalize_url(raw: str | URL) -> URL:
    """Return a validated SQLAlchemy URL for one of the supported databases.

    ``postgres://`` and ``postgresql://`` (the forms Heroku, Render or ``psql`` users
    paste) become ``postgresql+psycopg://`` so the psycopg 3 driver is used.

    Raises:
        ConfigurationError: The URL is empty, malformed or names an unsupported database.
    """
    if isinstance(raw, URL):
        url = raw
    else:
        text = raw.strip()
        if not text:
            raise ConfigurationError("DATABASE_URL is empty")
        if "://" not in text:
            raise ConfigurationError(
                f"DATABASE_URL {text!r} is not a URL",
                hint="a SQLite file is written sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db",
            )
        try:
            url = make_url(text)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(f"DATABASE_URL is not a valid URL: {exc}") from exc

    scheme = url.drivername.lower()
    if scheme in _SQLITE_DRIVERS:
        if url.host or url.username or url.password or url.port:
            raise ConfigurationError(
                "a SQLite URL takes no host, user or port",
                hint="use three slashes for a relative path (sqlite:///data/app.db) "
                "and four for an absolute one (sqlite:////var/lib/app.db)",
            )
        return url.set(drivername="sqlite")
    if scheme in _POSTGRES_ALIASES:
        if not url.database:
            raise ConfigurationError(
                f"the PostgreSQL URL {hide_password(url)} names no database",
                hint="append the database name: postgresql://user:password@host:5432/dbname",
            )
        return url.set(drivername=_POSTGRES_DRIVER)
    raise ConfigurationError(
        f"unsupported database {url.drivername!r} in DATABASE_URL",
        hint="Arquivo supports SQLite (sqlite:///file.db) and PostgreSQL "
        "(postgresql://user:password@host/dbname)",
    )


def hide_password(url: str | URL) -> str:
    """Render a URL for display with its password replaced by ``***``."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    if url.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)
