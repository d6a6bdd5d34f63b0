"""Fixtures shared by the suite: a ``backend`` fixture that runs a test on every database.

PostgreSQL is a real server: the embedded one this suite starts itself (see
``pg_server.py``), or the one ``ARQUIVO_TEST_DATABASE_URL`` names. With ``CI=true`` a
PostgreSQL that cannot be had fails the run; elsewhere its tests are skipped, loudly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from arquivo import Arquivo
from arquivo.compat import close_default_store

# The live HTTP server fixture (``live``) for the server tests.
pytest_plugins = ["server_support"]

BACKENDS = ("sqlite", "postgresql")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Backend:
    """A fresh, empty database on one engine.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        url: The SQLAlchemy URL of the database (nothing is created in it yet).
    """

    name: str
    url: str


def provided_postgres() -> Iterator[str]:
    """Start an embedded server for a fixture; fail under CI, else skip, if it cannot run."""
    from pg_server import PostgresUnavailable, embedded_postgres

    try:
        server = embedded_postgres()
        url = server.__enter__()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI=true and PostgreSQL is unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


def fresh_database(request: pytest.FixtureRequest, name: str, folder: Path) -> Iterator[str]:
    """The URL of a new empty database on engine ``name``, removed afterwards."""
    if name == "sqlite":
        yield f"sqlite:///{folder / 'arquivo.db'}"
        return
    from pg_server import scratch_database

    admin: str = request.getfixturevalue("postgres_admin_url")
    with scratch_database(admin, "arquivo_test") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A URL with the right to create databases on a running PostgreSQL server."""
    external = os.environ.get("ARQUIVO_TEST_DATABASE_URL")
    if external:
        yield external
        return
    yield from provided_postgres()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh empty database, once on SQLite and once on PostgreSQL."""
    for url in fresh_database(request, request.param, tmp_path):
        yield Backend(request.param, url)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    """A fresh SQLite file, for behaviour only SQLite has."""
    return Backend("sqlite", f"sqlite:///{tmp_path / 'arquivo.db'}")


@pytest.fixture
def postgres_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh PostgreSQL database, for behaviour only PostgreSQL has."""
    for url in fresh_database(request, "postgresql", tmp_path):
        yield Backend("postgresql", url)


@pytest.fixture
def store(backend: Backend) -> Iterator[Arquivo]:
    """A migrated store on each backend."""
    with Arquivo.open(backend.url) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    # Tests must not read the developer's .env or DATABASE_URL, nor leak the default store.
    for key in list(os.environ):
        if key in ("DATABASE_URL", "CHROMA_DB_PATH", "CHROMA_HOST") or (
            key.startswith("ARQUIVO_") and key != ("ARQUIVO_TEST_DATABASE_URL")
        ):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    close_default_store()
