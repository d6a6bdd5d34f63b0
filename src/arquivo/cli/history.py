"""``arquivo history``: read users' conversation sessions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arquivo.cli.context import out_console, print_json, state

__all__ = ["app"]

app = typer.Typer(help="Read users' conversation sessions.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
User = Annotated[str, typer.Argument(help="The user id.")]


@app.command()
def show(
    ctx: typer.Context,
    user_id: User,
    session_id: Annotated[str, typer.Argument(help="The session id.")],
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Only the last N messages.")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Show a session's messages, oldest first."""
    with state(ctx).store() as store:
        messages = store.conversations.history(user_id, session_id, limit=limit)
    if json_:
        print_json(messages)
        return
    table = Table("id", "time (UTC)", "role", "content", title=f"{user_id} / {session_id}")
    for message in messages:
        table.add_row(
            str(message.id),
            message.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            message.role,
            message.content,
        )
    out_console.print(table)


@app.command()
def sessions(
    ctx: typer.Context,
    user_id: User,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 50,
    json_: JsonOption = False,
) -> None:
    """List a user's sessions, most recently active first."""
    with state(ctx).store() as store:
        found = store.conversations.sessions(user_id, limit=limit)
    if json_:
        print_json(found)
        return
    table = Table(
        "session", "messages", "first (UTC)", "last (UTC)", title=f"Sessions of {user_id}"
    )
    for info in found:
        table.add_row(
            info.session_id,
            str(info.message_count),
            info.first_at.strftime("%Y-%m-%d %H:%M:%S"),
            info.last_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out_console.print(table)
