"""Several server processes on one port, each accepting on a listening socket of its own.

uvicorn's ``--workers`` shares one listening socket between the processes, and whichever
worker's event loop wakes first accepts every connection waiting. A client that opens
its keep-alive connections at once (a connection pool, a load generator) then gets most
of them served by one worker: measured with 32 connections and 2 workers, splits of
30/2 and 28/4 were common. The connections of the busy worker queue behind each other
while the other worker idles, and p99 latency grows to several times p50.

With ``SO_REUSEPORT`` (Linux) each worker binds a socket of its own to the same port,
and the kernel spreads new connections over them by a hash of the client's address and
port. This module starts the workers, restarts one that dies, and stops them all on
SIGINT or SIGTERM. Elsewhere ``arquivo serve`` uses uvicorn's own supervisor.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from arquivo.errors import ArquivoError, ConfigurationError

__all__ = ["APP_FACTORY", "reuse_port_supported", "run_workers"]

#: The ASGI application factory every worker serves.
APP_FACTORY = "arquivo.server.app:app_from_environment"

_BACKLOG = 2048
_QUICK_EXIT_S = 10.0
_STOP_GRACE_S = 30.0


def reuse_port_supported() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int, *, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another program may be using the port: stop it or pick another with --port",
        ) from exc
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    sock = _socket(host, port, listen=True)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(
    host: str, port: int, workers: int, log_level: str, say: Callable[[str], None]
) -> None:
    """Serve with ``workers`` processes until SIGINT or SIGTERM; restart any that dies.

    Raises:
        ConfigurationError: The port cannot be bound.
        ArquivoError: The workers keep exiting right after they start.
    """
    # Fail here, with the reason, rather than in every worker: a socket that is bound
    # but not listening takes no connections, so the probe can close at once.
    _socket(host, port, listen=False).close()
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> tuple[BaseProcess, float]:
        process = context.Process(
            target=_worker, args=(host, port, log_level), name="arquivo-worker"
        )
        process.start()
        return process, time.monotonic()

    running = [start() for _ in range(workers)]
    quick_exits = 0
    try:
        while not stop.wait(0.5):
            for index, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                if time.monotonic() - started < _QUICK_EXIT_S:
                    quick_exits += 1
                    if quick_exits > 2 * workers:
                        raise ArquivoError(
                            "the server's workers keep exiting as soon as they start",
                            hint="read the errors above; try `arquivo serve --workers 1`",
                        )
                say(f"worker {process.pid} exited ({process.exitcode}); starting another")
                running[index] = start()
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # uvicorn finishes the requests in flight, then exits
        deadline = time.monotonic() + _STOP_GRACE_S
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
