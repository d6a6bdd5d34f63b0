"""The registry of supported databases, keyed by SQLAlchemy dialect name.

``get_dialect(engine.dialect.name)`` is the only place the code base branches on which
database it is talking to; the answers live in one module per database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from arquivo.db.dialects.base import READ_ONLY_OPTION, DialectSupport
from arquivo.db.dialects.postgresql import PostgresSupport
from arquivo.db.dialects.sqlite import SqliteSupport
from arquivo.errors import ArquivoError, DatabaseUnavailableError

__all__ = ["READ_ONLY_OPTION", "DialectSupport", "get_dialect", "translate_errors"]

_REGISTRY: dict[str, DialectSupport] = {
    support.name: support for support in (SqliteSupport(), PostgresSupport())
}


def get_dialect(name: str) -> DialectSupport:
    """Return the support object for a SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ArquivoError(f"no Arquivo support for the {name!r} dialect") from None


@contextlib.contextmanager
def translate_errors(dialect_name: str) -> Iterator[None]:
    """Re-raise driver errors raised inside the block as :class:`ArquivoError` subclasses.

    Errors with no specific meaning pass through unchanged, so nothing is ever hidden.
    """
    try:
        yield
    except sa_exc.DBAPIError as exc:
        translated = None if exc.orig is None else get_dialect(dialect_name).translate(exc.orig)
        if translated is None:
            raise
        raise translated from exc
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailableError(
            "timed out waiting for a free database connection",
            hint="raise ARQUIVO_POOL_SIZE / ARQUIVO_MAX_OVERFLOW, or close sessions sooner",
        ) from exc
