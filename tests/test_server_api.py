"""The HTTP API over real HTTP against an ``arquivo serve`` process, on both databases."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import httpx

from arquivo import Arquivo
from server_support import LiveServer


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message", "hint"}
    assert "Traceback" not in response.text
    return body


def test_health_needs_no_key_and_everything_else_does(live: LiveServer) -> None:
    anonymous = live.client(None)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["database"] == live.backend
    _error(anonymous.get("/v1/me"), 401)
    bad = httpx.get(f"{live.base_url}/v1/me", headers={"Authorization": "Bearer arq_x_y"})
    assert _error(bad, 401)["error"] == "unauthorized"
    assert bad.headers["www-authenticate"] == "Bearer"
    me = live.client("alice").get("/v1/me").json()
    assert me["user_id"] == "alice"
    assert me["is_admin"] is False
    assert live.client("admin").get("/v1/me").json()["is_admin"] is True


def test_preferences_round_trip(live: LiveServer) -> None:
    alice = live.client("alice")
    base = "/v1/users/alice/preferences"
    put = alice.put(f"{base}/theme", json={"value": {"mode": "dark", "size": 14}})
    assert put.status_code == 200, put.text
    assert alice.get(f"{base}/theme").json()["value"] == {"mode": "dark", "size": 14}
    alice.put(f"{base}/lang", json={"value": "pt"})
    assert alice.get(base).json() == {"theme": {"mode": "dark", "size": 14}, "lang": "pt"}
    assert alice.delete(f"{base}/lang").status_code == 204
    assert _error(alice.get(f"{base}/lang"), 404)["error"] == "not_found"
    assert _error(alice.delete(f"{base}/lang"), 404)["hint"] is not None


def test_conversations_append_and_page_back(live: LiveServer) -> None:
    alice = live.client("alice")
    url = "/v1/users/alice/sessions/s1/messages"
    ids = []
    for i in range(25):
        response = alice.post(
            url, json={"role": "user", "content": f"m{i}", "extra_data": {"i": i}}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    first = alice.get(url, params={"limit": 20}).json()
    assert [m["content"] for m in first["messages"]] == [f"m{i}" for i in range(5, 25)]
    assert first["next_before"] == ids[5]
    rest = alice.get(url, params={"limit": 20, "before": first["next_before"]}).json()
    assert [m["content"] for m in rest["messages"]] == [f"m{i}" for i in range(5)]
    assert rest["next_before"] is None
    sessions = alice.get("/v1/users/alice/sessions").json()
    assert ("s1", 25) in [(s["session_id"], s["message_count"]) for s in sessions]


def test_bad_input_is_a_422_naming_the_field_and_nothing_is_written(live: LiveServer) -> None:
    alice = live.client("alice")
    url = "/v1/users/alice/sessions/bad/messages"
    body = _error(alice.post(url, json={"role": "user"}), 422)
    assert "content" in body["message"]
    body = _error(alice.post(url, json={"role": "wizard", "content": "x"}), 422)
    assert "role" in body["message"]
    body = _error(alice.post(url, json={"role": "user", "content": "a\x00b"}), 422)
    assert "content" in body["message"]
    prefs = "/v1/users/alice/preferences/nul"
    body = _error(alice.put(prefs, json={"value": {"a\x00b": 1}}), 422)  # found by the fuzzer
    assert "value has a key with a NUL character" in body["message"]
    body = _error(alice.get(url, params={"limit": 0}), 422)
    assert "limit" in body["message"]
    assert alice.get(url).json()["messages"] == []


def test_oversized_bodies_are_refused_with_413(live: LiveServer) -> None:
    alice = live.client("alice")
    big = {"role": "user", "content": "x" * (6 * 1024 * 1024)}
    response = alice.post("/v1/users/alice/sessions/big/messages", json=big)
    assert _error(response, 413)["error"] == "request_too_large"

    def chunks() -> Any:  # no Content-Length: the limit must hold while streaming
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    streamed = alice.post(
        "/v1/users/alice/sessions/big/messages",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert all(s["session_id"] != "big" for s in alice.get("/v1/users/alice/sessions").json())


def test_metrics_any_key_records_only_admin_reads(live: LiveServer) -> None:
    alice, admin = live.client("alice"), live.client("admin")
    for ms in (10.0, 20.0, 30.0):
        assert (
            alice.post("/v1/metrics", json={"operation": "llm", "duration_ms": ms}).status_code
            == 201
        )
    alice.post(
        "/v1/metrics",
        json={"operation": "llm", "duration_ms": 40, "success": False, "error": "timeout"},
    )
    _error(alice.get("/v1/metrics/summary"), 403)
    stats = {s["operation"]: s for s in admin.get("/v1/metrics/summary").json()}
    assert stats["llm"]["count"] == 4  # only this test records "llm"
    assert stats["llm"]["error_rate"] == 0.25
    assert stats["llm"]["p50_ms"] == 25.0
    buckets = admin.get("/v1/metrics/timeseries", params={"operation": "llm", "bucket": "1h"})
    assert sum(b["count"] for b in buckets.json()) == 4
    _error(admin.get("/v1/metrics/timeseries", params={"operation": "llm", "bucket": "xx"}), 422)


def test_agents_versions_and_rollback(live: LiveServer) -> None:
    alice, admin = live.client("alice"), live.client("admin")
    _error(alice.put("/v1/agents/coder", json={"model": "m1"}), 403)
    assert (
        admin.put("/v1/agents/coder", json={"model": "m1", "tools": ["fs"]}).json()["version"] == 1
    )
    assert admin.put("/v1/agents/coder", json={"model": "m2"}).json()["version"] == 2
    assert [v["model"] for v in alice.get("/v1/agents/coder/versions").json()] == ["m1", "m2"]
    rolled = admin.post("/v1/agents/coder/rollback/1").json()
    assert (rolled["model"], rolled["version"], rolled["tools"]) == ("m1", 3, ["fs"])
    assert alice.get("/v1/agents/coder", params={"version": 2}).json()["model"] == "m2"
    _error(alice.get("/v1/agents/nobody"), 404)


def test_hitl_long_poll_wakes_on_a_decision_made_over_http(live: LiveServer) -> None:
    alice, admin = live.client("alice"), live.client("admin")
    created = alice.post(
        "/v1/hitl",
        json={"workflow_id": "deploy", "step_id": "rm", "request_data": {"cmd": "rm -rf build"}},
    )
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["user_id"] == "alice"
    assert session["id"] in [s["id"] for s in alice.get("/v1/hitl/pending").json()]
    result: dict[str, Any] = {}

    def waiter() -> None:
        started = time.monotonic()
        response = live.client("alice").get(
            f"/v1/hitl/{session['id']}/wait", params={"timeout": 20}
        )
        result.update(response.json(), elapsed=time.monotonic() - started)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    decided = admin.post(f"/v1/hitl/{session['id']}/approve", json={"comment": "ok"})
    assert decided.status_code == 200, decided.text
    thread.join(25)
    assert result["status"] == "approved"
    assert result["decided_by"] == "root"  # the admin key's user, not a name the client chose
    assert result["elapsed"] < 5
    again = _error(alice.post(f"/v1/hitl/{session['id']}/reject", json={"reason": "no"}), 409)
    assert "already approved" in again["message"]
    trail = [a["action_type"] for a in alice.get(f"/v1/hitl/{session['id']}/actions").json()]
    assert trail == ["created", "decided"]


def test_hitl_wait_times_out_as_still_pending(live: LiveServer) -> None:
    alice = live.client("alice")
    session = alice.post(
        "/v1/hitl", json={"workflow_id": "w", "step_id": "s", "request_data": 1, "kind": "input"}
    ).json()
    started = time.monotonic()
    waited = alice.get(f"/v1/hitl/{session['id']}/wait", params={"timeout": 0.3})
    assert waited.json()["status"] == "pending"
    assert 0.25 < time.monotonic() - started < 5
    _error(alice.get(f"/v1/hitl/{session['id']}/wait", params={"timeout": 3600}), 422)
    _error(alice.post(f"/v1/hitl/{session['id']}/approve", json={}), 422)  # input: respond
    done = alice.post(f"/v1/hitl/{session['id']}/respond", json={"response_data": {"a": 1}})
    assert done.json()["status"] == "completed"


def test_a_library_process_blocked_in_wait_gets_a_decision_made_over_http(
    live: LiveServer,
) -> None:
    admin = live.client("admin")
    session = admin.post(
        "/v1/hitl", json={"workflow_id": "w", "step_id": "ask", "request_data": {"q": "?"}}
    ).json()
    script = textwrap.dedent(
        f"""
        import json
        from arquivo import Arquivo
        with Arquivo.open({live.db_url!r}) as store:
            print("waiting", flush=True)
            got = store.hitl.wait({session["id"]!r}, timeout=30)
            print(json.dumps({{"status": got.status, "by": got.decided_by}}), flush=True)
        """
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "waiting"
        time.sleep(0.3)
        assert (
            admin.post(f"/v1/hitl/{session['id']}/reject", json={"reason": "no"}).status_code == 200
        )
        out, err = agent.communicate(timeout=30)
    finally:
        agent.kill()
    assert json.loads(out) == {"status": "rejected", "by": "root"}, err


def test_a_revoked_key_stops_working_within_the_cache_time(live: LiveServer) -> None:
    with Arquivo.open(live.db_url) as store:
        record, token = store.api_keys.create("dora")
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{live.base_url}/v1/me", headers=headers).status_code == 200
        store.api_keys.revoke(record.id)
    time.sleep(2.5)  # ServerConfig.auth_cache_ttl_s is 2 s
    assert httpx.get(f"{live.base_url}/v1/me", headers=headers).status_code == 401


def test_the_audit_trail_names_the_keys_user_not_the_workflow(live: LiveServer) -> None:
    alice = live.client("alice")
    asked = {"workflow_id": "audit-flow", "step_id": "s", "request_data": {}}
    made = alice.post("/v1/hitl", json=asked).json()
    alice.get(f"/v1/hitl/{made['id']}", params={"viewed": True})
    live.client("admin").post(f"/v1/hitl/{made['id']}/approve", json={})
    trail = alice.get(f"/v1/hitl/{made['id']}/actions").json()
    actors = [(a["action_type"], a["actor"]) for a in trail]
    assert actors == [("created", "alice"), ("viewed", "alice"), ("decided", "root")]
