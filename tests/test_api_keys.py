"""API keys: stored hashed, shown once, revocable; the CLI's `keys` and `serve` guards."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from arquivo import Arquivo
from conftest import Backend
from test_cli import run, run_json


def test_keys_are_stored_hashed_and_authenticate_until_revoked(store: Arquivo) -> None:
    record, token = store.api_keys.create("alice", name="laptop")
    assert token.startswith(f"arq_{record.id}_")
    with store.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT token_hash FROM api_keys")).scalar_one()
    assert token not in stored
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    found = store.api_keys.authenticate(token)
    assert found is not None
    assert (found.user_id, found.is_admin, found.name) == ("alice", False, "laptop")
    assert store.api_keys.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.api_keys.authenticate(f"arq_{record.id}") is None
    assert store.api_keys.authenticate("nonsense") is None
    revoked = store.api_keys.revoke(record.id)
    assert revoked.revoked_at is not None
    assert store.api_keys.authenticate(token) is None
    assert store.api_keys.active_count() == 0
    assert [k.id for k in store.api_keys.list()] == [record.id]
    assert store.api_keys.list(include_revoked=False) == []


def test_tokens_with_underscores_in_their_secret_work(store: Arquivo) -> None:
    # The secret is URL-safe base64: some tokens contain "_" after the id.
    tokens = [store.api_keys.create("u")[1] for _ in range(20)]
    assert all(store.api_keys.authenticate(t) is not None for t in tokens)


def test_cli_keys_create_list_revoke(backend: Backend) -> None:
    env = {"DATABASE_URL": backend.url}
    made = run_json("keys", "create", "--user", "admin", "--admin", "--name", "ops", env=env)
    assert made["created"] is True
    assert made["is_admin"] is True
    again = run_json("keys", "create", "--user", "admin", "--admin", "--if-none", env=env)
    assert again == {"created": False}
    listed = run_json("keys", "list", env=env)
    assert [k["id"] for k in listed] == [made["id"]]
    assert "token" not in listed[0]
    assert made["token"] not in run("keys", "list", env=env).stdout
    dry = run("keys", "revoke", made["id"], "--dry-run", env=env)
    assert dry.returncode == 0
    assert run_json("keys", "list", "--active", env=env) != []
    assert run("keys", "revoke", made["id"], "--yes", env=env).returncode == 0
    assert run_json("keys", "list", "--active", env=env) == []
    missing = run("keys", "revoke", "nope", "--yes", env=env)
    assert missing.returncode == 1
    assert "no API key" in missing.stderr


def test_serve_refuses_a_public_address_without_any_key(sqlite_backend: Backend) -> None:
    result = run("serve", "--host", "0.0.0.0", env={"DATABASE_URL": sqlite_backend.url})
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "arquivo keys create" in result.stderr
    assert "Traceback" not in result.stderr
