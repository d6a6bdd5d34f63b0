"""``arquivo export``, ``import`` and ``forget-user``: a user's (or all) data, out or gone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from arquivo.cli.context import out_console, print_json, state
from arquivo.cli.progress import table_progress
from arquivo.portability import export_data, import_data
from arquivo.portability.importer import DEFAULT_BATCH

__all__ = ["export_command", "forget_user_command", "import_command", "register"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")]


def export_command(
    ctx: typer.Context,
    to: Annotated[
        Path,
        typer.Option(
            "--to",
            help="The file to write: FILE.jsonl, or FILE.jsonl.gz to compress it. "
            "It appears only once complete.",
            dir_okay=False,
        ),
    ],
    user: Annotated[
        str | None,
        typer.Option("--user", help="Export only this user's data.", show_default=False),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Export every row (or one user's) to a JSON Lines file, from one consistent snapshot."""
    with state(ctx).store() as store, table_progress(enabled=not json) as progress:
        report = export_data(store, to, user_id=user, progress=progress)
    if json:
        print_json(report)
        return
    table = Table("table", "rows", title=f"Exported to {report.path}")
    for name, rows in report.rows.items():
        table.add_row(name, str(rows))
    out_console.print(table)
    typer.echo(
        f"{report.total_rows} rows, {report.bytes} bytes in {report.seconds:.1f} s "
        f"({report.dialect}, revision {report.revision})"
    )


def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A file written by `arquivo export` (.jsonl or .jsonl.gz).")
    ],
    atomic: Annotated[
        bool,
        typer.Option(
            "--atomic",
            help="One transaction for the whole import: all or nothing (on SQLite this "
            "holds the write lock throughout).",
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help=f"Rows per INSERT and per transaction (default: {DEFAULT_BATCH:,} per INSERT, "
            "transactions that hold the write lock about 0.2 s).",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="Processes that check the file side by side before anything is written "
            "(default: one per CPU and per 16 MiB of file, at most 4).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Import an export file, keeping ids. Idempotent: rows already present are skipped.

    The whole file is checked first: a malformed or truncated file is refused with its
    line number and nothing is written.
    """
    with state(ctx).store() as store, table_progress(enabled=not json) as progress:
        report = import_data(
            store, file, progress=progress, batch_size=batch_size, atomic=atomic, jobs=jobs
        )
    if json:
        print_json(report)
        return
    table = Table("table", "inserted", "skipped (already there)", title=f"Imported {file}")
    for name, inserted in report.inserted.items():
        table.add_row(name, str(inserted), str(report.skipped[name]))
    out_console.print(table)
    typer.echo(
        f"{sum(report.inserted.values())} rows inserted, {sum(report.skipped.values())} "
        f"skipped, from a {report.source_dialect} export, in {report.seconds:.1f} s"
    )


def forget_user_command(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user whose data is deleted.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Delete all of a user's data, in one transaction, and report what was removed.

    Preferences, messages, HITL sessions with their audit trail, and any other table
    with a user_id column. Shared data (metrics, agents) stays. Export the user first
    (`arquivo export --user ID`) if they asked for a copy.
    """
    with state(ctx).store() as store:
        if not dry_run and not yes:
            counted = store.users.data(user_id)
            typer.confirm(
                f"Delete {counted.total} rows of user {user_id!r} from {store.url}? "
                "This cannot be undone",
                abort=True,
            )
        report = store.users.forget(user_id, dry_run=dry_run)
    if json:
        print_json(report)
        return
    verb = "would delete" if dry_run else "deleted"
    table = Table("table", "rows", title=f"User {user_id}: {verb}")
    for name, rows in report.rows.items():
        table.add_row(name, str(rows))
    out_console.print(table)
    typer.echo(f"{verb} {report.total} rows of user {user_id}")


def register(app: typer.Typer) -> None:
    """Add ``export``, ``import`` and ``forget-user`` to the root command."""
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("forget-user")(forget_user_command)
