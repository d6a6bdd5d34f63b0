"""``arquivo backup``: create, list, verify, prune, restore and schedule backups."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from arquivo.backup import codec as codecs
from arquivo.backup.durations import parse_duration
from arquivo.backup.manifest import BackupInfo
from arquivo.backup.schedule import ScheduleRun, run_schedule
from arquivo.backup.service import Backups
from arquivo.backup.vectors import chroma_folder
from arquivo.cli.context import err_console, out_console, print_json, state
from arquivo.db.engine import create_engine
from arquivo.db.migrate import VERSION_TABLE
from arquivo.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    help="Consistent, checksummed backups of the database; verify, prune, restore.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Backup folder (default ARQUIVO_BACKUP_DIR, else ./data/backups).",
        show_default=False,
    ),
]
IdArgument = Annotated[
    str, typer.Argument(help="Backup id (see `arquivo backup list`), or latest.")
]


def _folder(settings: Settings, given: Path | None) -> Path:
    return given if given is not None else Path(settings.backup_dir)


@contextlib.contextmanager
def _backups(ctx: typer.Context, folder: Path | None, *, bound: bool) -> Iterator[Backups]:
    """Backups in the chosen folder, bound (without connecting yet) to the database."""
    settings = state(ctx).settings()
    directory = _folder(settings, folder)
    chroma = chroma_folder(settings)
    if not bound:
        yield Backups(None, directory, pg_bin_dir=settings.pg_bin_dir, chroma_path=chroma)
        return
    engine = create_engine(settings.database_url, settings)
    try:
        yield Backups(engine, directory, pg_bin_dir=settings.pg_bin_dir, chroma_path=chroma)
    finally:
        engine.dispose()


class _Bar:
    """Adapts the backup code's progress callback to a rich progress bar on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, done: int, total: int | None, what: str) -> None:
        task = self._tasks.get(what)
        if task is None:
            task = self._progress.add_task(what, total=total)
            self._tasks[what] = task
        self._progress.update(task, completed=done, total=total)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[_Bar | None]:
    if quiet:
        yield None
        return
    with Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        yield _Bar(progress)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _size(info: BackupInfo) -> str:
    """``46.1 MB``, or ``46.1 MB (3.1 MB new)`` when files are shared with another backup."""
    counts = [c.details.get("shared_bytes") for c in info.components]
    shared = sum(count for count in counts if isinstance(count, int))
    if not shared:
        return _human(info.size_bytes)
    return f"{_human(info.size_bytes)} ({_human(info.size_bytes - shared)} new)"


def _rows(tables: dict[str, int]) -> int:
    # The schema's version bookkeeping is not data anyone wrote.
    return sum(count for name, count in tables.items() if name != VERSION_TABLE)


def _summary(info: BackupInfo) -> dict[str, Any]:
    data = info.to_dict()
    data["path"] = str(info.path)
    return data


@app.command()
def create(
    ctx: typer.Context,
    label: Annotated[str, typer.Option("--label", "-l", help="A note kept with the backup.")] = "",
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            "--dir",
            help="Backup folder (default ARQUIVO_BACKUP_DIR, else ./data/backups).",
            show_default=False,
        ),
    ] = None,
    compress: Annotated[
        str | None,
        typer.Option(
            "--compress",
            help=f"SQLite compression: {', '.join(codecs.CODECS)} (default lz4; zstd is smaller).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Back up the database now: a consistent snapshot, even while apps write."""
    with _backups(ctx, to, bound=True) as backups, _progress(json) as bar:
        info = backups.create(label=label, codec=compress, progress=bar)
    if json:
        print_json(_summary(info))
        return
    rows = _rows(info.tables)
    vectors = info.component("vectors")
    extra = ""
    if vectors is not None:
        chunks = sum(vectors.details.get("collections", {}).values())
        extra = f", and the Chroma folder: {chunks} vectors"
    typer.echo(
        f"backup {info.id} created in {info.path} ({_size(info)}, "
        f"{rows} rows in {len(info.tables)} tables{extra}, {info.duration_s:.1f} s)"
    )
    database = info.component("database")
    if database is not None and database.details.get("shared_chunks"):
        typer.echo(
            f"{database.details['shared_chunks']} of {len(database.files)} chunks unchanged: "
            f"shared with backup {database.details.get('shared_from')} (hard links)"
        )


@app.command(name="list")
def list_(ctx: typer.Context, folder: DirOption = None, json: JsonOption = False) -> None:
    """List the complete backups, newest first (and interrupted ones, to prune)."""
    with _backups(ctx, folder, bound=False) as backups:
        complete = backups.list()
        incomplete = backups.incomplete()
    if json:
        print_json(
            {
                "backups": [_summary(info) for info in complete],
                "incomplete": [
                    {"path": str(i.path), "reason": i.reason, "in_progress": i.in_progress}
                    for i in incomplete
                ],
            }
        )
        return
    table = Table(title=f"Backups in {backups.directory}")
    table.add_column("id", no_wrap=True)
    for column in ("created (UTC)", "label", "database", "revision", "rows", "size"):
        table.add_column(column)
    for info in complete:
        table.add_row(
            info.id,
            info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            info.label,
            info.dialect or f"data ({info.backup_type})",
            info.revision or "",
            str(_rows(info.tables)),
            _size(info),
        )
    out_console.print(table)
    if not complete:
        typer.echo("no backups yet: `arquivo backup create` makes one")
    for folder_info in incomplete:
        typer.echo(f"incomplete: {folder_info.path.name} ({folder_info.reason})")


@app.command()
def verify(
    ctx: typer.Context,
    backup_id: IdArgument,
    folder: DirOption = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Only compare checksums; do not restore.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check a backup: checksums, then a restore into a throwaway database (exit 1 if bad)."""
    with _backups(ctx, folder, bound=True) as backups, _progress(json) as bar:
        report = backups.verify(backup_id, restore=not quick, progress=bar)
    if json:
        print_json(report)
    elif report.ok:
        how = ", restored and integrity-checked" if report.restored else ""
        chunks = sum(report.collections.values())
        extra = f", {chunks} vectors in Chroma" if report.collections else ""
        typer.echo(
            f"backup {report.backup_id} is good: {report.files_checked} files match their "
            f"checksums{how} ({_rows(report.tables)} rows{extra})"
        )
    else:
        err_console.print(f"[bold red]backup {report.backup_id} is damaged:[/]", highlight=False)
        for problem in report.problems:
            err_console.print(f"  {problem}", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def prune(
    ctx: typer.Context,
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep the newest N backups.")
    ] = None,
    max_age: Annotated[
        str | None, typer.Option("--max-age", help="Remove backups older than this (30d, 12h).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")
    ] = False,
    folder: DirOption = None,
    json: JsonOption = False,
) -> None:
    """Remove old backups by count and/or age (the newest is always kept)."""
    age = None if max_age is None else parse_duration(max_age, what="--max-age")
    with _backups(ctx, folder, bound=False) as backups:
        report = backups.prune(keep_last=keep_last, max_age=age, dry_run=dry_run)
    if json:
        print_json(
            {
                "dry_run": report.dry_run,
                "removed": [info.id for info in report.removed],
                "kept": [info.id for info in report.kept],
                "garbage": [str(folder_info.path) for folder_info in report.garbage],
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    for info in report.removed:
        typer.echo(f"{verb} {info.id} ({info.created_at:%Y-%m-%d %H:%M} UTC, {info.label})")
    for folder_info in report.garbage:
        typer.echo(f"{verb} {folder_info.path.name} ({folder_info.reason})")
    typer.echo(
        f"{verb} {len(report.removed)} backups and {len(report.garbage)} incomplete folders; "
        f"{len(report.kept)} kept"
    )


@app.command()
def restore(
    ctx: typer.Context,
    backup_id: IdArgument,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Database URL to restore into (default: DATABASE_URL / --url).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that holds rows (backed up first).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything and say what would happen.")
    ] = False,
    if_db_not_exists: Annotated[
        bool,
        typer.Option("--if-db-not-exists", help="Do nothing (exit 0) when the database exists."),
    ] = False,
    via: Annotated[
        str | None,
        typer.Option(
            "--via",
            help="PostgreSQL server to unpack a PostgreSQL backup on when restoring it into "
            "SQLite (default: DATABASE_URL / --url if PostgreSQL, else the backup's source).",
            show_default=False,
        ),
    ] = None,
    folder: DirOption = None,
    json: JsonOption = False,
) -> None:
    """Replace a database with a backup: checked, migrated forward, swapped in atomically.

    The target may be of the other kind (a SQLite backup into PostgreSQL, or back):
    the rows then go through the portable export into a fresh database swapped in.
    """
    settings = state(ctx).settings()
    target = to if to is not None else settings.database_url
    # Bound to DATABASE_URL (no connection is made unless it is needed) so that its
    # server can unpack a PostgreSQL backup headed for SQLite.
    with _backups(ctx, folder, bound=True) as backups, _progress(json) as bar:
        report = backups.restore(
            backup_id,
            to=target,
            force=force,
            dry_run=dry_run,
            if_db_not_exists=if_db_not_exists,
            via=via,
            progress=bar,
        )
    if json:
        print_json(report)
        return
    rows = _rows(report.tables)
    if report.skipped:
        typer.echo(f"{report.target} already exists; nothing restored (--if-db-not-exists)")
    elif report.dry_run:
        action = (
            f"replace {report.target} ({report.replaced_rows} rows, backed up first)"
            if report.replaced_rows
            else f"restore into {report.target}"
        )
        if report.vectors_restored_to:
            action += f" and replace the Chroma folder {report.vectors_restored_to}"
        typer.echo(f"dry run: backup {report.backup_id} is intact; would {action} ({rows} rows)")
    else:
        how = ", rows copied across databases" if report.method == "logical" else ""
        typer.echo(f"restored backup {report.backup_id} into {report.target} ({rows} rows{how})")
        if report.safety_backup_id:
            typer.echo(f"the replaced database was backed up first as {report.safety_backup_id}")
        if report.migrated_from:
            typer.echo(f"migrated forward from revision {report.migrated_from}")
        if report.vectors_restored_to:
            typer.echo(f"the Chroma folder {report.vectors_restored_to} was restored too")


@app.command()
def schedule(
    ctx: typer.Context,
    every: Annotated[str, typer.Option("--every", help="Interval between backups (6h, 30m).")],
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="After each backup, keep the newest N.")
    ] = None,
    max_age: Annotated[
        str | None, typer.Option("--max-age", help="After each backup, remove older ones (30d).")
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", help="Stop after N backups (default: never).")
    ] = None,
    label: Annotated[str, typer.Option("--label", help="Label of the backups.")] = "scheduled",
    folder: DirOption = None,
) -> None:
    """Back up every interval in the foreground (for systemd & co.); stops on SIGTERM/Ctrl-C."""
    interval = parse_duration(every, what="--every")
    age = None if max_age is None else parse_duration(max_age, what="--max-age")
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        err_console.print(f"signal {signum}: stopping after the current backup")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def report(run: ScheduleRun) -> None:
        if run.backup is not None:
            removed = len(run.pruned.removed) if run.pruned else 0
            typer.echo(
                f"[{run.number}] backup {run.backup.id} ({_human(run.backup.size_bytes)}, "
                f"{run.backup.duration_s:.1f} s); pruned {removed}",
            )
        elif run.error is not None:
            err_console.print(f"[{run.number}] backup failed: {run.error}", markup=False)

    try:
        with _backups(ctx, folder, bound=True) as backups:
            typer.echo(f"backing up every {_interval(interval)} into {backups.directory}")
            runs = run_schedule(
                backups,
                interval,
                stop=stop,
                keep_last=keep_last,
                max_age=age,
                max_runs=max_runs,
                label=label,
                on_run=report,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"stopped after {len(runs)} backups")
    if runs and runs[-1].error is not None:
        raise typer.Exit(1)


def _interval(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
