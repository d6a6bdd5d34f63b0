"""``arquivo db``: schema migrations and a look inside the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.markup import escape
from rich.progress import Progress, TaskID, TextColumn
from rich.table import Table

from arquivo.cli.context import err_console, out_console, print_json, state
from arquivo.db import migrate
from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.db.urls import hide_password, sqlite_path
from arquivo.errors import MigrationError

__all__ = ["app"]

app = typer.Typer(help="Schema migrations and a look inside the database.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    with state(ctx).engine() as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    if before == after:
        typer.echo(f"already at {after}")
    else:
        typer.echo(f"upgraded {before or 'empty database'} -> {after}")


@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1, -2... or base.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Revert migrations down to REVISION. Reverting drops the data of removed tables."""
    migrate.check_revision(revision)  # before it is shown in the question
    with state(ctx).engine() as engine:
        before = migrate.current_revision(engine)
        if not yes:
            typer.confirm(
                f"Downgrade {hide_password(engine.url)} from {before} to {revision}? "
                "Tables and columns that the reverted revisions added are dropped with "
                "their data",
                abort=True,
            )
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
    typer.echo(f"downgraded {before or 'empty database'} -> {after or 'base'}")


@app.command()
def current(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the revision the database is at."""
    with state(ctx).engine() as engine:
        revision = migrate.current_revision(engine)
    head = migrate.head_revision()
    if json:
        print_json({"current": revision, "head": head, "up_to_date": revision == head})
        return
    note = "(head)" if revision == head else f"(head is {head}: run `arquivo db upgrade`)"
    typer.echo(f"{revision or 'base (no Arquivo schema)'} {note}")


@app.command()
def history(json: JsonOption = False) -> None:
    """List the shipped migrations, newest first."""
    revisions = migrate.history()
    if json:
        print_json([r.__dict__ for r in revisions])
        return
    for rev in revisions:
        head = " (head)" if rev.is_head else ""
        typer.echo(f"{rev.down_revision or '<base>'} -> {rev.id}{head}, {rev.message}")


@app.command()
def revision(
    ctx: typer.Context,
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")],
    autogenerate: Annotated[
        bool, typer.Option("--autogenerate", help="Fill it with the models' differences.")
    ] = False,
) -> None:
    """Write a new migration script into the package (for Arquivo's developers)."""
    with state(ctx).engine() as engine:
        path = migrate.revision(engine, message, autogenerate=autogenerate)
    typer.echo(f"wrote {path}")


@app.command()
def check(ctx: typer.Context) -> None:
    """Verify that the database schema matches the models (exit 1 if not)."""
    with state(ctx).engine() as engine:
        diffs = migrate.check(engine)
    if diffs:
        raise MigrationError(
            "the database schema differs from the models:\n  " + "\n  ".join(diffs),
            hint="run `arquivo db upgrade`; if it is at head, a migration is missing",
        )
    typer.echo("the database schema matches the models")


@app.command()
def tables(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the database's tables with their row counts."""
    with state(ctx).engine() as engine, translate_errors(engine.dialect.name):
        names = sorted(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            counts = {
                name: connection.execute(
                    sa.select(sa.func.count()).select_from(sa.table(name))
                ).scalar_one()
                for name in names
            }
    if json:
        print_json([{"table": name, "rows": rows} for name, rows in counts.items()])
        return
    table = Table("table", "rows", title="Tables")
    for name, rows in counts.items():
        table.add_row(name, str(rows))
    out_console.print(table)


@app.command()
def info(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the database URL (password hidden), engine, revision and size."""
    with state(ctx).engine() as engine:
        revision = migrate.current_revision(engine)
        version = engine.dialect.server_version_info
        details: dict[str, Any] = {
            "url": hide_password(engine.url),
            "dialect": engine.dialect.name,
            "server_version": ".".join(str(part) for part in version or ()),
            "revision": revision,
            "head": migrate.head_revision(),
            "up_to_date": revision == migrate.head_revision(),
            "size_bytes": get_dialect(engine.dialect.name).database_size(engine),
        }
    if json:
        print_json(details)
        return
    table = Table(show_header=False, title="Arquivo database")
    for key, value in details.items():
        table.add_row(key, "" if value is None else str(value))
    out_console.print(table)


# --- repair: integrity, recover, vacuum (logic in arquivo.repair) -------------------


@app.command()
def integrity(
    ctx: typer.Context,
    full: Annotated[
        bool,
        typer.Option("--full", help="Thorough check (SQLite integrity_check; slower)."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check the database for damage; exit 1 when something is wrong.

    SQLite: PRAGMA quick_check (integrity_check with --full) and foreign_key_check.
    PostgreSQL: a read of every table, and amcheck on the indexes when installed.
    """
    from arquivo import repair
    from arquivo.db.engine import create_engine

    settings = state(ctx).settings()
    engine = create_engine(settings.database_url, settings)
    try:
        report = repair.check_integrity(engine, full=full)
        url = hide_password(engine.url)
        salvageable = get_dialect(engine.dialect.name).can_salvage_rows
        damaged_file = sqlite_path(engine.url)
    finally:
        engine.dispose()
    if json:
        print_json(report)
    else:
        for check in report.checks:
            typer.echo(f"checked: {check}")
        if report.ok:
            typer.echo(f"{url}: no problems found")
    if not report.ok:
        for problem in report.problems[:50]:
            err_console.print(f"[bold red]damage:[/] {escape(problem)}", highlight=False)
        hint = "restore the last backup (`arquivo backup list`, then `arquivo backup restore ID`)"
        if salvageable:
            name = str(damaged_file) if damaged_file is not None else "FILE"
            hint += f"; or salvage its rows: `arquivo db recover {name} --output NEW.db`"
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
        raise typer.Exit(1)


@app.command()
def recover(
    source: Annotated[Path, typer.Argument(help="The damaged SQLite file (left unchanged).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The new database to write (must not exist).")
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="auto (the sqlite3 shell's .recover when installed), shell, or salvage "
            "(Arquivo's own reader).",
        ),
    ] = "auto",
    json: JsonOption = False,
) -> None:
    """Salvage the rows of a corrupt SQLite file into a new database.

    The new database is made by the migrations, filled, checked, then renamed into
    place; rows it refuses (e.g. whose parent was lost) go to OUTPUT.rejected.jsonl.
    """
    from arquivo import repair

    bars = Progress(
        TextColumn("{task.description}"),
        console=err_console,
        disable=json or not err_console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def update(table: str, rows: int) -> None:
        if table not in tasks:
            tasks[table] = bars.add_task(table)
        bars.update(tasks[table], description=f"{table}: {rows} rows recovered")

    with bars:
        report = repair.recover_sqlite(source, output, method=method, progress=update)
    if json:
        print_json(report)
        return
    table = Table("table", "rows recovered", "rejected", "read errors skipped")
    for name, rows in report.rows.items():
        table.add_row(
            name,
            str(rows),
            str(report.rejected.get(name, 0)),
            str(report.unreadable_ranges.get(name, 0)),
        )
    out_console.print(table)
    typer.echo(f"recovered {sum(report.rows.values())} rows into {report.output}")
    typer.echo(f"method: {report.method}; {report.seconds:.1f} s")
    if report.rejected_file is not None:
        typer.echo(f"rows the new database refused: {report.rejected_file}")
    if report.lost_and_found:
        typer.echo(f"{report.lost_and_found} rows of unknown tables were found and not kept")


@app.command()
def vacuum(ctx: typer.Context, json: JsonOption = False) -> None:
    """Reclaim free space and refresh statistics (VACUUM). SQLite blocks writers meanwhile."""
    from arquivo import repair

    with state(ctx).engine() as engine:
        report = repair.vacuum(engine)
    if json:
        print_json(report)
        return
    typer.echo(
        f"vacuumed in {report.seconds:.1f} s: {report.size_before} -> {report.size_after} bytes"
    )


@app.command()
def reset(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop every Arquivo table and recreate them empty, after a safety backup."""
    from arquivo.backup.reset import reset_database

    settings = state(ctx).settings()
    with state(ctx).engine() as engine:
        if not yes:
            typer.confirm(
                f"Erase all Arquivo data in {hide_password(engine.url)}? A backup is taken first",
                abort=True,
            )
        safety = reset_database(engine, settings.backup_dir, pg_bin_dir=settings.pg_bin_dir)
    if safety:
        typer.echo(f"backed up as {safety}; the database is reset to an empty schema")
    else:
        typer.echo("the database had no Arquivo schema; created an empty one")
