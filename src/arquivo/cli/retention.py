"""``arquivo retention``: delete data older than the configured policy, in short chunks."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from arquivo.cli.context import err_console, out_console, print_json, state
from arquivo.domain.retention import RetentionPolicy

__all__ = ["app"]

app = typer.Typer(
    help="Delete data older than the retention policy (ARQUIVO_RETENTION_*_DAYS).",
    no_args_is_help=True,
)


def _days(help_text: str) -> Any:
    return typer.Option(min=0, show_default=False, help=help_text)


def _policy(
    ctx: typer.Context, metrics: int | None, conversations: int | None, hitl: int | None
) -> RetentionPolicy:
    configured = RetentionPolicy.from_settings(state(ctx).settings())
    given = {"metrics_days": metrics, "conversations_days": conversations, "hitl_days": hitl}
    return dataclasses.replace(configured, **{k: v for k, v in given.items() if v is not None})


def _describe(days: int | None) -> str:
    return "keep forever" if days is None else f"{days} days"


@app.command()
def show(
    ctx: typer.Context, json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Show the policy from the environment / .env (unset: kept forever)."""
    policy = RetentionPolicy.from_settings(state(ctx).settings())
    if json:
        print_json(policy)
        return
    table = Table("data", "kept for", "setting", title="Retention policy")
    table.add_row("metrics", _describe(policy.metrics_days), "ARQUIVO_RETENTION_METRICS_DAYS")
    table.add_row(
        "conversations (since last message)",
        _describe(policy.conversations_days),
        "ARQUIVO_RETENTION_CONVERSATIONS_DAYS",
    )
    table.add_row("HITL (since closed)", _describe(policy.hitl_days), "ARQUIVO_RETENTION_HITL_DAYS")
    out_console.print(table)


@app.command()
def apply(
    ctx: typer.Context,
    metrics_days: Annotated[
        int | None, _days("Delete metrics older than this (overrides the setting).")
    ] = None,
    conversations_days: Annotated[
        int | None, _days("Delete sessions whose last message is older than this.")
    ] = None,
    hitl_days: Annotated[
        int | None, _days("Delete HITL sessions closed longer ago than this.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows deleted per transaction.")
    ] = 2_000,
    json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Delete metrics, idle conversations and closed HITL sessions past their age.

    The ages come from ARQUIVO_RETENTION_METRICS_DAYS, _CONVERSATIONS_DAYS and
    _HITL_DAYS (unset: kept forever); --metrics-days, --conversations-days and
    --hitl-days override them. Deletes run in chunks, one short transaction each, so
    writers are never held up for long. Safe to run from cron.
    """
    policy = _policy(ctx, metrics_days, conversations_days, hitl_days)
    if policy.keeps_everything:
        message = "no retention policy is set: nothing to delete"
        if json:
            print_json({"rows": {}, "total": 0, "dry_run": dry_run, "note": message})
        else:
            typer.echo(message + " (set ARQUIVO_RETENTION_*_DAYS or pass --metrics-days...)")
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        disable=json or not err_console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(table: str, rows: int) -> None:
        if table not in tasks:
            tasks[table] = bars.add_task(table)
        bars.update(tasks[table], description=f"{table}: {rows} rows")

    with state(ctx).store() as store, bars:
        report = store.retention.apply(
            policy, dry_run=dry_run, chunk_size=chunk_size, progress=update
        )
    if json:
        print_json(report)
        return
    verb = "would delete" if dry_run else "deleted"
    table = Table("table", f"rows {verb}", title="Retention")
    for name, rows in report.rows.items():
        table.add_row(name, str(rows))
    out_console.print(table)
    for rule, cutoff in report.cutoffs.items():
        typer.echo(f"{rule}: before {cutoff.isoformat(timespec='seconds')}")
    typer.echo(f"{verb} {report.total} rows")
