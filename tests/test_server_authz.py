"""No user key reaches another user's data, on any route (driven by the app's OpenAPI paths).

A new API route is covered without editing this file: it is called with a user key on
another user's data and must refuse (403/404) unless it is listed in SHARED. A route
with a path parameter or a body this file cannot fill makes the test fail, asking for one.
"""

from __future__ import annotations

from typing import Any

import httpx

from arquivo.server import create_app
from server_support import LiveServer

# Routes any key may use, with no user's private data behind them.
SHARED = {
    ("GET", "/v1/me"),
    ("POST", "/v1/metrics"),
    ("GET", "/v1/agents"),
    ("GET", "/v1/agents/{name}"),
    ("GET", "/v1/agents/{name}/versions"),
}
# What bob stored, which must never show up in an answer to alice.
SECRETS = ("bob-data", "bob-flow", "bob-private-message")
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/users/{user_id}/preferences/{key}"): {"value": "hacked"},
    ("POST", "/v1/users/{user_id}/sessions/{session_id}/messages"): {
        "role": "user",
        "content": "hacked",
    },
    ("POST", "/v1/metrics"): {"operation": "authz", "duration_ms": 1},
    ("PUT", "/v1/agents/{name}"): {"model": "hacked"},
    ("POST", "/v1/hitl"): {
        "workflow_id": "authz",
        "step_id": "s",
        "request_data": 1,
        "user_id": "bob",
    },
    ("POST", "/v1/hitl/{session_id}/approve"): {},
    ("POST", "/v1/hitl/{session_id}/reject"): {"reason": "hacked"},
    ("POST", "/v1/hitl/{session_id}/respond"): {"response_data": "hacked"},
    ("POST", "/v1/hitl/{session_id}/cancel"): {},
    ("POST", "/v1/hitl/{session_id}/comments"): {"text": "hacked"},
    ("POST", "/v1/backups"): {"label": "hacked"},
}
QUERIES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/hitl/{session_id}/wait"): {"timeout": 0.2},
    ("GET", "/v1/metrics/timeseries"): {"operation": "authz"},
    ("GET", "/v1/hitl"): {"user_id": "bob"},
    ("GET", "/v1/hitl/pending"): {"user_id": "bob"},
}


def _api_routes() -> list[tuple[str, str, bool]]:
    # The OpenAPI document is the app's public route table: (method, path, has a body).
    paths = create_app().openapi()["paths"]
    return [
        (method.upper(), path, "requestBody" in op)
        for path, ops in paths.items()
        for method, op in sorted(ops.items())
    ]


def _bobs_data(live: LiveServer) -> dict[str, str]:
    bob, admin = live.client("bob"), live.client("admin")
    assert bob.put("/v1/users/bob/preferences/secret", json={"value": "bob-data"}).is_success
    bob.post(
        "/v1/users/bob/sessions/bob-s/messages",
        json={"role": "user", "content": "bob-private-message"},
    )
    hitl = bob.post(
        "/v1/hitl", json={"workflow_id": "bob-flow", "step_id": "s", "request_data": {"b": 1}}
    ).json()
    assert hitl["user_id"] == "bob"
    admin.put("/v1/agents/authz-agent", json={"model": "m-bob"})
    return {
        "user_id": "bob",
        "key": "secret",
        "name": "authz-agent",
        "version": "1",
        "hitl": hitl["id"],
        "session_id": "bob-s",
        "backup_id": "latest",
    }


def _path(path: str, values: dict[str, str]) -> str:
    filled = path.replace(
        "{session_id}", values["hitl"] if path.startswith("/v1/hitl") else values["session_id"]
    )
    for name in ("user_id", "key", "name", "version", "backup_id"):
        filled = filled.replace("{" + name + "}", values[name])
    assert "{" not in filled, f"give this test a value for the parameters of {path}"
    return filled


def test_a_user_key_reaches_no_other_users_data_on_any_route(live: LiveServer) -> None:
    values = _bobs_data(live)
    alice = live.client("alice")
    routes = _api_routes()
    assert len(routes) >= 25
    for method, path, has_body in routes:
        if (method, path) in PUBLIC:
            continue
        body = BODIES.get((method, path))
        if has_body:
            assert (method, path) in BODIES, f"give this test a body for {method} {path}"
        response = alice.request(
            method, _path(path, values), json=body, params=QUERIES.get((method, path))
        )
        if (method, path) in SHARED:
            assert response.status_code < 400, (method, path, response.text)
            assert not any(secret in response.text for secret in SECRETS), (method, path)
            continue
        assert response.status_code in (403, 404), (
            method,
            path,
            response.status_code,
            response.text,
        )
        # Errors may echo the id asked for, never what is stored under it.
        assert not any(secret in response.text for secret in SECRETS), (method, path)

    # Lists without a filter show alice's own sessions only.
    for url in ("/v1/hitl", "/v1/hitl/pending"):
        listed = alice.get(url).json()
        assert all(s["user_id"] == "alice" for s in listed), url

    # Nothing of bob's changed.
    bob, admin = live.client("bob"), live.client("admin")
    assert bob.get("/v1/users/bob/preferences/secret").json()["value"] == "bob-data"
    history = bob.get("/v1/users/bob/sessions/bob-s/messages").json()["messages"]
    assert {m["content"] for m in history} == {"bob-private-message"}
    hitl = bob.get(f"/v1/hitl/{values['hitl']}").json()
    assert hitl["status"] == "pending"
    assert [a["action_type"] for a in bob.get(f"/v1/hitl/{values['hitl']}/actions").json()] == [
        "created"
    ]
    assert admin.get("/v1/agents/authz-agent").json()["model"] == "m-bob"
    # ... and an admin key does reach it.
    assert admin.get("/v1/users/bob/preferences/secret").json()["value"] == "bob-data"


def _console_login(live: LiveServer, who: str) -> str:
    response = httpx.post(
        f"{live.base_url}/console/login",
        data={"key": live.tokens[who]},
        headers={"Origin": live.base_url},
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=strict"):
        assert flag in cookie
    return cookie.split(";", 1)[0]


def test_the_console_keeps_users_apart_and_refuses_cross_site_posts(live: LiveServer) -> None:
    values = _bobs_data(live)
    cookie = _console_login(live, "alice")
    same_site = {"Cookie": cookie, "Origin": live.base_url}
    with httpx.Client(base_url=live.base_url, headers={"Cookie": cookie}) as browser:
        assert browser.get("/console/").status_code == 200
        assert browser.get(f"/console/hitl/{values['hitl']}").status_code == 404
        assert browser.get("/console/conversations/bob/bob-s").status_code == 403
        assert browser.get("/console/conversations", params={"user_id": "bob"}).status_code == 403
        assert "bob-flow" not in browser.get("/console/inbox/fragment").text
        decide = browser.post(
            f"/console/hitl/{values['hitl']}", data={"action": "approve"}, headers=same_site
        )
        assert decide.status_code == 404
        # A form posted from another site is refused, even with a valid cookie.
        own = (
            live.client("alice")
            .post("/v1/hitl", json={"workflow_id": "csrf", "step_id": "s", "request_data": 1})
            .json()
        )
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {}):
            forged = browser.post(
                f"/console/hitl/{own['id']}", data={"action": "approve"}, headers=headers
            )
            assert forged.status_code == 403, headers
        assert live.client("alice").get(f"/v1/hitl/{own['id']}").json()["status"] == "pending"
        ok = browser.post(
            f"/console/hitl/{own['id']}", data={"action": "approve"}, headers=same_site
        )
        assert ok.status_code == 303
    assert live.client("bob").get(f"/v1/hitl/{values['hitl']}").json()["status"] == "pending"
    assert live.client("alice").get(f"/v1/hitl/{own['id']}").json()["status"] == "approved"
    # Without a session, the console sends people to the login page.
    anonymous = httpx.get(f"{live.base_url}/console/", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login"
