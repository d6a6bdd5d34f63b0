"""``/healthz`` (the process answers), ``/readyz`` (the database is reachable and migrated)."""

from __future__ import annotations

from fastapi import APIRouter

from arquivo.db.engine import ping
from arquivo.db.migrate import current_revision, head_revision
from arquivo.errors import ArquivoError
from arquivo.server.auth import Caller
from arquivo.server.encode import Json
from arquivo.server.errors import error_body, status_for
from arquivo.server.routes.deps import Store
from arquivo.server.schemas import WhoAmI

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["health"], summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests (no auth)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Readiness: the database is reachable and at the schema this version needs",
    responses={503: {"description": "Not ready: the body says why"}},
)
def readyz(store: Store) -> Json:
    """200 when the database answers and its schema is current, else 503 (no auth)."""
    try:
        ping(store.engine)
        current = current_revision(store.engine)
    except ArquivoError as exc:
        _, code = status_for(exc)
        return Json(error_body(code, exc.message, exc.hint), status_code=503)
    head = head_revision()
    if current != head:
        body = error_body(
            "schema_not_ready",
            f"the database schema is at {current}, this version needs {head}",
            "run `arquivo db upgrade`",
        )
        return Json(body, status_code=503)
    return Json({"status": "ready", "database": store.dialect, "revision": current})


@router.get("/v1/me", tags=["health"], response_model=WhoAmI, summary="The caller's key")
async def whoami(principal: Caller) -> WhoAmI:
    """Which user the key belongs to and whether it is an admin key."""
    return WhoAmI(
        key_id=principal.key_id,
        user_id=principal.user_id,
        is_admin=principal.is_admin,
        name=principal.name,
    )
