"""The console in real headless Chromium (Debian's, driven by Playwright): the full HITL loop.

An agent process blocks in ``store.hitl.wait()``; a person logs in, sees the request
appear in the inbox without reloading, approves it, and the agent wakes with the
decision. Screenshots go to ``test-artifacts/screenshots/`` (gitignored).

Chromium is installed by the test run when missing (``apt-get``, as root); with
``CI=true`` a Chromium that cannot be had fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_support import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _install_chromium() -> str | None:
    """Install Debian's chromium; the reason when that is impossible."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium is missing and apt-get cannot run here (needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    started = time.monotonic()
    for step in (["apt-get", "update", "-q"], install):
        done = subprocess.run(step, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            return f"{' '.join(step)} failed: {done.stderr[-2000:]}"
    print(f"installed chromium in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """A headless Debian Chromium under Playwright (installed first if needed).

    Module-scoped: Playwright's sync API runs an event loop on this thread while it is
    open, and a later test calling ``asyncio.run()`` would find it running.
    """
    problem = None if CHROMIUM.exists() else _install_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        problem = problem or f"playwright is not installed: {exc}"
    if problem is not None or not CHROMIUM.exists():
        reason = problem or f"{CHROMIUM} is still missing"
        if IN_CI:
            pytest.fail(f"CI=true and Chromium is unavailable: {reason}", pytrace=False)
        pytest.skip(f"browser tests skipped: {reason}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _agent_waiting(db_url: str, session_id: str) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        f"""
        import json
        from arquivo import Arquivo
        with Arquivo.open({db_url!r}) as store:
            print("waiting", flush=True)
            got = store.hitl.wait({session_id!r}, timeout=90)
            print(json.dumps({{"status": got.status, "by": got.decided_by,
                              "data": got.response_data}}), flush=True)
        """
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert agent.stdout is not None
    assert agent.stdout.readline().strip() == "waiting"
    return agent


def test_a_person_approves_in_the_browser_and_the_waiting_agent_wakes(
    live: LiveServer, chromium: object
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    api = live.client("alice")
    first = api.post(
        "/v1/hitl",
        json={
            "workflow_id": f"e2e-deploy-{live.backend}",
            "step_id": "run-migration",
            "request_data": {"tool": "psql", "args": ["-f", "migrate.sql"]},
            "expires_in": 3600,
        },
    ).json()
    agent = _agent_waiting(live.db_url, first["id"])
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{live.base_url}/console/")
        expect(page).to_have_url(f"{live.base_url}/console/login")
        page.get_by_label("API key").fill(live.tokens["alice"])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Waiting for a decision")).to_be_visible()
        expect(
            page.get_by_role("heading", name=f"e2e-deploy-{live.backend} · run-migration")
        ).to_be_visible()
        expect(page.locator("#inbox")).to_contain_text('"migrate.sql"')

        # A request made after the page loaded shows up without a reload.
        later = api.post(
            "/v1/hitl",
            json={
                "workflow_id": f"e2e-later-{live.backend}",
                "step_id": "ask",
                "request_data": {"question": "Proceed?"},
                "kind": "input",
            },
        ).json()
        expect(page.get_by_role("heading", name=f"e2e-later-{live.backend} · ask")).to_be_visible(
            timeout=15_000
        )
        items = page.locator("li.request").all()
        assert items[0].get_attribute("data-id") == later["id"]  # newest first
        page.screenshot(path=str(ARTIFACTS / f"inbox-{live.backend}.png"), full_page=True)

        page.get_by_role(
            "link", name=f"e2e-deploy-{live.backend} · run-migration", exact=True
        ).click()
        page.get_by_label("Comment (optional)").fill("looks safe")
        page.get_by_role("button", name="Approve", exact=True).click()
        expect(page.locator("#status")).to_have_text("approved")
        expect(page.get_by_role("status")).to_contain_text("The waiting agent has been woken")
        expect(page.locator("ol.trail")).to_contain_text("decided by alice")
        page.screenshot(path=str(ARTIFACTS / f"decided-{live.backend}.png"), full_page=True)

        out, err = agent.communicate(timeout=30)
        assert json.loads(out) == {"status": "approved", "by": "alice", "data": None}, err

        phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        try:
            small = phone.new_page()
            small.goto(f"{live.base_url}/console/login")
            small.get_by_label("API key").fill(live.tokens["alice"])
            small.get_by_role("button", name="Log in").click()
            expect(
                small.get_by_role("heading", name=f"e2e-later-{live.backend} · ask")
            ).to_be_visible()
            width = small.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the inbox overflows a phone screen ({width}px)"
            small.screenshot(path=str(ARTIFACTS / f"inbox-phone-{live.backend}.png"))
        finally:
            phone.close()
    finally:
        context.close()
        agent.kill()
