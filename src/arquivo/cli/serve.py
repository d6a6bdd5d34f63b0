"""``arquivo serve``: the HTTP API and web console on the configured database."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

import typer

from arquivo.backup.durations import parse_duration
from arquivo.backup.schedule import ScheduleRun, run_schedule
from arquivo.cli.context import CliState, err_console, state
from arquivo.errors import ConfigurationError, MissingDependencyError, ValidationError

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
    backup_every: Annotated[
        str | None,
        typer.Option(
            "--backup-every",
            help="Also back up at start and then every interval (6h, 30m), in this process.",
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", min=1, help="With --backup-every: keep the newest N."),
    ] = None,
    max_age: Annotated[
        str | None,
        typer.Option("--max-age", help="With --backup-every: remove backups older than (30d)."),
    ] = None,
) -> None:
    """Serve the HTTP API and the web console (http://HOST:PORT/console/)."""
    try:
        import uvicorn

        from arquivo.server.config import SECRET_ENV, is_loopback
        from arquivo.server.workers import (
            APP_FACTORY,
            UVICORN_OPTIONS,
            handoff_supported,
            run_workers,
        )
    except ImportError as exc:
        raise MissingDependencyError(
            f"the server needs the 'server' extra ({exc.name} is missing)",
            hint="pip install 'arquivo[server]'",
        ) from exc
    cli = state(ctx)
    settings = cli.settings()
    every = None if backup_every is None else parse_duration(backup_every, what="--backup-every")
    age = None if max_age is None else parse_duration(max_age, what="--max-age")
    if every is None and (keep_last is not None or age is not None):
        raise ValidationError(
            "--keep-last and --max-age prune after scheduled backups",
            hint="add --backup-every 6h (or use `arquivo backup prune`)",
        )
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
    with _scheduled_backups(cli, every, keep_last, age):
        if workers > 1 and handoff_supported():
            # Our supervisor hands each connection to the least busy worker (see
            # arquivo.server.workers); uvicorn's workers would race for them.
            run_workers(host, port, workers, log_level, lambda text: err_console.print(text))
            return
        uvicorn.run(
            APP_FACTORY,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            **UVICORN_OPTIONS,
        )


@contextlib.contextmanager
def _scheduled_backups(
    cli: CliState, every: timedelta | None, keep_last: int | None, max_age: timedelta | None
) -> Iterator[None]:
    """Run the backup schedule in a thread of this process while the block runs.

    This is the process ``uvicorn.run`` is called in: with ``--workers N`` it is the
    supervisor, not one of the N workers, so exactly one schedule runs however many
    workers serve. When the server stops, a backup in progress finishes first.
    """
    if every is None:
        yield
        return
    stop = threading.Event()

    def report(run: ScheduleRun) -> None:
        if run.backup is not None:
            removed = len(run.pruned.removed) if run.pruned else 0
            err_console.print(f"scheduled backup {run.backup.id}; pruned {removed}", markup=False)
        elif run.error is not None:
            err_console.print(f"scheduled backup failed: {run.error}", markup=False)

    with cli.store() as store:
        thread = threading.Thread(
            target=run_schedule,
            args=(store.backups, every),
            kwargs={"stop": stop, "keep_last": keep_last, "max_age": max_age, "on_run": report},
            name="arquivo-backup-schedule",
            daemon=True,
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
