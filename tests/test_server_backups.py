"""Backups over HTTP (admin keys only), against a real server process on both databases."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from arquivo.backup.service import Backups
from server_support import ARQUIVO, LiveServer, free_port, stop_server


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_an_admin_takes_lists_and_verifies_backups(live: LiveServer) -> None:
    admin = live.client("admin")
    alice = live.client("alice")
    _ok(
        alice.post("/v1/users/alice/sessions/bk/messages", json={"role": "user", "content": "x"}),
        201,
    )
    made = _ok(admin.post("/v1/backups", json={"label": "over http"}, timeout=300), 201)
    assert made["label"] == "over http"
    assert made["dialect"] == live.backend
    assert made["tables"]["conversation_history"] >= 1
    assert made["components"][0]["files"][0]["sha256"]
    assert "path" not in made  # the server's folders are not the client's business
    listed = _ok(admin.get("/v1/backups"))
    assert made["id"] in [b["id"] for b in listed]
    assert _ok(admin.get(f"/v1/backups/{made['id']}")) == made
    assert _ok(admin.get("/v1/backups/latest"))["id"] == listed[0]["id"]
    report = _ok(admin.post(f"/v1/backups/{made['id']}/verify", timeout=300))
    assert report["ok"] is True
    assert report["restored"] is True
    assert report["tables"]["conversation_history"] == made["tables"]["conversation_history"]
    quick = _ok(admin.post(f"/v1/backups/{made['id']}/verify", params={"restore": False}))
    assert quick == {**quick, "ok": True, "restored": False}


def test_a_damaged_backup_fails_verification_and_unknown_ids_are_404(live: LiveServer) -> None:
    admin = live.client("admin")
    made = _ok(admin.post("/v1/backups", json={"label": "to damage"}, timeout=300), 201)
    folder = Path(live.log).parent / "backups" / made["id"]
    damaged = folder / made["components"][0]["files"][0]["path"]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    report = _ok(admin.post(f"/v1/backups/{made['id']}/verify", timeout=300))
    assert report["ok"] is False
    assert report["problems"]
    missing = admin.get("/v1/backups/20000101T000000Z-000000")
    assert missing.status_code == 404
    assert missing.json()["hint"]
    assert admin.get("/v1/backups/..bad").status_code in (404, 422)
    assert admin.post("/v1/backups", json={"codec": "rar"}).json()["fields"][0]["field"] == "codec"


def test_user_keys_get_403_on_every_backup_route(live: LiveServer) -> None:
    alice = live.client("alice")
    calls = [
        ("GET", "/v1/backups", None),
        ("POST", "/v1/backups", {"label": "mine"}),
        ("GET", "/v1/backups/latest", None),
        ("POST", "/v1/backups/latest/verify", None),
    ]
    before = len(_ok(live.client("admin").get("/v1/backups")))
    for method, path, body in calls:
        response = alice.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "admin" in response.json()["hint"]
        assert live.client(None).request(method, path, json=body).status_code == 401
    assert len(_ok(live.client("admin").get("/v1/backups"))) == before


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    backups = tmp_path / "backups"
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "ARQUIVO_BACKUP_DIR": str(backups),
    }
    command = [str(ARQUIVO), "serve", "--port", str(free_port()), "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, backups, log


def _wait_for(condition: Any, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_serve_backs_up_on_a_schedule_and_prunes(tmp_path: Path) -> None:
    process, folder, log = _serve(tmp_path, "--backup-every", "1s", "--keep-last", "2")
    try:
        _wait_for(lambda: log.read_text().count("scheduled backup 2") >= 3, log)
    finally:
        stop_server(process)
    assert len(Backups(None, folder).list()) == 2
    assert "Traceback" not in log.read_text()


def test_one_schedule_runs_however_many_workers_serve(tmp_path: Path) -> None:
    process, folder, log = _serve(tmp_path, "--workers", "2", "--backup-every", "1h")
    try:
        _wait_for(lambda: "scheduled backup" in log.read_text(), log)
        time.sleep(3)  # room for the workers to start (and, wrongly, back up too)
    finally:
        stop_server(process)
    assert len(Backups(None, folder).list()) == 1
    assert log.read_text().count("scheduled backup") == 1


def test_pruning_options_need_a_schedule(tmp_path: Path) -> None:
    process, _, log = _serve(tmp_path, "--keep-last", "3")
    assert process.wait(timeout=60) != 0
    assert "--backup-every" in log.read_text()
