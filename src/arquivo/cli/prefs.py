"""``arquivo prefs``: read and change a user's preferences."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from arquivo.cli.context import out_console, print_json, state
from arquivo.errors import ValidationError

__all__ = ["app"]

app = typer.Typer(help="Read and change a user's preferences.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
User = Annotated[str, typer.Argument(help="The user id.")]
Key = Annotated[str, typer.Argument(help="The preference key.")]


@app.command("get")
def get_(ctx: typer.Context, user_id: User, key: Key, json_: JsonOption = False) -> None:
    """Show one preference (exit 1 if it is not set)."""
    missing = object()
    with state(ctx).store() as store:
        value = store.preferences.get(user_id, key, default=missing)
    if value is missing:
        typer.echo(f"{user_id} has no preference {key!r}", err=True)
        raise typer.Exit(1)
    if json_:
        print_json(value)
    else:
        typer.echo(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


@app.command("set")
def set_(
    ctx: typer.Context,
    user_id: User,
    key: Key,
    value: Annotated[str, typer.Argument(help="The value (text, or JSON with --json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Parse VALUE as JSON (numbers, lists, objects).")
    ] = False,
) -> None:
    """Set one preference, replacing any value it had."""
    parsed: object = value
    if as_json:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"VALUE is not valid JSON: {exc}", hint="quote text as JSON: '\"dark\"'"
            ) from exc
        except RecursionError as exc:
            raise ValidationError(
                "VALUE is nested too deeply to read", hint="flatten the structure"
            ) from exc
    with state(ctx).store() as store:
        store.preferences.set(user_id, key, parsed)
    typer.echo(f"set {key} for {user_id}")


@app.command("list")
def list_(ctx: typer.Context, user_id: User, json_: JsonOption = False) -> None:
    """Show every preference of a user."""
    with state(ctx).store() as store:
        values = store.preferences.all(user_id)
    if json_:
        print_json(values)
        return
    table = Table("key", "value", title=f"Preferences of {user_id}")
    for key, value in values.items():
        table.add_row(key, json.dumps(value, ensure_ascii=False))
    out_console.print(table)


@app.command("delete")
def delete(ctx: typer.Context, user_id: User, key: Key) -> None:
    """Remove one preference (exit 1 if it was not set)."""
    with state(ctx).store() as store:
        existed = store.preferences.delete(user_id, key)
    if not existed:
        typer.echo(f"{user_id} had no preference {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted {key} for {user_id}")
