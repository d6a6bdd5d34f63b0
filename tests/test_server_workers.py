"""Several ``arquivo serve`` workers share the connections of a client that opens many."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server_support import ARQUIVO, free_port, stop_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of the server side of established loopback connections to ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            found.add(fields[9])
    return found


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            stack += children
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _wait_for_startups(process: subprocess.Popen[bytes], log: Path, count: int) -> None:
    """Until ``count`` workers in all have finished starting (uvicorn logs each)."""
    deadline = time.monotonic() + 60
    while log.read_text().count("Application startup complete") < count:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _serve_two(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``arquivo serve --workers 2`` on a free port: the process, the port, its log."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'arquivo.db'}"}
    env.pop("UV_TCP_SINGLE_ACCEPT", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ARQUIVO), "serve", "--port", str(port), "--workers", "2"],
            stdout=out,
            stderr=out,
            env=env,
        )
    return process, port, log


def test_two_workers_share_a_burst_of_keep_alive_connections(tmp_path: Path) -> None:
    process, port, log = _serve_two(tmp_path)
    connections: list[socket.socket] = []
    try:
        _wait_for_startups(process, log, 2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        # As a load generator or a client's connection pool does: all at once, then used.
        connections = [socket.socket() for _ in range(32)]
        for connection in connections:
            connection.setblocking(False)
            connection.connect_ex(("127.0.0.1", port))
        for connection in connections:
            connection.setblocking(True)
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for connection in connections:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        established = _established_inodes(port)
        per_worker = {
            pid: len(_socket_inodes(pid) & established) for pid in _descendants(process.pid)
        }
        served = sorted(count for count in per_worker.values() if count)
        assert sum(served) == 32
        assert len(served) == 2, per_worker
        assert served == [16, 16], per_worker  # uvicorn alone: 30/2; SO_REUSEPORT: 23/9
    finally:
        for connection in connections:
            connection.close()
        stop_server(process)


def test_a_dead_worker_is_replaced_and_a_taken_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'arquivo.db'}"}
    command = [str(ARQUIVO), "serve", "--port", str(port), "--workers", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, env=env)
    try:
        _wait_for_startups(process, log, 2)
        victim = _descendants(process.pid)[-1]
        os.kill(victim, signal.SIGKILL)
        _wait_for_startups(process, log, 3)
        assert f"worker {victim} exited" in log.read_text()
        for _ in range(10):  # whichever worker each connection reaches answers
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        # Someone else holds the port (without SO_REUSEPORT): a clear refusal, at once.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            other = taken.getsockname()[1]
            refused = subprocess.run(
                [*command[:3], str(other), *command[4:]],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
        assert refused.returncode != 0
        assert f"cannot listen on 127.0.0.1:{other}" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        stop_server(process)
    assert process.returncode == 0


def test_workers_leave_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    process, _, log = _serve_two(tmp_path)
    _wait_for_startups(process, log, 2)
    workers = [pid for pid in _descendants(process.pid) if Path(f"/proc/{pid}").exists()]
    assert len(workers) >= 2
    process.kill()  # no chance to stop them: the hand-off channel closing must
    process.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, [pid for pid in workers if _running(pid)]
        time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
