"""Opening a store on each knowledge backend for the contract tests.

The Chroma server is real: ``chroma run`` on 127.0.0.1, started once per session.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from arquivo import Arquivo, Settings

#: Every backend the contract suite runs on.
KNOWLEDGE_BACKENDS = ("native-sqlite", "native-postgresql", "chroma-local", "chroma-server")


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
