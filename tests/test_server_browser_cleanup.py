"""Runs after ``test_server_browser.py`` (files run in name order): nothing of it lingers."""

from __future__ import annotations

import asyncio


def test_no_event_loop_is_left_running_by_the_browser_tests() -> None:
    # Playwright's sync API runs an event loop on the main thread while it is open; a
    # session-scoped browser fixture kept it running for every later test module.
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
