"""What every command shares: settings from the global options, output, error display."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from arquivo.db.engine import create_engine, ping
from arquivo.errors import ArquivoError
from arquivo.settings import Settings
from arquivo.store import Arquivo

__all__ = ["CliState", "err_console", "out_console", "print_json", "render_error"]

out_console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class CliState:
    """Options given before the command (``arquivo --url ... db info``)."""

    url: str | None = None

    def settings(self) -> Settings:
        """Settings from the environment and ``.env``, with ``--url`` winning."""
        return Settings.load(database_url=self.url)

    @contextmanager
    def store(self) -> Iterator[Arquivo]:
        """The store on the configured database (migrated per ARQUIVO_AUTO_MIGRATE)."""
        settings = self.settings()
        with Arquivo.open(settings.database_url, settings=settings) as store:
            yield store

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """An engine on the configured database, checked reachable, disposed after."""
        settings = self.settings()
        engine = create_engine(settings.database_url, settings)
        try:
            ping(engine)
            yield engine
        finally:
            engine.dispose()


def state(ctx: typer.Context) -> CliState:
    """The :class:`CliState` of the running command."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def print_json(value: Any) -> None:
    """Print a value as JSON on stdout, for scripts (dataclasses become objects)."""
    typer.echo(json.dumps(_plain(value), indent=2, default=str, ensure_ascii=False))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def render_error(exc: ArquivoError) -> None:
    """Show an Arquivo error to a person: the message, then the hint."""
    # The message may quote user data such as "[bold]": never read it as markup.
    err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
