"""The app factory: ``create_app(settings | store)``; nothing is created at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from arquivo import __version__
from arquivo.server.auth import KeyCache
from arquivo.server.config import ServerConfig
from arquivo.server.errors import install_error_handlers
from arquivo.server.fastlane import FastLane
from arquivo.server.limits import BodySizeLimit
from arquivo.server.routes import (
    agents,
    backups,
    conversations,
    health,
    hitl,
    metrics,
    preferences,
)
from arquivo.server.waiters import DecisionWaiters
from arquivo.server.writes import writer_limiter
from arquivo.settings import Settings
from arquivo.store import Arquivo

__all__ = ["app_from_environment", "create_app"]

_DESCRIPTION = """\
Everything an AI agent app must not lose, over HTTP: preferences, conversations,
metrics, agent definitions and human-in-the-loop decisions.

Every route but `/healthz` and `/readyz` needs an API key (`arquivo keys create`), sent
as `Authorization: Bearer <key>`. A user key reaches its own user's data; an admin key
reaches everything. Errors are `{"error", "message", "hint"}`.
"""


def create_app(
    target: Settings | Arquivo | None = None, *, config: ServerConfig | None = None
) -> FastAPI:
    """Build the HTTP service and console.

    Args:
        target: An open :class:`Arquivo` to serve (its owner closes it), or
            :class:`Settings` (the app opens the store when it starts and closes it when
            it stops); ``None`` reads the settings from the environment at start.
        config: Limits and session options.
    """
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: Arquivo | None = None
        if isinstance(target, Arquivo):
            store = target
        else:
            settings = target if target is not None else Settings.load()
            owned = store = await run_in_threadpool(
                Arquivo.open, settings.database_url, settings=settings
            )
        app.state.store = store
        app.state.keys = KeyCache(store, config.auth_cache_ttl_s)
        app.state.waiters = DecisionWaiters(store)
        app.state.writer = writer_limiter(store, config.concurrent_writes)
        app.state.backup_lock = anyio.Lock()
        # What start-up made (modules, routes, the OpenAPI models, SQLAlchemy's
        # caches: ~140,000 objects) lives as long as the process: moved out of the
        # collector's sight, a full collection no longer walks it while requests wait.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.waiters.close()
            if owned is not None:
                owned.close()

    app = FastAPI(
        title="Arquivo",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.config = config
    install_error_handlers(app)
    for module in (health, preferences, conversations, metrics, agents, hitl, backups):
        app.include_router(module.router)
    from arquivo.server.console import routes as console

    console.install(app)
    # Inside the size limit (added last, so it runs first): the lane sees checked bodies.
    app.add_middleware(FastLane)
    app.add_middleware(BodySizeLimit, limit=config.max_body_bytes)
    return app


def app_from_environment() -> FastAPI:
    """The app on the database the environment names (the factory ``arquivo serve`` runs)."""
    return create_app(Settings.load())
