"""The fast lane answers the hot routes exactly as the FastAPI routes do, and hands on the rest.

A query parameter the lane does not know (``x=1``) sends a request through FastAPI,
which ignores it: the same call answered both ways must give the same document.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from arquivo import Arquivo
from server_support import LiveServer


def _same(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> Any:
    fast = client.get(path, params=params)
    slow = client.get(path, params={**(params or {}), "x": "1"})
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.json() == slow.json()
    return fast.json()


def test_both_lanes_give_the_same_answers(live: LiveServer) -> None:
    alice = live.client("alice")
    admin = live.client("admin")
    url = "/v1/users/alice/sessions/lane/messages"
    for i in range(5):
        sent = {"role": "user", "content": f"m{i} ```code``` é", "extra_data": {"i": [i, None]}}
        assert alice.post(url, json=sent).status_code == 201
    page = _same(alice, url, {"limit": 3})
    assert [m["content"][:2] for m in page["messages"]] == ["m2", "m3", "m4"]
    older = _same(alice, url, {"limit": 3, "before": page["next_before"]})
    assert [m["content"][:2] for m in older["messages"]] == ["m0", "m1"]
    assert older["next_before"] is None
    _same(admin, url)
    alice.put("/v1/users/alice/preferences/lane", json={"value": {"big": 2**70, "f": 0.5}})
    assert _same(alice, "/v1/users/alice/preferences/lane")["value"] == {"big": 2**70, "f": 0.5}
    missing = _same(alice, "/v1/users/alice/preferences/nope")
    assert missing["error"] == "not_found"
    for step in ("s1", "s2"):
        asked = {"workflow_id": "lane", "step_id": step, "request_data": {"x": 1}}
        asked["user_id"] = "alice"
        assert admin.post("/v1/hitl", json=asked).status_code == 201
    # Other tests share this server and may leave alice's requests pending: filter on ours.
    mine = _same(alice, "/v1/hitl/pending", {"workflow_id": "lane"})
    assert sorted(s["step_id"] for s in mine) == ["s1", "s2"]
    assert _same(admin, "/v1/hitl/pending", {"workflow_id": "lane", "user_id": "alice"}) == mine
    limited = {"user_id": "alice", "workflow_id": "lane", "limit": 1}
    assert _same(alice, "/v1/hitl/pending", limited) == mine[:1]


def test_what_the_lane_cannot_check_gets_the_routes_errors(live: LiveServer) -> None:
    alice = live.client("alice")
    url = "/v1/users/alice/sessions/lane-errors/messages"
    assert alice.get(url, params={"limit": 0}).json()["fields"][0]["field"] == "limit"
    assert alice.get(url, params={"limit": "abc"}).status_code == 422
    assert alice.get(url, params={"before": -1}).status_code == 422
    assert alice.get(url, params=[("limit", "1"), ("limit", "2")]).status_code == 200
    assert live.client(None).get(url).status_code == 401
    assert live.client("bob").get(url).status_code == 403
    assert live.client("bob").get("/v1/users/alice/preferences/x").status_code == 403
    pending = live.client("bob").get("/v1/hitl/pending", params={"user_id": "alice"})
    assert pending.status_code == 403
    bad = alice.post(url, json={"role": "robot", "content": "x"})
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "role"
    garbled = alice.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert garbled.status_code == 422
    assert live.client("bob").post(url, json={"role": "user", "content": "x"}).status_code == 403
    assert alice.get(url).json()["messages"] == []  # nothing was written

    def chunks() -> Any:
        yield b'{"role": "user", '
        yield b'"content": "chunked"}'

    chunked = alice.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 201, chunked.text
    by_header = httpx.get(
        f"{live.base_url}{url}", headers={"X-API-Key": live.tokens["alice"]}, timeout=30
    )
    assert [m["content"] for m in by_header.json()["messages"]] == ["chunked"]


def test_a_revoked_key_stops_working_on_the_lane_too(live: LiveServer) -> None:
    with Arquivo.open(live.db_url) as store:
        record, token = store.api_keys.create("erin")
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{live.base_url}/v1/users/erin/sessions/s/messages"
        assert httpx.get(url, headers=headers).status_code == 200
        store.api_keys.revoke(record.id)
    time.sleep(2.5)  # ServerConfig.auth_cache_ttl_s is 2 s
    assert httpx.get(url, headers=headers).status_code == 401
    posted = httpx.post(url, headers=headers, json={"role": "user", "content": "x"})
    assert posted.status_code == 401
