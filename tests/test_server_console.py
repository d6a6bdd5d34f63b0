"""Every console page renders what it should, over real HTTP (the browser tests drive it)."""

from __future__ import annotations

import re

import httpx

from server_support import LiveServer


def _browser(live: LiveServer, who: str) -> httpx.Client:
    response = httpx.post(
        f"{live.base_url}/console/login",
        data={"key": live.tokens[who]},
        headers={"Origin": live.base_url},
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"].split(";", 1)[0]
    return httpx.Client(base_url=live.base_url, headers={"Cookie": cookie, "Origin": live.base_url})


def test_login_with_a_bad_key_is_refused(live: LiveServer) -> None:
    response = httpx.post(
        f"{live.base_url}/console/login",
        data={"key": "arq_no_pe"},
        headers={"Origin": live.base_url},
    )
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "set-cookie" not in response.headers


def test_every_console_page_renders(live: LiveServer) -> None:
    api = live.client("admin")
    api.post(
        "/v1/users/carol/sessions/chat/messages",
        json={"role": "user", "content": "Fix this:\n```py\nprint(1 < 2)\n```\nplease"},
    )
    api.post(
        "/v1/users/carol/sessions/chat/messages",
        json={"role": "assistant", "content": "Done <b>", "model": "qwen"},
    )
    for ms in (5.0, 15.0, 25.0):
        api.post("/v1/metrics", json={"operation": "console-op", "duration_ms": ms})
    api.put("/v1/agents/console-agent", json={"model": "m1", "instructions": "Be brief."})
    api.put("/v1/agents/console-agent", json={"model": "m2", "instructions": "Be very brief."})
    review = api.post(
        "/v1/hitl",
        json={
            "workflow_id": "wf-console",
            "step_id": "review-step",
            "kind": "review",
            "request_data": {"plan": ["a", "b"]},
            "expires_in": 600,
            "user_id": "carol",
        },
    ).json()
    with _browser(live, "admin") as browser:
        inbox = browser.get("/console/")
        assert inbox.status_code == 200
        assert "wf-console" in inbox.text
        assert "Content-Security-Policy" in inbox.headers
        assert "&#34;plan&#34;" in inbox.text or "&quot;plan&quot;" in inbox.text
        detail = browser.get(f"/console/hitl/{review['id']}")
        assert 'name="response_data"' in detail.text  # a review can be edited
        edited = browser.post(
            f"/console/hitl/{review['id']}",
            data={"action": "respond", "response_data": '{"plan": ["a"]}'},
        )
        assert edited.status_code == 303
        assert api.get(f"/v1/hitl/{review['id']}").json()["response_data"] == {"plan": ["a"]}
        trail = browser.get(f"/console/hitl/{review['id']}").text
        assert "decided" in trail
        assert "completed" in trail
        again = browser.post(
            f"/console/hitl/{review['id']}", data={"action": "reject", "reason": "late"}
        )
        assert again.status_code == 409
        assert "already completed" in again.text
        closed = browser.get("/console/closed").text
        assert review["id"] in closed
        sessions = browser.get("/console/conversations", params={"user_id": "carol"}).text
        assert "/console/conversations/carol/chat" in sessions
        chat = browser.get("/console/conversations/carol/chat").text
        assert "<pre><code>print(1 &lt; 2)\n</code></pre>" in chat
        assert "Done &lt;b&gt;" in chat
        assert "qwen" in chat
        metrics = browser.get("/console/metrics", params={"operation": "console-op"}).text
        assert "<svg" in metrics
        assert re.search(r"console-op</a></th><td class=\"num\">3</td>", metrics)
        agent = browser.get("/console/agents/console-agent", params={"a": 1, "b": 2}).text
        assert '<span class="del">-model: m1</span>' in agent
        assert '<span class="add">+model: m2</span>' in agent
        assert browser.get("/console/agents").status_code == 200
        assert browser.get("/console/static/console.js").status_code == 200
    with _browser(live, "alice") as browser:
        assert browser.get("/console/metrics").status_code == 403
