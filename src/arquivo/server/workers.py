"""Several server processes on one port: the supervisor accepts, each worker serves.

uvicorn's ``--workers`` shares one listening socket between the processes, and whichever
worker's event loop wakes first accepts every connection waiting. A client that opens
its keep-alive connections at once (a connection pool, a load generator) then gets most
of them served by one worker: measured with 32 connections and 2 workers, splits of
30/2 and 28/4 were common. ``SO_REUSEPORT`` sockets, one per worker, did better but
the kernel spreads connections by a hash of the client's port, so 23/9 still came up:
the connections of the busy worker queue behind each other while the other idles, and
p99 latency doubles.

So here the supervisor alone listens. It accepts each connection and hands the socket
to the worker serving the fewest connections, over a Unix socket pair (``SCM_RIGHTS``);
the worker serves it as if it had accepted it. Keep-alive clients pay the hand-off once
per connection, not per request. Workers report how many connections they have closed
through shared memory, so the supervisor's choice costs no system call. The supervisor
also restarts a worker that dies and stops them all on SIGINT or SIGTERM; a worker whose
supervisor is gone finishes its requests and exits. Linux only: elsewhere ``arquivo
serve`` uses uvicorn's own supervisor.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from arquivo.errors import ArquivoError, ConfigurationError

__all__ = ["APP_FACTORY", "UVICORN_OPTIONS", "handoff_supported", "run_workers"]

#: The ASGI application factory every worker serves.
APP_FACTORY = "arquivo.server.app:app_from_environment"
#: How uvicorn serves it, here and under uvicorn's own supervisor alike.
UVICORN_OPTIONS: dict[str, Any] = {"factory": True, "access_log": False, "proxy_headers": False}

_BACKLOG = 2048
_QUICK_EXIT_S = 10.0
_STOP_GRACE_S = 30.0
_REPORT_EVERY_S = 0.05


def handoff_supported() -> bool:
    """Whether this platform runs :func:`run_workers` (Linux: ``SCM_RIGHTS`` hand-off)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another program may be using the port: stop it or pick another with --port",
        ) from exc
    sock.setblocking(False)
    return sock


def _worker(channel: socket.socket, closed: Any, index: int, log_level: str) -> None:
    import uvicorn

    class HandoffServer(uvicorn.Server):
        """A uvicorn server that listens on nothing and serves the sockets it is handed."""

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self._handed_in = 0
            self._handing: set[asyncio.Task[None]] = set()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])
            loop = asyncio.get_running_loop()
            # The factory uvicorn's own startup builds for its listeners.
            http_protocol: Callable[..., asyncio.Protocol] = self.config.http_protocol_class
            protocol = functools.partial(
                http_protocol,
                config=self.config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )
            channel.setblocking(False)
            loop.add_reader(channel.fileno(), self._take_handed, loop, protocol)
            self._report_load(loop)

        def _take_handed(
            self, loop: asyncio.AbstractEventLoop, protocol: Callable[[], Any]
        ) -> None:
            while True:
                # One message (one socket) per receive: SOCK_SEQPACKET keeps them apart.
                try:
                    message, fds, _, _ = socket.recv_fds(channel, 1, 1)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    message, fds = b"", []
                if not message:  # the supervisor is gone: finish what is in flight, exit
                    loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:
                    task = loop.create_task(self._serve_handed(loop, protocol, fd))
                    self._handing.add(task)
                    task.add_done_callback(self._handing.discard)

        async def _serve_handed(
            self, loop: asyncio.AbstractEventLoop, protocol: Callable[[], Any], fd: int
        ) -> None:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            try:
                await loop.connect_accepted_socket(protocol, sock)
            except OSError:
                sock.close()  # the client left before it could be served
            finally:
                self._handed_in += 1

        def _report_load(self, loop: asyncio.AbstractEventLoop) -> None:
            # Received and no longer open, or never opened: the supervisor subtracts
            # this from what it handed over to know how busy this worker is.
            closed[index] = self._handed_in - len(self.server_state.connections)
            if not self.should_exit:
                loop.call_later(_REPORT_EVERY_S, self._report_load, loop)

    config = uvicorn.Config(APP_FACTORY, log_level=log_level, **UVICORN_OPTIONS)
    HandoffServer(config).run()


class _Slot:
    """One worker process, its end of the hand-off channel and how many it was handed."""

    def __init__(self, context: Any, closed: Any, index: int, log_level: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel = ours
        self.channel.setblocking(False)
        self.handed = 0
        closed[index] = 0
        self.process: BaseProcess = context.Process(
            target=_worker, args=(theirs, closed, index, log_level), name="arquivo-worker"
        )
        self.process.start()
        theirs.close()  # the child holds its own copy now
        self.started = time.monotonic()
        self.alive = True

    def hand(self, connection: socket.socket) -> bool:
        """Pass ``connection`` to this worker; False if it cannot take it now."""
        try:
            socket.send_fds(self.channel, [b"c"], [connection.fileno()])
        except (BlockingIOError, InterruptedError):
            return False  # its queue is full: busy or stuck, let another take it
        except OSError:
            self.alive = False  # it died; the monitor restarts it
            return False
        self.handed += 1
        return True

    def close(self) -> None:
        self.channel.close()


def _dispatch(connection: socket.socket, slots: list[_Slot], closed: Any, turn: int) -> None:
    # Fewest open connections first; ties go round the workers from ``turn``.
    order = sorted(
        range(len(slots)),
        key=lambda i: (slots[i].handed - closed[i], (i - turn) % len(slots)),
    )
    for index in order:
        if slots[index].alive and slots[index].hand(connection):
            return
    # No worker could take it: the client sees the connection close and may retry.


def run_workers(
    host: str, port: int, workers: int, log_level: str, say: Callable[[str], None]
) -> None:
    """Serve with ``workers`` processes until SIGINT or SIGTERM; restart any that dies.

    Raises:
        ConfigurationError: The port cannot be bound.
        ArquivoError: The workers keep exiting right after they start.
    """
    listener = _listen(host, port)
    context = multiprocessing.get_context("spawn")
    closed = context.RawArray("q", workers)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    slots: list[_Slot] = []
    selector = selectors.DefaultSelector()
    try:
        slots = [_Slot(context, closed, i, log_level) for i in range(workers)]
        selector.register(listener, selectors.EVENT_READ)
        quick_exits = 0
        turn = 0
        checked = time.monotonic()
        while not stopping:
            if selector.select(timeout=0.5):
                while True:
                    try:
                        connection, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # out of descriptors, say: retry shortly
                        say(f"accept failed: {exc}")
                        time.sleep(0.1)
                        break
                    with connection:
                        _dispatch(connection, slots, closed, turn)
                    turn += 1
            if time.monotonic() - checked < 0.5:
                continue
            checked = time.monotonic()
            for index, slot in enumerate(slots):
                if slot.process.is_alive():
                    continue
                if time.monotonic() - slot.started < _QUICK_EXIT_S:
                    quick_exits += 1
                    if quick_exits > 2 * workers:
                        raise ArquivoError(
                            "the server's workers keep exiting as soon as they start",
                            hint="read the errors above; try `arquivo serve --workers 1`",
                        )
                say(f"worker {slot.process.pid} exited ({slot.process.exitcode}); starting another")
                slot.close()
                slots[index] = _Slot(context, closed, index, log_level)
    finally:
        selector.close()
        listener.close()
        for slot in slots:
            if slot.process.is_alive():
                slot.process.terminate()  # uvicorn finishes the requests in flight, then exits
        deadline = time.monotonic() + _STOP_GRACE_S
        for slot in slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
