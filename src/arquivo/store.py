"""The :class:`Arquivo` store: one database, its engine, and units of work on it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType

from sqlalchemy import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from arquivo.backup.service import DEFAULT_BACKUP_DIR, Backups
from arquivo.backup.vectors import chroma_folder
from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.db.engine import create_engine, ping
from arquivo.db.fastpath import Driver, DriverPool
from arquivo.db.migrate import ensure_schema
from arquivo.db.urls import hide_password
from arquivo.domain.agents import Agents
from arquivo.domain.api_keys import ApiKeys
from arquivo.domain.conversations import Conversations
from arquivo.domain.hitl import HITL
from arquivo.domain.knowledge import Knowledge
from arquivo.domain.metrics import Metrics
from arquivo.domain.preferences import Preferences
from arquivo.domain.retention import Retention
from arquivo.domain.users import Users
from arquivo.errors import ArquivoError
from arquivo.knowledge.backend import VectorBackend
from arquivo.knowledge.settings import knowledge_backend_from
from arquivo.settings import Settings

__all__ = ["Arquivo"]


class Arquivo:
    """Everything an agent app must not lose, in one database.

    Open one per process and share it between threads; it owns a connection pool::

        with Arquivo.open("sqlite:///data/arquivo.db") as store:
            with store.transaction() as session:
                session.add(UserPreference(user_id="u1", key="theme", value="dark"))

    A transaction is a unit of work: it commits when the block ends normally, rolls
    back on an exception, and a ``transaction()`` opened inside another one (on the
    same thread) becomes a savepoint of the outer one.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        owns_engine: bool = False,
        max_connections: int = 15,
        idle_connections: int = 5,
        acquire_timeout: float = 30.0,
        backup_dir: str = DEFAULT_BACKUP_DIR,
        pg_bin_dir: str | None = None,
        knowledge_backend: Callable[[], VectorBackend] | None = None,
        chroma_path: str | None = None,
    ) -> None:
        """Wrap an existing engine; prefer :meth:`open`, which also migrates.

        Args:
            engine: A SQLAlchemy engine made by :func:`arquivo.db.engine.create_engine`.
            owns_engine: Dispose of the engine on :meth:`close`.
            max_connections: Connections the domain methods use at once, at most
                (besides the engine's own pool, which serves ``transaction()``).
            idle_connections: Of those, how many stay open when unused for a minute.
            acquire_timeout: Seconds a call waits for one of them.
            backup_dir: Where ``backups`` keeps backup sets.
            pg_bin_dir: The folder of ``pg_dump``/``pg_restore`` (searched when omitted).
            knowledge_backend: Makes the vector backend of ``knowledge`` (default: the
                native one, in this database).
            chroma_path: The Chroma folder that ``backups`` includes (when the knowledge
                backend is Chroma's embedded client).
        """
        self._engine = engine
        self._owns_engine = owns_engine
        self._support = get_dialect(engine.dialect.name)
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            bind=engine.execution_options(**self._support.read_only_options()),
            expire_on_commit=False,
        )
        self._local = threading.local()
        self._open_transactions = 0
        self._counter_lock = threading.Lock()
        self._closed = False
        self._pool = DriverPool(
            engine,
            max_connections=max_connections,
            acquire_timeout=acquire_timeout,
            keep_idle=idle_connections,
        )
        self.preferences = Preferences(self)
        """Per-user preferences: ``set``, ``get``, ``all``, ``delete``, ``set_many``."""
        self.conversations = Conversations(self)
        """Conversation history: ``append``, ``history``, ``sessions``, ``search``..."""
        self.metrics = Metrics(self)
        """System metrics: ``record``, ``timer``, ``list``, ``summary``, ``timeseries``."""
        self.agents = Agents(self)
        """The agent registry: ``upsert``, ``get``, ``list``, ``versions``, ``rollback``..."""
        self.hitl = HITL(self)
        """Human-in-the-loop sessions: ``request``, ``approve``, ``reject``, ``wait``..."""
        self.users = Users(self)
        """Everything held about one user: ``data`` (counts per table), ``forget``."""
        self.retention = Retention(self)
        """Deletes what a :class:`RetentionPolicy` does not keep, in short chunks."""
        self.backups = Backups(
            engine,
            backup_dir,
            before_restore=self.close,
            pg_bin_dir=pg_bin_dir,
            chroma_path=chroma_path,
        )
        """Backup sets: ``create``, ``list``, ``get``, ``verify``, ``prune``, ``restore``."""
        self.api_keys = ApiKeys(self)
        """Keys of the HTTP service: ``create``, ``list``, ``revoke``, ``authenticate``."""
        self.knowledge = Knowledge(self, knowledge_backend)
        """RAG knowledge: ``create_collection``, ``add``, ``add_document``, ``query``..."""

    @classmethod
    def open(
        cls,
        url: str | URL | None = None,
        *,
        settings: Settings | None = None,
        auto_migrate: bool | None = None,
    ) -> Arquivo:
        """Open (and by default migrate) the database at ``url``.

        Args:
            url: A database URL; when omitted, ``DATABASE_URL`` from the environment or
                ``.env``, else ``sqlite:///./data/arquivo.db``.
            settings: Tuning options; read from the environment when omitted.
            auto_migrate: Upgrade an outdated schema (default: ``ARQUIVO_AUTO_MIGRATE``,
                true); when false, an outdated schema raises ``SchemaOutOfDateError``.

        Raises:
            ConfigurationError: The URL or settings are invalid.
            DatabaseUnavailableError: The database cannot be reached.
            CorruptDatabaseError: The SQLite file is not a healthy database.
            MigrationError: The schema cannot be brought to this version.
        """
        settings = settings if settings is not None else Settings.load()
        engine = create_engine(url if url is not None else settings.database_url, settings)
        try:
            ping(engine)
            ensure_schema(
                engine, auto_migrate=settings.auto_migrate if auto_migrate is None else auto_migrate
            )
        except BaseException:
            engine.dispose()
            raise
        return cls(
            engine,
            owns_engine=True,
            max_connections=settings.pool_size + settings.max_overflow,
            idle_connections=settings.pool_size,
            acquire_timeout=settings.pool_timeout_s,
            backup_dir=settings.backup_dir,
            pg_bin_dir=settings.pg_bin_dir,
            knowledge_backend=knowledge_backend_from(settings),
            chroma_path=chroma_folder(settings),
        )

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for queries Arquivo has no method for)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database family: ``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with its password hidden."""
        return hide_password(self._engine.url)

    @contextlib.contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on error, savepoint when nested.

        Args:
            read_only: Promise not to write. On SQLite the transaction then takes no
                write lock; on PostgreSQL it is ``READ ONLY``. Ignored when nested.

        Raises:
            ArquivoError: Database errors inside the block are translated
                (``DuplicateError``, ``StorageFullError``, ``DatabaseUnavailableError``...).
        """
        self._check_open()
        outer: Session | None = getattr(self._local, "session", None)
        with translate_errors(self.dialect):
            if outer is not None:
                with outer.begin_nested():
                    yield outer
                return
            factory = self._read_sessions if read_only else self._sessions
            with factory() as session, session.begin():
                self._local.session = session
                with self._counter_lock:
                    self._open_transactions += 1
                try:
                    yield session
                finally:
                    self._local.session = None
                    with self._counter_lock:
                        self._open_transactions -= 1

    def unit(self, *, write: bool, single: bool = False) -> AbstractContextManager[Driver]:
        """The unit of work a domain method runs in, as a raw driver connection.

        Inside a :meth:`transaction` on this thread it is a savepoint of that
        transaction (so the method commits or rolls back with it); otherwise a
        transaction of its own, committed when the block ends. ``single`` promises
        that the block runs one write statement, which may then be its own transaction.
        """
        # Reading a counter is cheaper than a thread-local: skip it when no thread has
        # a transaction open (a thread always sees its own increment).
        if not self._open_transactions:
            return self._pool.transaction(write=write, single=single)
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            return self._pool.transaction(write=write, single=single)
        return self._nested_unit(session)

    @contextlib.contextmanager
    def _nested_unit(self, session: Session) -> Iterator[Driver]:
        try:
            with translate_errors(self.dialect), session.begin_nested():
                raw = session.connection().connection.driver_connection
                yield Driver(raw, self._pool.cache)
        except Exception as exc:
            translated = self._support.translate_driver(exc)
            if translated is None:
                raise
            raise translated from exc

    def session(self) -> Session:
        """A new ORM session whose transactions the caller manages (commit, close)."""
        self._check_open()
        return self._sessions()

    def close(self) -> None:
        """Release the connection pool (if this store created the engine). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.knowledge.close()
        self._pool.close()
        if self._owns_engine:
            self._engine.dispose()

    def _check_open(self) -> None:
        if self._closed:
            raise ArquivoError("this Arquivo store is closed", hint="open a new one")

    def __enter__(self) -> Arquivo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Arquivo({self.url!r})"
