"""``arquivo metrics``: (to be implemented)."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="(to be implemented)", no_args_is_help=True)
