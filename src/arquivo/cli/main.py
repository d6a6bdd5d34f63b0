"""The root of the ``arquivo`` command and its error boundary."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from arquivo.cli import agents as agents_commands
from arquivo.cli import backup as backup_commands
from arquivo.cli import db as db_commands
from arquivo.cli import history as history_commands
from arquivo.cli import hitl as hitl_commands
from arquivo.cli import kb as kb_commands
from arquivo.cli import keys as keys_commands
from arquivo.cli import metrics as metrics_commands
from arquivo.cli import portability as portability_commands
from arquivo.cli import prefs as prefs_commands
from arquivo.cli import retention as retention_commands
from arquivo.cli import serve as serve_command
from arquivo.cli.context import CliState, err_console, render_error
from arquivo.errors import ArquivoError

__all__ = ["app", "main"]

app = typer.Typer(
    name="arquivo",
    help="Arquivo: everything an AI agent app must not lose, in one database.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_commands.app, name="db")
app.add_typer(prefs_commands.app, name="prefs")
app.add_typer(history_commands.app, name="history")
app.add_typer(metrics_commands.app, name="metrics")
app.add_typer(agents_commands.app, name="agents")
app.add_typer(hitl_commands.app, name="hitl")
app.add_typer(retention_commands.app, name="retention")
portability_commands.register(app)
app.add_typer(backup_commands.app, name="backup")
app.add_typer(keys_commands.app, name="keys")
app.command("serve")(serve_command.serve)
app.add_typer(kb_commands.app, name="kb")


def _version(value: bool) -> None:
    if value:
        from arquivo import __version__

        typer.echo(f"arquivo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            "-u",
            help="Database URL; overrides DATABASE_URL (default sqlite:///./data/arquivo.db).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Arquivo: everything an AI agent app must not lose, in one database."""
    _tolerant_output()
    ctx.obj = CliState(url=url)


def _tolerant_output() -> None:
    # A file name that is not UTF-8 reaches Python as text with lone surrogates, which
    # a strict stream refuses to print: the command would fail after doing its work.
    # Such characters are printed escaped (\udcff) instead.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main() -> None:
    """Entry point of the ``arquivo`` console script."""
    try:
        app()
    except ArquivoError as exc:
        render_error(exc)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # the CLI's top: a person never sees a raw traceback
        if os.environ.get("ARQUIVO_DEBUG"):
            raise
        err_console.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {escape(str(exc))}",
            highlight=False,
        )
        err_console.print("[yellow]hint:[/] rerun with ARQUIVO_DEBUG=1 for the traceback")
        sys.exit(2)
