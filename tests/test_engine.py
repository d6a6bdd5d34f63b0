"""Engine set-up: SQLite pragmas and locking, PostgreSQL pool, and every unreachable database."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from arquivo import (
    Arquivo,
    ArquivoError,
    ConfigurationError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    Settings,
    UserPreference,
    ValidationError,
)
from arquivo.db.engine import create_engine
from conftest import Backend


def _pragma(store: Arquivo, name: str) -> object:
    with store.engine.connect() as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_connections_are_configured(sqlite_backend: Backend) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "foreign_keys") == 1
        assert _pragma(store, "synchronous") == 1  # NORMAL
        assert _pragma(store, "busy_timeout") == 30_000


def test_sqlite_synchronous_full_for_power_loss_durability(
    sqlite_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARQUIVO_SQLITE_SYNCHRONOUS", "FULL")
    with Arquivo.open(sqlite_backend.url) as store:
        assert _pragma(store, "synchronous") == 2


def test_sqlite_folder_is_created_on_first_open(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "arquivo.db"
    with Arquivo.open(f"sqlite:///{target}"):
        pass
    assert target.is_file()


def test_sqlite_in_memory_works_for_quick_experiments() -> None:
    with Arquivo.open("sqlite://") as store:
        with store.transaction() as session:
            session.add(UserPreference(user_id="u", key="k", value=1))
            session.flush()
            assert session.scalar(sa.select(sa.func.count()).select_from(UserPreference)) == 1
        # The domain methods and the ORM see one and the same in-memory database.
        store.preferences.set("u", "k2", 2)
        assert store.preferences.all("u") == {"k": 1, "k2": 2}
        with store.transaction(read_only=True) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(UserPreference)) == 2
        store.conversations.append("u", "s", "user", "hi")
        assert [m.content for m in store.conversations.history("u", "s")] == ["hi"]


def test_a_file_that_is_not_a_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(CorruptDatabaseError) as caught:
        Arquivo.open(f"sqlite:///{path}")
    assert ".recover" in caught.value.hint
    assert path.read_bytes() == content


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(ArquivoError, match="is a directory"):
        Arquivo.open(f"sqlite:///{tmp_path}")


def test_concurrent_sqlite_writers_queue_instead_of_failing(sqlite_backend: Backend) -> None:
    # Read-modify-write from many threads: with deferred transactions some would fail with
    # "database is locked" (no busy wait on a lock upgrade) or lose updates; BEGIN
    # IMMEDIATE makes each wait for the lock, so every increment lands.
    threads, rounds = 8, 25
    errors: list[BaseException] = []
    with Arquivo.open(sqlite_backend.url) as store:
        with store.transaction() as session:
            session.add(UserPreference(user_id="u", key="counter", value=0))

        def work() -> None:
            try:
                for _ in range(rounds):
                    with store.transaction() as session:
                        pref = session.scalars(sa.select(UserPreference)).one()
                        pref.value = pref.value + 1
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        with store.transaction(read_only=True) as session:
            assert session.scalars(sa.select(UserPreference.value)).one() == threads * rounds


def test_a_writer_holding_the_lock_too_long_gives_a_clear_error(sqlite_backend: Backend) -> None:
    with Arquivo.open(sqlite_backend.url) as holder:
        impatient = Arquivo(
            create_engine(sqlite_backend.url, Settings(sqlite_busy_timeout_ms=100)),
            owns_engine=True,
        )
        with holder.transaction() as session:
            session.add(UserPreference(user_id="u", key="held", value=1))
            session.flush()
            with pytest.raises(DatabaseUnavailableError) as caught, impatient.transaction() as s:
                s.add(UserPreference(user_id="u", key="blocked", value=2))
        assert "BUSY_TIMEOUT" in caught.value.hint
        impatient.close()
    with Arquivo.open(sqlite_backend.url) as store, store.transaction(read_only=True) as s:
        assert s.scalars(sa.select(UserPreference.key)).all() == ["held"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgres_is_a_clear_error() -> None:
    url = f"postgresql://nobody:secret@127.0.0.1:{_closed_port()}/arquivo"
    with pytest.raises(DatabaseUnavailableError) as caught:
        Arquivo.open(url)
    assert "secret" not in str(caught.value)
    assert "running" in caught.value.hint


def test_missing_postgres_database_is_a_configuration_error(postgres_backend: Backend) -> None:
    missing = sa.make_url(postgres_backend.url).set(database="no_such_database_here")
    with pytest.raises(ConfigurationError, match="does not exist"):
        Arquivo.open(missing.render_as_string(hide_password=False))


def test_postgres_pool_is_sized_and_pre_pings(postgres_backend: Backend) -> None:
    settings = Settings(pool_size=3, max_overflow=2, statement_timeout_ms=1500)
    with Arquivo.open(postgres_backend.url, settings=settings) as store:
        pool = store.engine.pool
        assert isinstance(pool, sa.QueuePool)
        assert pool.size() == 3
        assert pool._pre_ping
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            name = connection.exec_driver_sql("SHOW application_name").scalar()
            assert name == "arquivo"


def test_statement_timeout_keeps_the_urls_own_options(postgres_backend: Backend) -> None:
    url = sa.make_url(postgres_backend.url).update_query_dict(
        {"options": "-c search_path=public -c lock_timeout=1234"}
    )
    settings = Settings(statement_timeout_ms=2500)
    with Arquivo.open(url, settings=settings) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "2500ms"
        assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "1234ms"


def test_read_only_transactions_are_enforced_on_postgres(postgres_backend: Backend) -> None:
    with (
        Arquivo.open(postgres_backend.url) as store,
        pytest.raises(ValidationError, match="read-only"),
        store.transaction(read_only=True) as s,
    ):
        s.add(UserPreference(user_id="u", key="k", value=1))
        s.flush()


def test_domain_calls_share_a_bounded_number_of_connections(backend: Backend) -> None:
    # One connection for everyone: a second thread's call waits for the first to finish,
    # and the calls still all land.
    settings = Settings(pool_size=1, max_overflow=0, pool_timeout_s=30)
    with Arquivo.open(backend.url, settings=settings) as store:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
                    store.preferences.set(f"user{n}", f"k{i}", i)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert all(len(store.preferences.all(f"user{n}")) == 20 for n in range(4))


def test_a_call_that_cannot_get_a_connection_in_time_is_a_clear_error(
    sqlite_backend: Backend,
) -> None:
    settings = Settings(pool_size=1, max_overflow=0, pool_timeout_s=0.2)
    with Arquivo.open(sqlite_backend.url, settings=settings) as store:
        holding = store.unit(write=False)
        holding.__enter__()
        try:
            with pytest.raises(DatabaseUnavailableError, match="no free database connection"):
                store.preferences.get("u", "k")
        finally:
            holding.__exit__(None, None, None)
        assert store.preferences.get("u", "k", default="free again") == "free again"


def test_a_server_that_goes_away_is_an_arquivo_error(tmp_path: Path) -> None:
    # A domain call on a store whose PostgreSQL is unreachable never leaks a driver error.
    store = Arquivo(create_engine(f"postgresql://nobody@127.0.0.1:{_closed_port()}/x"))
    with pytest.raises(DatabaseUnavailableError):
        store.preferences.get("u", "k")
    store.close()
