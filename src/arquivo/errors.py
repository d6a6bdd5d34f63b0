"""The one error hierarchy of Arquivo.

Every failure a caller can act on is an :class:`ArquivoError` carrying a ``hint`` for the
operator. Database driver errors are translated at the boundary (see
``arquivo.db.dialects``) and chained with ``raise ... from``, so the original cause is
never lost::

    ArquivoError
    ├── ConfigurationError            bad settings, invalid or unsupported DATABASE_URL
    │   └── MissingDependencyError    an optional extra is not installed
    ├── DatabaseUnavailableError      the server is unreachable, or a lock wait timed out
    ├── CorruptDatabaseError          the file is not a (healthy) SQLite database
    ├── StorageFullError              the disk or quota is full; nothing was written
    ├── MigrationError                a migration failed or cannot be applied
    │   ├── SchemaOutOfDateError      the database is behind the code (auto-migrate off)
    │   └── SchemaTooNewError         the database was migrated by a newer Arquivo
    ├── ValidationError (ValueError)  bad input from the caller; nothing was written
    ├── NotFoundError (LookupError)   the thing asked for does not exist
    ├── DuplicateError                a unique key is already taken
    ├── ConflictError                 a concurrent change won a compare-and-set
    └── WaitTimeoutError (TimeoutError) a wait ended before what it waited for happened
"""

from __future__ import annotations

__all__ = [
    "ArquivoError",
    "ConfigurationError",
    "ConflictError",
    "CorruptDatabaseError",
    "DatabaseUnavailableError",
    "DuplicateError",
    "MigrationError",
    "MissingDependencyError",
    "NotFoundError",
    "SchemaOutOfDateError",
    "SchemaTooNewError",
    "StorageFullError",
    "ValidationError",
    "WaitTimeoutError",
]


class ArquivoError(Exception):
    """Root of every error Arquivo raises on purpose.

    Attributes:
        message: What went wrong, in one sentence.
        hint: What the operator can do about it (may be empty).
    """

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigurationError(ArquivoError):
    """The settings or the database URL are invalid or unsupported."""

    default_hint = (
        "set DATABASE_URL to sqlite:///path/to/file.db or "
        "postgresql://user:password@host:5432/dbname"
    )


class MissingDependencyError(ConfigurationError):
    """A feature needs an optional extra that is not installed."""


class DatabaseUnavailableError(ArquivoError):
    """The database cannot be reached, or a lock could not be taken in time."""

    default_hint = "check that the server is running and that DATABASE_URL is right"


class CorruptDatabaseError(ArquivoError):
    """The database file is damaged or is not a SQLite database at all."""

    default_hint = (
        "restore a backup, or salvage what is readable with "
        "`sqlite3 BROKEN.db .recover | sqlite3 FIXED.db`"
    )


class StorageFullError(ArquivoError):
    """The disk (or a quota) is full; the transaction was rolled back."""

    default_hint = "free disk space or move the database to a larger volume, then retry"


class MigrationError(ArquivoError):
    """A schema migration failed or cannot be applied."""

    default_hint = "run `arquivo db current` and `arquivo db history` to inspect the schema"


class SchemaOutOfDateError(MigrationError):
    """The database schema is older than this version of Arquivo expects."""

    default_hint = "run `arquivo db upgrade` (or unset ARQUIVO_AUTO_MIGRATE=false)"


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer Arquivo than the one installed."""

    default_hint = "upgrade the arquivo package, or downgrade the database with the newer version"


class ValidationError(ArquivoError, ValueError):
    """The caller passed invalid input; nothing was written."""

    default_hint = "check the value against the documented type and limits"


class NotFoundError(ArquivoError, LookupError):
    """The requested object does not exist."""


class DuplicateError(ArquivoError):
    """A unique key is already taken."""

    default_hint = "use a different key, or update the existing row instead"


class ConflictError(ArquivoError):
    """A concurrent change got there first (a lost compare-and-set)."""

    default_hint = "reload the object and decide again"


class WaitTimeoutError(ArquivoError, TimeoutError):
    """A wait (e.g. ``store.hitl.wait``) timed out before its condition came true."""

    default_hint = "wait again with a longer timeout; nothing was changed"
