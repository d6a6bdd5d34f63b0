"""A real ``arquivo serve`` process on 127.0.0.1 for the server tests, on each database.

Loaded by ``conftest.py`` as a plugin, so any test module can ask for ``live``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from arquivo import Arquivo
from conftest import fresh_database

ARQUIVO = Path(sys.executable).with_name("arquivo")
BACKENDS = ("sqlite", "postgresql")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A running server and the keys made for it.

    Attributes:
        backend: ``sqlite`` or ``postgresql``.
        db_url: The database it serves.
        base_url: ``http://127.0.0.1:PORT``.
        tokens: API tokens by name: ``admin`` (admin key), ``alice`` and ``bob`` (user keys).
    """

    backend: str
    db_url: str
    base_url: str
    tokens: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str | None) -> httpx.Client:
        """An HTTP client sending ``who``'s key (none for ``None``)."""
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self.clients.append(client)
        return client


def start_server(
    db_url: str, log: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``arquivo serve`` on a free port and wait until ``/readyz`` answers 200."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, **(extra_env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ARQUIVO), "serve", "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"arquivo serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"arquivo serve did not become ready:\n{log.read_text()}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop it the way an operator would (SIGTERM), then make sure."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server process on a fresh database, once on SQLite and once on PostgreSQL.

    Shared by every server test of the run (starting one costs seconds): tests use
    their own session ids and workflow names.
    """
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    for db_url in fresh_database(request, request.param, folder):
        with Arquivo.open(db_url) as store:
            tokens = {
                "admin": store.api_keys.create("root", admin=True, name="admin")[1],
                "alice": store.api_keys.create("alice", name="alice")[1],
                "bob": store.api_keys.create("bob", name="bob")[1],
            }
        backups = {"ARQUIVO_BACKUP_DIR": str(folder / "backups")}
        process, base = start_server(db_url, folder / "server.log", backups)
        server = LiveServer(request.param, db_url, base, tokens, process, folder / "server.log")
        try:
            yield server
        finally:
            for client in server.clients:
                client.close()
            stop_server(process)
        # Nothing the server logged may be a traceback.
        assert "Traceback" not in server.log.read_text(), server.log.read_text()
