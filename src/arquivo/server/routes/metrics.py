"""``/v1/metrics``: any key records measurements; reading them needs an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from arquivo.server.auth import Caller, require_admin
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store
from arquivo.server.schemas import BucketOut, MetricIn, MetricOut, StatsOut
from arquivo.server.writes import run_write

__all__ = ["router"]

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
Admin = Depends(require_admin)
Operation = Annotated[str | None, Query(min_length=1, max_length=255)]


@router.post("", response_model=MetricOut, status_code=201, summary="Record a measurement")
async def record(body: MetricIn, principal: Caller, store: Store, request: Request) -> Json:
    """Store one measurement (any key may: agents report their own timings)."""
    stored = await run_write(
        request,
        store.metrics.record,
        body.operation,
        body.duration_ms,
        success=body.success,
        error=body.error,
        extra_data=body.extra_data,
    )
    return Json(stored, status_code=201)


@router.get(
    "", response_model=list[MetricOut], dependencies=[Admin], summary="Measurements, newest first"
)
def list_metrics(
    store: Store,
    operation: Operation = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Json:
    """Raw measurements (admin)."""
    return Json(store.metrics.list(operation, since=since, until=until, limit=limit))


@router.get(
    "/summary",
    response_model=list[StatsOut],
    dependencies=[Admin],
    summary="Per operation: count, error rate, p50/p95/p99",
)
def summary(
    store: Store,
    operation: Operation = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Json:
    """Aggregates per operation over the time range (admin)."""
    stats = store.metrics.summary(operation, since=since, until=until)
    return Json(list(stats.values()))


@router.get(
    "/timeseries",
    response_model=list[BucketOut],
    dependencies=[Admin],
    summary="An operation's measurements in time buckets",
)
def timeseries(
    store: Store,
    operation: Annotated[str, Query(min_length=1, max_length=255)],
    bucket: Annotated[str, Query(min_length=1, max_length=16, examples=["5m", "1h"])] = "1h",
    since: datetime | None = None,
    until: datetime | None = None,
) -> Json:
    """Count, errors, mean and max per bucket (admin)."""
    return Json(store.metrics.timeseries(operation, bucket=bucket, since=since, until=until))
