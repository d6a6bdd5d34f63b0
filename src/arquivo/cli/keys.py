"""``arquivo keys``: the API keys of the HTTP service (shown once, stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arquivo.cli.context import out_console, print_json, state

__all__ = ["app"]

app = typer.Typer(
    help="API keys for `arquivo serve`: create (shown once), list, revoke.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("create")
def create(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", help="Whose data the key reaches.", show_default=False)
    ],
    admin: Annotated[
        bool, typer.Option("--admin", help="Reach every user's data and the admin routes.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="A label to recognise the key by.")
    ] = None,
    if_none: Annotated[
        bool,
        typer.Option(
            "--if-none",
            help="Do nothing when an active key of this kind (admin or not) already exists.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print its token: it is shown this once, and only its hash is kept."""
    with state(ctx).store() as store:
        if if_none and store.api_keys.active_count(admin=admin):
            kind = "admin" if admin else "user"
            if as_json:
                print_json({"created": False})
            else:
                typer.echo(f"an active {kind} key exists already; none created (see `keys list`)")
            return
        record, token = store.api_keys.create(user, admin=admin, name=name)
    if as_json:
        print_json(
            {
                "created": True,
                "id": record.id,
                "user_id": record.user_id,
                "is_admin": record.is_admin,
                "name": record.name,
                "token": token,
            }
        )
        return
    typer.echo(f"created key {record.id} for {record.user_id}{' (admin)' if admin else ''}")
    typer.echo(f"token (shown once, keep it secret): {token}")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Hide revoked keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List keys (never their tokens)."""
    with state(ctx).store() as store:
        keys = store.api_keys.list(include_revoked=not active)
    if as_json:
        print_json(keys)
        return
    table = Table("id", "user", "admin", "name", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id,
            key.user_id,
            "yes" if key.is_admin else "",
            key.name or "",
            key.created_at.isoformat(sep=" ", timespec="seconds"),
            "" if key.revoked_at is None else key.revoked_at.isoformat(sep=" ", timespec="seconds"),
        )
    out_console.print(table)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (see `keys list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which key would be revoked, change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: it stops working within seconds (servers cache checks briefly)."""
    with state(ctx).store() as store:
        key = store.api_keys.get(key_id)
        if dry_run:
            typer.echo(f"would revoke key {key.id} of {key.user_id}")
            return
        if not yes and not typer.confirm(f"revoke key {key.id} of {key.user_id}?"):
            raise typer.Exit(1)
        key = store.api_keys.revoke(key_id)
    if as_json:
        print_json(key)
    else:
        typer.echo(f"revoked key {key.id} of {key.user_id}")
