"""``/v1/backups``: list, take and verify backups of the served database (admin keys only).

Taking a backup is synchronous: ``POST /v1/backups`` answers 201 with the manifest once
the backup is complete (seconds for a SQLite file of a few hundred MB; ``pg_dump``'s
pace on PostgreSQL). It runs in a worker thread, so the service keeps answering other
requests meanwhile. Why not 202 and a job to poll: with ``--workers N`` a job kept in
one process's memory would be unknown to the others, where half the polls land, and
the backup folder is already the durable record of the work: a backup becomes visible
in the list only when its manifest is written, last, so a client whose connection
timed out can find the result by listing. One backup or verification runs at a time
per process; a second request meanwhile gets 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from arquivo.errors import ConflictError
from arquivo.server.auth import require_admin
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store
from arquivo.server.schemas import BackupIn, BackupOut, VerifyOut

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/backups",
    tags=["backups"],
    dependencies=[Depends(require_admin)],
    responses={403: {"description": "The key is not an admin key"}},
)

BackupId = Annotated[
    str,
    Path(min_length=1, max_length=100, description="A backup's id, or `latest` for the newest"),
]
T = TypeVar("T")


async def _one_at_a_time(request: Request, call: Callable[[], T]) -> T:
    lock: anyio.Lock = request.app.state.backup_lock
    if lock.locked():
        raise ConflictError(
            "this server process is already making or checking a backup",
            hint="wait for it to finish; GET /v1/backups lists a backup once it is complete",
        )
    async with lock:
        return await run_in_threadpool(call)


@router.get("", response_model=list[BackupOut], summary="Complete backups, newest first")
def list_backups(store: Store) -> Json:
    """Every complete backup in the server's backup directory (``ARQUIVO_BACKUP_DIR``)."""
    return Json([info.to_dict() for info in store.backups.list()])


@router.post("", response_model=BackupOut, status_code=201, summary="Take a backup now")
async def create_backup(body: BackupIn, store: Store, request: Request) -> Json:
    """Take a consistent backup while writers keep writing; answers when it is complete.

    May take a while on a large database: give the client a long timeout. If the
    connection drops, the backup still completes and shows up in the list.
    """

    def take() -> dict[str, Any]:
        return store.backups.create(label=body.label, codec=body.codec).to_dict()

    return Json(await _one_at_a_time(request, take), status_code=201)


@router.get("/{backup_id}", response_model=BackupOut, summary="One backup's manifest")
def get_backup(backup_id: BackupId, store: Store) -> Json:
    """The manifest of one complete backup (``latest``: the newest)."""
    return Json(store.backups.get(backup_id).to_dict())


@router.post("/{backup_id}/verify", response_model=VerifyOut, summary="Check a backup")
async def verify_backup(
    backup_id: BackupId,
    store: Store,
    request: Request,
    restore: Annotated[
        bool,
        Query(description="Also restore it into a throwaway database and count its rows"),
    ] = True,
) -> Json:
    """Compare every file with its checksum and, by default, restore it and check that.

    ``ok`` false with ``problems`` means the backup cannot be trusted; the answer is
    still 200 (the check itself worked).
    """
    report = await _one_at_a_time(request, lambda: store.backups.verify(backup_id, restore=restore))
    return Json(report)
