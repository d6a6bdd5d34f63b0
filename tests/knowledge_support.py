"""Opening a store on each knowledge backend for the contract tests.

The Chroma server is real: ``chroma run`` on 127.0.0.1, started once per session.
PostgreSQL without pgvector is real too: a database owned by a role that is not a
superuser, on the same server; pgvector is not a trusted extension, so that role cannot
``CREATE EXTENSION vector`` and the migration takes its portable path.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from arquivo import Arquivo, Settings

#: Every backend the contract suite runs on.
KNOWLEDGE_BACKENDS = (
    "native-sqlite",
    "native-postgresql",
    "native-postgresql-plain",
    "chroma-local",
    "chroma-server",
)

#: A role that may own a database but not create pgvector (not a superuser).
PLAIN_ROLE = "arquivo_plain"


@pytest.fixture
def plain_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database owned by :data:`PLAIN_ROLE`, as that role: no pgvector possible."""
    from pg_server import _libpq, drop_database

    admin: str = request.getfixturevalue("postgres_admin_url")
    database = f"arquivo_plain_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PLAIN_ROLE,))
        if exists.fetchone() is None:
            conn.execute(f"CREATE ROLE {PLAIN_ROLE} LOGIN NOSUPERUSER NOCREATEDB")
        conn.execute(f"CREATE DATABASE {database} OWNER {PLAIN_ROLE}")
    parts = urlsplit(admin)
    netloc = PLAIN_ROLE + "@" + parts.netloc.rpartition("@")[2]
    try:
        yield urlunsplit(parts._replace(netloc=netloc, path="/" + database))
    finally:
        drop_database(admin, database)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Chroma server on 127.0.0.1 (stopped at the end of the session)."""
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        pytest.skip("chromadb is not installed (pip install 'arquivo[chroma]')")
    port = _free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(folder / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"chroma run did not start: {(folder / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def open_knowledge_store(
    request: pytest.FixtureRequest, name: str, tmp_path: Path
) -> Iterator[Arquivo]:
    """A migrated store (SQLite unless the backend is native-postgresql) using ``name``."""
    if name == "native-postgresql":
        backend = request.getfixturevalue("postgres_backend")
        with Arquivo.open(backend.url) as store:
            yield store
        return
    if name == "native-postgresql-plain":
        with Arquivo.open(request.getfixturevalue("plain_postgres_url")) as store:
            assert type(store.knowledge.backend).__name__ == "PgArrayBackend"
            yield store
        return
    url = f"sqlite:///{tmp_path / 'arquivo.db'}"
    if name == "chroma-local":
        settings = Settings.load(
            knowledge_backend="chroma", chroma_db_path=str(tmp_path / "chroma")
        )
    elif name == "chroma-server":
        server: str = request.getfixturevalue("chroma_server")
        settings = Settings.load(knowledge_backend="chroma", chroma_host=server)
    else:
        settings = Settings.load()
    with Arquivo.open(url, settings=settings) as store:
        yield store
        if name == "chroma-server":
            # One server for the session: leave it empty for the next test.
            for collection in store.knowledge.collections():
                store.knowledge.drop_collection(collection.name)
