"""``arquivo agents``: look at the agent registry and roll a definition back."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from arquivo.cli.context import out_console, print_json, state

__all__ = ["app"]

app = typer.Typer(
    help="The agent registry: definitions, their versions, rollbacks.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NameArgument = Annotated[str, typer.Argument(help="The agent's name.", show_default=False)]
# Instructions are shown up to this many characters in tables (all of them in --json).
_PREVIEW = 60


def _preview(text: str | None) -> Text:
    # Text(), not a markup string: names and instructions may hold "[...]".
    if text is None:
        return Text("")
    line = " ".join(text.split())
    return Text(line if len(line) <= _PREVIEW else line[: _PREVIEW - 1] + "…")


def _json_text(value: Any) -> Text:
    return Text("" if value is None else json.dumps(value, ensure_ascii=False))


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


@app.command("list")
def list_agents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the agents with their model and current version, sorted by name."""
    with state(ctx).store() as store:
        agents = store.agents.list()
    if as_json:
        print_json(agents)
        return
    table = Table("name", "model", "version", "tools", "updated", title="Agents")
    for agent in agents:
        tools = len(agent.tools) if isinstance(agent.tools, list) else 0
        table.add_row(
            Text(agent.name),
            Text(agent.model),
            str(agent.version),
            str(tools),
            _when(agent.updated_at),
        )
    out_console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Show this version's definition instead."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show an agent's definition and memory (or an older version's definition)."""
    with state(ctx).store() as store:
        agent = store.agents.get(name, version=version)
    if as_json:
        print_json(agent)
        return
    table = Table(show_header=False, title=Text(f"Agent {agent.name}"))
    table.add_row("version", str(agent.version))
    table.add_row("model", Text(agent.model))
    table.add_row("instructions", Text(agent.instructions or ""))
    table.add_row("tools", _json_text(agent.tools))
    table.add_row("memory", _json_text(agent.memory))
    table.add_row("created", _when(agent.created_at))
    table.add_row("updated", _when(agent.updated_at))
    out_console.print(table)


@app.command()
def versions(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """List every version of an agent's definition, oldest first (the last is current)."""
    with state(ctx).store() as store:
        history = store.agents.versions(name)
    if as_json:
        print_json(history)
        return
    table = Table(
        "version", "model", "instructions", "tools", "created", title=Text(f"Versions of {name}")
    )
    for v in history:
        table.add_row(
            str(v.version),
            Text(v.model),
            _preview(v.instructions),
            _json_text(v.tools),
            _when(v.created_at),
        )
    out_console.print(table)


@app.command()
def rollback(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[
        int, typer.Argument(min=1, help="The version to restore.", show_default=False)
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make VERSION's definition current again, saved as a new version (history is kept).

    The agent's memory is left as it is.
    """
    with state(ctx).store() as store:
        # Both reads fail (NotFoundError) before anything is asked for an unknown
        # agent or version.
        current = store.agents.get(name)
        store.agents.get(name, version=version)
        if not yes:
            typer.confirm(
                f"Restore the definition of version {version} of agent {name!r} "
                f"(now at version {current.version}) as a new version?",
                abort=True,
            )
        agent = store.agents.rollback(name, version)
    if as_json:
        print_json(agent)
    elif agent.version == current.version:
        typer.echo(f"{name}: version {current.version} already has that definition; no change")
    else:
        typer.echo(f"{name}: restored version {version} as version {agent.version}")
