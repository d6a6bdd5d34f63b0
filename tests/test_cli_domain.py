"""``arquivo prefs`` and ``arquivo history`` through the real entry point."""

from __future__ import annotations

import json

from arquivo import Arquivo
from conftest import Backend
from test_cli import run, run_json


def test_prefs_commands(backend: Backend) -> None:
    url = ("--url", backend.url)
    assert run(*url, "prefs", "set", "user123", "theme", "dark").returncode == 0
    assert run(*url, "prefs", "set", "user123", "layout", '{"cols": 2}', "--json").returncode == 0
    assert run(*url, "prefs", "get", "user123", "theme").stdout.strip() == "dark"
    assert run_json(*url, "prefs", "get", "user123", "layout") == {"cols": 2}
    assert run_json(*url, "prefs", "list", "user123") == {"layout": {"cols": 2}, "theme": "dark"}
    assert "theme" in run(*url, "prefs", "list", "user123").stdout
    missing = run(*url, "prefs", "get", "user123", "nope")
    assert missing.returncode == 1
    assert "no preference" in missing.stderr
    bad = run(*url, "prefs", "set", "user123", "x", "{not json", "--json")
    assert bad.returncode == 1
    assert "not valid JSON" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert run(*url, "prefs", "delete", "user123", "theme").returncode == 0
    assert run(*url, "prefs", "delete", "user123", "theme").returncode == 1
    with Arquivo.open(backend.url) as store:
        assert store.preferences.all("user123") == {"layout": {"cols": 2}}


def test_history_commands(backend: Backend) -> None:
    with Arquivo.open(backend.url) as store:
        for i in range(5):
            store.conversations.append("u", "s1", "user", f"hello {i}")
        store.conversations.append("u", "s2", "assistant", "later")
    url = ("--url", backend.url)
    shown = run_json(*url, "history", "show", "u", "s1", "--limit", "2")
    assert [m["content"] for m in shown] == ["hello 3", "hello 4"]
    assert shown[0]["created_at"].endswith("+00:00")
    assert "hello 4" in run(*url, "history", "show", "u", "s1").stdout
    sessions = run_json(*url, "history", "sessions", "u")
    assert [(s["session_id"], s["message_count"]) for s in sessions] == [("s2", 1), ("s1", 5)]
    bad = run(*url, "history", "show", "", "s1")
    assert bad.returncode == 1
    assert "user_id must not be empty" in bad.stderr
    assert json.loads(run(*url, "history", "sessions", "nobody", "--json").stdout) == []
