"""Child processes for fault injection: forked, talking to the parent over a pipe.

A child writes one short line per event (``R`` when ready, ``A kind token`` before a
write, ``K kind token`` once the write returned, ``E Class message`` for an error that
reached it). Lines under ``PIPE_BUF`` bytes are written atomically, so a ``kill -9`` can
cut the stream only between lines, never inside one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_MAX_LINE = 512  # well under PIPE_BUF (4096 on Linux)


def say(out: int, *words: object) -> None:
    """Send one event line to the parent."""
    line = " ".join(str(word) for word in words).replace("\n", " ")[: _MAX_LINE - 1]
    os.write(out, (line + "\n").encode("utf-8", "backslashreplace"))


@dataclass
class Child:
    """A forked child process and what it has said so far."""

    pid: int
    reader: int
    lines: list[str] = field(default_factory=list)
    exit_status: int | None = None
    _partial: bytes = b""
    _eof: bool = False

    def pump(self) -> None:
        """Read whatever the child has written, without blocking."""
        while not self._eof:
            ready, _, _ = select.select([self.reader], [], [], 0)
            if not ready:
                return
            chunk = os.read(self.reader, 65536)
            if not chunk:
                self._eof = True
                break
            data = self._partial + chunk
            *complete, self._partial = data.split(b"\n")
            self.lines.extend(line.decode("utf-8", "replace") for line in complete)

    def kill(self) -> None:
        """``kill -9`` the child (a no-op once it has exited)."""
        if self.exit_status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 60.0) -> int:
        """Reap the child, read the rest of its output; its wait status."""
        deadline = time.monotonic() + timeout
        while self.exit_status is None:
            self.pump()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = status
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child {self.pid} did not finish in {timeout} s")
            time.sleep(0.005)
        while not self._eof:
            select.select([self.reader], [], [], 1.0)
            self.pump()
        os.close(self.reader)
        return self.exit_status

    @property
    def killed(self) -> bool:
        """Whether the child died of SIGKILL."""
        status = self.exit_status
        return status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9

    def fields(self, tag: str) -> list[list[str]]:
        """The lines starting with ``tag``, split on every space (the tag removed)."""
        return [line.split(" ")[1:] for line in self.lines if line.split(" ", 1)[0] == tag]

    def events(self, tag: str) -> list[list[str]]:
        """The lines starting with ``tag``, split into words (the tag removed)."""
        return [line.split(" ", 2)[1:] for line in self.lines if line.split(" ", 1)[0] == tag]


def spawn(target: Callable[..., Any], *args: Any) -> Child:
    """Run ``target(out_fd, *args)`` in a forked child.

    The child exits with status 0 when ``target`` returns, 1 (after printing the
    traceback) when it raises; it never runs the parent's exit handlers.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(reader)
            target(writer, *args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(writer)
    return Child(pid, reader)


def run_until(children: list[Child], deadlines: list[float]) -> None:
    """Pump the children's output, killing each at its deadline (``time.monotonic()``)."""
    pending = sorted(zip(deadlines, range(len(children)), strict=True))
    while pending:
        when, index = pending[0]
        now = time.monotonic()
        if now >= when:
            children[index].kill()
            pending.pop(0)
            continue
        readers = [child.reader for child in children if not child._eof]
        if readers:
            select.select(readers, [], [], min(when - now, 0.05))
        else:
            time.sleep(min(when - now, 0.05))
        for child in children:
            child.pump()


@contextlib.contextmanager
def pumping(children: list[Child]) -> Iterator[None]:
    """Read the children's output in a background thread while the block runs.

    A child blocks once the pipe (64 KiB) is full, so a parent busy with something else
    (stopping a server, say) must keep reading.
    """
    done = threading.Event()

    def pump() -> None:
        while not done.is_set():
            readers = [child.reader for child in children if not child._eof]
            if readers:
                select.select(readers, [], [], 0.05)
            else:
                done.wait(0.05)
            for child in children:
                child.pump()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
