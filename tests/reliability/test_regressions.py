"""Defects the reliability suite found, each pinned by the smallest test that shows it."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from arquivo import ConfigurationError
from arquivo.settings import Settings
from reliability.processes import say, spawn


def _load_settings_as_nobody(out: int, folder: str) -> None:
    nobody = pwd.getpwnam("nobody")
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    os.chdir(folder)
    try:
        Settings.load()
    except ConfigurationError as exc:
        say(out, "E", type(exc).__name__, exc.message)
    except Exception as exc:
        say(out, "X", type(exc).__name__, exc)
    else:
        say(out, "K")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_an_unreadable_dot_env_is_a_configuration_error() -> None:
    """Found by the read-only test: a .env that cannot be read raised PermissionError."""
    folder = Path(tempfile.mkdtemp(prefix="arquivo-env-"))
    try:
        folder.chmod(0o755)
        (folder / ".env").write_text("ARQUIVO_ECHO=false\n")
        (folder / ".env").chmod(0o600)  # root's: unreadable for nobody
        child = spawn(_load_settings_as_nobody, str(folder))
        assert child.wait() == 0, child.lines
        assert child.events("X") == []
        ((name, message),) = child.events("E")
        assert name == "ConfigurationError"
        assert ".env" in message
    finally:
        (folder / ".env").unlink()
        folder.rmdir()
