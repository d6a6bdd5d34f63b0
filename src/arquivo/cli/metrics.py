"""``arquivo metrics``: what was measured, how long it took, how often it failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from arquivo.cli.context import out_console, print_json, state
from arquivo.domain.metrics import parse_duration
from arquivo.errors import ValidationError

__all__ = ["app"]

app = typer.Typer(
    help="Operation timings: summaries with percentiles, recent measurements, time series.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
OperationOption = Annotated[
    str | None, typer.Option("--operation", "-o", help="Only this operation.", show_default=False)
]
SINCE_HELP = (
    "Only measurements since then: a duration back from now (30m, 24h, 7d) or an ISO datetime"
)


def _since(text: str | None) -> datetime | None:
    """The start of the range ``--since`` names (``None`` for ``all``)."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return datetime.now(UTC) - parse_duration(text, field="--since")
    except ValidationError:
        pass  # not a duration: maybe a datetime
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"--since must be a duration or an ISO datetime, not {text!r}",
            hint="e.g. --since 30m, --since 7d, --since 2025-01-31T12:00 (UTC), or --since all",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ms(value: float) -> str:
    return f"{value:,.1f}"


@app.command()
def summary(
    ctx: typer.Context,
    operation: OperationOption = None,
    since: Annotated[str, typer.Option("--since", help=f"{SINCE_HELP}, or 'all'.")] = "24h",
    json: JsonOption = False,
) -> None:
    """Per operation: count, error rate and latency (mean, p50, p95, p99, max) in ms."""
    start = _since(since)
    with state(ctx).store() as store:
        stats = store.metrics.summary(operation, since=start)
    if json:
        print_json(stats)
        return
    since_text = "" if start is None else f" since {start:%Y-%m-%d %H:%M} UTC"
    if not stats:
        out_console.print(f"no measurements{since_text}", highlight=False)
        return
    table = Table(title=f"durations in ms{since_text}")
    table.add_column("operation")
    for name in ("count", "errors", "err %", "avg", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    for s in stats.values():
        table.add_row(
            escape(s.operation),
            f"{s.count:,}",
            f"{s.errors:,}",
            f"{s.error_rate * 100:.1f}",
            *(_ms(v) for v in (s.avg_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms)),
        )
    out_console.print(table)


@app.command("list")
def list_measurements(
    ctx: typer.Context,
    operation: OperationOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help=f"{SINCE_HELP}.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 20,
    json: JsonOption = False,
) -> None:
    """The most recent measurements, newest first."""
    start = _since(since)
    with state(ctx).store() as store:
        records = store.metrics.list(operation, since=start, limit=limit)
    if json:
        print_json(records)
        return
    table = Table()
    table.add_column("id", justify="right")
    table.add_column("recorded (UTC)")
    table.add_column("operation")
    table.add_column("ms", justify="right")
    table.add_column("result")
    for r in records:
        table.add_row(
            str(r.id),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            escape(r.operation),
            _ms(r.duration_ms),
            "ok" if r.success else f"[red]{escape(r.error or 'failed')}[/]",
        )
    out_console.print(table)


@app.command()
def timeseries(
    ctx: typer.Context,
    operation: Annotated[str, typer.Argument(help="The operation.")],
    bucket: Annotated[
        str, typer.Option("--bucket", "-b", help="Bucket width: 30s, 5m, 1h, 1d...")
    ] = "1h",
    since: Annotated[str, typer.Option("--since", help=f"{SINCE_HELP}, or 'all'.")] = "24h",
    json: JsonOption = False,
) -> None:
    """OPERATION's count, errors and latency per time bucket (buckets aligned to UTC)."""
    start = _since(since)
    with state(ctx).store() as store:
        buckets = store.metrics.timeseries(operation, bucket=bucket, since=start)
    if json:
        print_json(buckets)
        return
    table = Table(title=escape(f"{operation}, per {bucket}"))
    table.add_column("start (UTC)")
    for name in ("count", "errors", "avg ms", "max ms"):
        table.add_column(name, justify="right")
    for b in buckets:
        table.add_row(
            f"{b.start:%Y-%m-%d %H:%M:%S}",
            f"{b.count:,}",
            f"{b.errors:,}",
            _ms(b.avg_ms),
            _ms(b.max_ms),
        )
    out_console.print(table)
