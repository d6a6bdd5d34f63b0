"""``arquivo hitl``: see the sessions waiting for a person, and decide them from a shell."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from arquivo.cli.context import out_console, print_json, state
from arquivo.errors import ValidationError
from arquivo.models.hitl import HITL_STATUSES
from arquivo.values import HITLRequest

__all__ = ["app"]

app = typer.Typer(
    help="Human-in-the-loop sessions: list, inspect and decide what agents wait for.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
IdArgument = Annotated[str, typer.Argument(help="The session's id.", show_default=False)]
ActorOption = Annotated[
    str, typer.Option("--actor", help="Who decides (kept in the audit trail).", show_default=False)
]
DataOption = Annotated[
    str | None, typer.Option("--data", help="Response data as JSON.", show_default=False)
]
# Request data is shown up to this many characters in tables (all of it in --json).
_PREVIEW = 60


def _parse(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"--data is not valid JSON: {exc.msg} at position {exc.pos}",
            hint="quote it for the shell, e.g. --data '{\"ok\": true}'",
        ) from exc
    except RecursionError as exc:
        raise ValidationError(
            "--data is nested too deeply to read", hint="flatten the structure"
        ) from exc


def _json_text(value: Any, *, preview: bool = False) -> Text:
    text = "" if value is None else json.dumps(value, ensure_ascii=False)
    if preview and len(text) > _PREVIEW:
        text = text[: _PREVIEW - 1] + "…"
    return Text(text)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def _decided(session: HITLRequest, as_json: bool) -> None:
    if as_json:
        print_json(session)
    else:
        typer.echo(f"{session.id}: {session.status} by {session.decided_by}")


@app.command("list")
def list_sessions(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help=f"Only this status: {', '.join(HITL_STATUSES)}."),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", help="Only this workflow's sessions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List sessions, newest first."""
    with state(ctx).store() as store:
        sessions = store.hitl.list(status=status, workflow_id=workflow, limit=limit)
    if as_json:
        print_json(sessions)
        return
    table = Table("id", "status", "kind", "workflow", "step", "request", "created", title="HITL")
    for s in sessions:
        table.add_row(
            s.id,
            s.status,
            s.kind,
            Text(s.workflow_id or ""),
            Text(s.step_id or ""),
            _json_text(s.request_data, preview=True),
            _when(s.created_at),
        )
    out_console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    id: IdArgument,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Record that this person viewed it.", show_default=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a session and its audit trail."""
    with state(ctx).store() as store:
        session = store.hitl.get(id, viewed_by=actor)
        actions = store.hitl.actions(id)
    if as_json:
        print_json({"session": session, "actions": actions})
        return
    table = Table(show_header=False, title=Text(f"HITL session {session.id}"))
    table.add_row("status", session.status)
    table.add_row("kind", session.kind)
    table.add_row("workflow", Text(session.workflow_id or ""))
    table.add_row("step", Text(session.step_id or ""))
    table.add_row("user", Text(session.user_id or ""))
    table.add_row("request", _json_text(session.request_data))
    table.add_row("response", _json_text(session.response_data))
    table.add_row("decided by", Text(session.decided_by or ""))
    table.add_row("created", _when(session.created_at))
    table.add_row("expires", _when(session.expires_at))
    table.add_row("completed", _when(session.completed_at))
    out_console.print(table)
    trail = Table("when", "event", "actor", "data", title="Audit trail")
    for action in actions:
        trail.add_row(
            _when(action.created_at),
            action.action_type,
            Text(action.actor or ""),
            _json_text(action.data),
        )
    out_console.print(trail)


@app.command()
def approve(
    ctx: typer.Context,
    id: IdArgument,
    actor: ActorOption,
    data: DataOption = None,
    comment: Annotated[str | None, typer.Option("--comment", help="A remark to keep.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a pending session (the waiting agent wakes up)."""
    response = _parse(data)
    with state(ctx).store() as store:
        session = store.hitl.approve(id, actor=actor, response_data=response, comment=comment)
    _decided(session, as_json)


@app.command()
def reject(
    ctx: typer.Context,
    id: IdArgument,
    actor: ActorOption,
    reason: Annotated[str, typer.Option("--reason", help="Why.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Reject a pending session, saying why."""
    with state(ctx).store() as store:
        session = store.hitl.reject(id, actor=actor, reason=reason)
    _decided(session, as_json)


@app.command()
def respond(
    ctx: typer.Context,
    id: IdArgument,
    actor: ActorOption,
    data: Annotated[str, typer.Option("--data", help="The answer, as JSON.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Answer an input (or review) session with data."""
    response = _parse(data)
    with state(ctx).store() as store:
        session = store.hitl.respond(id, actor=actor, response_data=response)
    _decided(session, as_json)


@app.command()
def cancel(
    ctx: typer.Context,
    id: IdArgument,
    actor: ActorOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw a pending session."""
    with state(ctx).store() as store:
        session = store.hitl.cancel(id, actor=actor, reason=reason)
    _decided(session, as_json)


@app.command()
def expire(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Mark every pending session past its deadline as expired (safe to run from cron)."""
    with state(ctx).store() as store:
        count = store.hitl.expire_due()
    if as_json:
        print_json({"expired": count})
    else:
        typer.echo(f"expired {count} session(s)")
