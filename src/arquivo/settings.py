"""Settings read from the environment and a ``.env`` file.

Only the edges (the CLI, the HTTP service, or the user's own code) build a
:class:`Settings`; the library takes explicit arguments. The seed documents' variable
names are kept as they are (``DATABASE_URL``, ``CHROMA_DB_PATH``, ``CHROMA_HOST``); every
other option lives under the ``ARQUIVO_`` prefix.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from arquivo.errors import ConfigurationError

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "SqliteSynchronous"]

DEFAULT_DATABASE_URL = "sqlite:///./data/arquivo.db"

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class Settings(BaseSettings):
    """Every knob Arquivo reads from its environment.

    Attributes:
        database_url: ``DATABASE_URL`` (or ``ARQUIVO_DATABASE_URL``).
        chroma_db_path: ``CHROMA_DB_PATH``, the local Chroma folder.
        chroma_host: ``CHROMA_HOST``, a Chroma server URL.
        knowledge_backend: Where ``store.knowledge`` keeps vectors: ``native`` (in this
            database) or ``chroma`` (``CHROMA_HOST`` if set, else ``CHROMA_DB_PATH``).
            When not given, setting ``CHROMA_HOST`` or ``CHROMA_DB_PATH`` means chroma.
        auto_migrate: Upgrade the schema when a store opens (else only verify it).
        sqlite_synchronous: ``PRAGMA synchronous``; ``FULL`` survives power loss.
        sqlite_busy_timeout_ms: How long a SQLite writer waits for the lock.
        pool_size: PostgreSQL connections kept open.
        max_overflow: Extra PostgreSQL connections allowed under load.
        pool_timeout_s: How long to wait for a free pooled connection.
        connect_timeout_s: How long to wait for a PostgreSQL server to answer.
        statement_timeout_ms: PostgreSQL ``statement_timeout`` (0 disables it).
        echo: Log every SQL statement.
        retention_metrics_days: ``arquivo retention apply`` deletes metrics older than
            this (unset: kept forever).
        retention_conversations_days: ... conversation sessions inactive this long.
        retention_hitl_days: ... HITL sessions closed this long ago, with their actions.
        backup_dir: ``ARQUIVO_BACKUP_DIR``, where backups are kept.
        pg_bin_dir: ``ARQUIVO_PG_BIN_DIR``, the folder of ``pg_dump``/``pg_restore``
            (searched for when unset).
    """

    model_config = SettingsConfigDict(
        env_prefix="ARQUIVO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "ARQUIVO_DATABASE_URL", "database_url"),
    )
    chroma_db_path: str = Field(
        default="./data/chroma",
        validation_alias=AliasChoices("CHROMA_DB_PATH", "ARQUIVO_CHROMA_DB_PATH", "chroma_db_path"),
    )
    chroma_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CHROMA_HOST", "ARQUIVO_CHROMA_HOST", "chroma_host"),
    )
    knowledge_backend: Literal["native", "chroma"] = "native"
    auto_migrate: bool = True
    sqlite_synchronous: SqliteSynchronous = "NORMAL"
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: int = Field(default=10, ge=1)
    statement_timeout_ms: int = Field(default=0, ge=0)
    echo: bool = False
    retention_metrics_days: int | None = Field(default=None, ge=0)
    retention_conversations_days: int | None = Field(default=None, ge=0)
    retention_hitl_days: int | None = Field(default=None, ge=0)
    backup_dir: str = "./data/backups"
    pg_bin_dir: str | None = None

    @pydantic.field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment and ``.env``, turning bad values into one clear error.

        Args:
            **overrides: Values that win over the environment (``None`` values are ignored).

        Raises:
            ConfigurationError: A variable has a value of the wrong type or out of range,
                or ``.env`` cannot be read.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except OSError as exc:
            # The .env file (or the working directory holding it) cannot be read.
            raise ConfigurationError(
                f"cannot read the settings file .env: {exc.strerror or exc}",
                hint="run from a directory you can read, or fix the permissions of its .env",
            ) from exc
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(
                f"invalid Arquivo settings: {problems}",
                hint="fix the ARQUIVO_* variables in the environment or in .env",
            ) from exc
