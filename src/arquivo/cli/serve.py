"""``arquivo serve``: the HTTP API and web console on the configured database."""

from __future__ import annotations

import os
import secrets
from typing import Annotated

import typer

from arquivo.cli.context import err_console, state
from arquivo.errors import ConfigurationError, MissingDependencyError

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8765,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 1,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's log level (info, warning...).")
    ] = "info",
) -> None:
    """Serve the HTTP API and the web console (http://HOST:PORT/console/)."""
    try:
        import uvicorn

        from arquivo.server.config import SECRET_ENV, is_loopback
    except ImportError as exc:
        raise MissingDependencyError(
            f"the server needs the 'server' extra ({exc.name} is missing)",
            hint="pip install 'arquivo[server]'",
        ) from exc
    cli = state(ctx)
    settings = cli.settings()
    # Migrate once here, not in every worker, and count the keys that can log in.
    with cli.store() as store:
        keys = store.api_keys.active_count()
    if keys == 0 and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} with no API key: nobody could use the service, "
            "and it must never run open to the network",
            hint="create one first: arquivo keys create --user admin --admin",
        )
    if keys == 0:
        err_console.print(
            "[yellow]no API key yet:[/] create one with `arquivo keys create --user admin --admin`"
        )
    if cli.url:
        os.environ["DATABASE_URL"] = settings.database_url
    # Workers are separate processes: they must share the cookie signing secret.
    os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(32))
    err_console.print(
        f"console: http://{host}:{port}/console/  API docs: http://{host}:{port}/docs"
    )
    uvicorn.run(
        "arquivo.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
    )
