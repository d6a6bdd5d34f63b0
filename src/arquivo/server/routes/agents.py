"""``/v1/agents``: any key reads agent definitions; changing them needs an admin key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from arquivo.errors import NotFoundError
from arquivo.server.auth import Caller, require_admin
from arquivo.server.encode import Json
from arquivo.server.routes.deps import Store
from arquivo.server.schemas import AgentIn, AgentOut, AgentVersionOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/agents", tags=["agents"])
Admin = Depends(require_admin)
Name = Annotated[str, Path(min_length=1, max_length=255)]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", response_model=list[AgentOut], summary="Every agent's current definition")
def list_agents(principal: Caller, store: Store) -> Json:
    """Agents by name."""
    return Json(store.agents.list())


@router.get("/{name}", response_model=AgentOut, summary="One agent")
def get_agent(
    name: Name,
    principal: Caller,
    store: Store,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Json:
    """The current definition, or an old ``version`` of it."""
    return Json(store.agents.get(name, version=version))


@router.get(
    "/{name}/versions", response_model=list[AgentVersionOut], summary="An agent's version history"
)
def versions(name: Name, principal: Caller, store: Store) -> Json:
    """Every version, oldest first (the last is current)."""
    return Json(store.agents.versions(name))


@router.put("/{name}", response_model=AgentOut, dependencies=[Admin], summary="Define an agent")
def upsert(name: Name, body: AgentIn, store: Store) -> Json:
    """Register it, or replace its definition (a change makes a new version; admin)."""
    return Json(
        store.agents.upsert(
            name, body.model, instructions=body.instructions, tools=body.tools, memory=body.memory
        )
    )


@router.delete("/{name}", status_code=204, dependencies=[Admin], summary="Delete an agent")
def delete(name: Name, store: Store) -> None:
    """Remove it with its whole history (admin)."""
    if not store.agents.delete(name):
        raise NotFoundError(f"there is no agent {name!r}")


@router.post(
    "/{name}/rollback/{version}",
    response_model=AgentOut,
    dependencies=[Admin],
    summary="Restore an old version",
)
def rollback(name: Name, version: Version, store: Store) -> Json:
    """Make that version's definition current again, as a new version (admin)."""
    return Json(store.agents.rollback(name, version))
