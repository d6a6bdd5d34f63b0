"""``store.agents``: the agent registry, with every definition change versioned.

An agent's *definition* is its model, instructions and tools. Each change to it is
kept as a numbered version (1, 2, ...) in ``agent_versions``; the ``agents`` row holds
the current definition, its number and the agent's *memory*, which is runtime state
and is not versioned. History is append-only: a rollback restores an old definition
as a new version.

Writers serialise on the agent's row: SQLite's write transactions take the database
lock up front (``BEGIN IMMEDIATE``), and on PostgreSQL the row is locked with
``SELECT ... FOR UPDATE`` before the next version number is chosen. A new name is
inserted with ``ON CONFLICT DO NOTHING``, so two processes creating the same agent at
once do not collide: the loser waits for the winner's commit, then locks the row the
winner made and updates it like any existing agent.
"""

from __future__ import annotations

import builtins
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.expression import ClauseElement

from arquivo.db.dialects import DialectSupport
from arquivo.db.fastpath import Driver
from arquivo.db.types import utcnow
from arquivo.domain.base import Facade
from arquivo.errors import ConflictError, NotFoundError, ValidationError
from arquivo.models import Agent, AgentDefinition
from arquivo.validation import check_id, check_json, check_text, shown
from arquivo.values import AgentRecord, AgentVersion

__all__ = ["Agents"]

_A = cast(sa.Table, Agent.__table__)
_V = cast(sa.Table, AgentDefinition.__table__)
# In AgentRecord's field order.
_RECORD = (
    _A.c.name,
    _A.c.model,
    _A.c.instructions,
    _A.c.tools,
    _A.c.memory,
    _A.c.version,
    _A.c.created_at,
    _A.c.updated_at,
)
# In AgentVersion's field order.
_VERSION = (_V.c.name, _V.c.version, _V.c.model, _V.c.instructions, _V.c.tools, _V.c.created_at)
_DEFINITION = ("model", "instructions", "tools")
# Rounds of "lock the row, or insert it if missing" before giving up: a round is lost
# only when another process deletes the agent between our insert and our lock.
_ATTEMPTS = 5


def _bind(table: sa.Table, column: str, name: str | None = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name or column, type_=table.c[column].type)


def _select(_: DialectSupport) -> ClauseElement:
    return sa.select(*_RECORD).where(_A.c.name == sa.bindparam("name"))


def _select_for_update(_: DialectSupport) -> ClauseElement:
    # Renders FOR UPDATE on PostgreSQL; nothing on SQLite, whose BEGIN IMMEDIATE already
    # made this transaction the only writer.
    return sa.select(*_RECORD).where(_A.c.name == sa.bindparam("name")).with_for_update()


def _select_all(_: DialectSupport) -> ClauseElement:
    return sa.select(*_RECORD).order_by(_A.c.name)


def _insert_new(support: DialectSupport) -> ClauseElement:
    # Both dialects' INSERT constructs have on_conflict_do_nothing, under no common type.
    insert: Any = support.insert(_A).values(
        name=sa.bindparam("name"),
        model=sa.bindparam("model"),
        instructions=sa.bindparam("instructions"),
        tools=_bind(_A, "tools"),
        memory=_bind(_A, "memory"),
        version=1,
        created_at=_bind(_A, "created_at", "now"),
        updated_at=_bind(_A, "updated_at", "now"),
    )
    return cast(
        ClauseElement,
        insert.on_conflict_do_nothing(index_elements=[_A.c.name]).returning(*_RECORD),
    )


def _update(_: DialectSupport) -> ClauseElement:
    return (
        sa.update(_A)
        .where(_A.c.name == sa.bindparam("name"))
        .values(
            model=sa.bindparam("model"),
            instructions=sa.bindparam("instructions"),
            tools=_bind(_A, "tools"),
            memory=_bind(_A, "memory"),
            version=sa.bindparam("version"),
            updated_at=_bind(_A, "updated_at", "now"),
        )
        .returning(*_RECORD)
    )


def _update_memory(_: DialectSupport) -> ClauseElement:
    return (
        sa.update(_A)
        .where(_A.c.name == sa.bindparam("name"))
        .values(memory=_bind(_A, "memory"), updated_at=_bind(_A, "updated_at", "now"))
        .returning(*_RECORD)
    )


def _version_values() -> dict[str, Any]:
    return {
        "name": sa.bindparam("name"),
        "version": sa.bindparam("version"),
        "model": sa.bindparam("model"),
        "instructions": sa.bindparam("instructions"),
        "tools": _bind(_V, "tools"),
        "created_at": _bind(_V, "created_at", "now"),
    }


def _insert_version(_: DialectSupport) -> ClauseElement:
    return sa.insert(_V).values(**_version_values())


def _record_version(support: DialectSupport) -> ClauseElement:
    # Records a definition that is current but missing from the history (the agent was
    # written outside store.agents); a no-op when the history already has it.
    insert: Any = support.insert(_V).values(**_version_values())
    return cast(
        ClauseElement, insert.on_conflict_do_nothing(index_elements=[_V.c.name, _V.c.version])
    )


def _select_version(_: DialectSupport) -> ClauseElement:
    # The agent and one of its versions in a single statement, so the answer is
    # consistent even where reads are separate autocommit statements (SQLite).
    joined = _A.outerjoin(
        _V, sa.and_(_V.c.name == _A.c.name, _V.c.version == sa.bindparam("version"))
    )
    return (
        sa.select(*_RECORD, *_VERSION).select_from(joined).where(_A.c.name == sa.bindparam("name"))
    )


def _select_history(_: DialectSupport) -> ClauseElement:
    joined = _A.outerjoin(_V, _V.c.name == _A.c.name)
    return (
        sa.select(*_RECORD, *_VERSION)
        .select_from(joined)
        .where(_A.c.name == sa.bindparam("name"))
        .order_by(_V.c.version)
    )


def _delete(_: DialectSupport) -> ClauseElement:
    # agent_versions rows go with it: ON DELETE CASCADE.
    return sa.delete(_A).where(_A.c.name == sa.bindparam("name"))


def _check_tools(tools: object) -> list[Any] | None:
    if tools is None:
        return None
    if not isinstance(tools, (list, tuple)):
        raise ValidationError(
            f"tools must be a JSON list (or None), not {type(tools).__name__}",
            hint="pass the tool definitions as a list, e.g. [{'name': 'search'}] or ['fs']",
        )
    check_json("tools", tools)
    return list(tools)


def _check_definition(model: object, instructions: object, tools: object) -> dict[str, Any]:
    check_id("model", model)
    if instructions is not None:
        check_text("instructions", instructions)
    return {"model": model, "instructions": instructions, "tools": _check_tools(tools)}


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(
            f"version must be a positive integer, not {shown(version)}",
            hint="versions are numbered from 1; list them with store.agents.versions(name)",
        )
    return version


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(
        f"there is no agent named {name!r}",
        hint="list the agents with store.agents.list() or `arquivo agents list`",
    )


def _no_version(name: str, version: int, current: int) -> NotFoundError:
    return NotFoundError(
        f"agent {name!r} has no version {version} (its current version is {current})",
        hint=f"list its versions with store.agents.versions({name!r}) "
        f"or `arquivo agents versions {shlex.quote(name)}`",
    )


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` differs from ``1``; ``1`` and ``1.0`` are the same number.

    Python's ``==`` says ``True == 1``, and a round trip through the database may turn
    ``1e300`` into an int, so neither ``==`` nor comparing serialised text will do.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _record(row: Sequence[Any]) -> AgentRecord:
    return AgentRecord(*row[: len(_RECORD)])


def _current_as_version(agent: AgentRecord) -> AgentVersion:
    # The current definition of an agent written outside store.agents, which the history
    # lacks; dated when the row last changed, the only time it is known to hold.
    return AgentVersion(
        agent.name, agent.version, agent.model, agent.instructions, agent.tools, agent.updated_at
    )


def _lock_or_create(
    driver: Driver, name: str, definition: Mapping[str, Any], memory: Any, now: datetime
) -> tuple[AgentRecord, bool]:
    """The agent's row, locked for this transaction, and whether this call created it."""
    for _ in range(_ATTEMPTS):
        rows = driver.execute(_select_for_update, {"name": name})
        if rows:
            return _record(rows[0]), False
        # On PostgreSQL a concurrent insert of the same name makes this wait for the
        # other transaction; if that one commits, nothing is inserted and the next round
        # locks its row.
        created = driver.execute(
            _insert_new, {"name": name, **definition, "memory": memory, "now": now}
        )
        if created:
            agent = _record(created[0])
            driver.execute(_insert_version, {"name": name, "version": 1, **definition, "now": now})
            return agent, True
    raise ConflictError(
        f"agent {name!r} kept being created and deleted by other writers",
        hint="retry; if it persists, look for a process deleting agents in a loop",
    )


def _change(
    driver: Driver,
    agent: AgentRecord,
    definition: Mapping[str, Any],
    memory: Any,
    now: datetime,
) -> AgentRecord:
    """Write ``definition`` and ``memory`` to a locked agent, versioning the definition."""
    unchanged = all(_same_json(getattr(agent, key), definition[key]) for key in _DEFINITION)
    if unchanged and _same_json(agent.memory, memory):
        return agent  # nothing to write: the row (and updated_at) stay as they are
    version = agent.version
    if not unchanged:
        driver.execute(
            _record_version,
            {
                "name": agent.name,
                "version": version,
                "model": agent.model,
                "instructions": agent.instructions,
                "tools": agent.tools,
                "now": agent.updated_at,
            },
        )
        version += 1
        driver.execute(
            _insert_version, {"name": agent.name, "version": version, **definition, "now": now}
        )
    rows = driver.execute(
        _update,
        {"name": agent.name, **definition, "memory": memory, "version": version, "now": now},
    )
    return _record(rows[0])


class Agents(Facade):
    """The agent registry: definitions versioned on every change, memory alongside.

    Write through these methods to get the history: rows added with the ORM or raw SQL
    are not versioned (their current definition is recorded by the next change made
    here).
    """

    __slots__ = ()

    def upsert(
        self,
        name: str,
        model: str,
        instructions: str | None = None,
        tools: Sequence[Any] | None = None,
        memory: Any = None,
    ) -> AgentRecord:
        """Register an agent, or replace its definition; returns it as stored.

        The definition (``model``, ``instructions``, ``tools``) is given whole: an
        omitted ``instructions`` or ``tools`` means "none". A change to it becomes a new
        version; an upsert that changes nothing in it makes none.

        ``memory`` is runtime state, not part of the definition. On an existing agent
        ``None`` keeps the memory it has (so re-declaring an agent at start-up does not
        wipe what it learnt); :meth:`update_memory` replaces or clears it.

        Args:
            name: The agent's unique name.
            model: The model it runs on.
            instructions: Its system instructions.
            tools: The tools it may call: a JSON list.
            memory: Any JSON value.

        Raises:
            ValidationError: A bad name or model, instructions that are not text, tools
                that are not a JSON list, or memory that is not JSON.
            ConflictError: Other writers kept deleting and re-creating the agent.
        """
        check_id("name", name)
        definition = _check_definition(model, instructions, tools)
        if memory is not None:
            check_json("memory", memory)
        now = utcnow()
        with self._store.unit(write=True) as driver:
            agent, created = _lock_or_create(driver, name, definition, memory, now)
            if created:
                return agent
            return _change(
                driver, agent, definition, agent.memory if memory is None else memory, now
            )

    def get(self, name: str, *, version: int | None = None) -> AgentRecord:
        """An agent's current definition, or one of its versions.

        Args:
            name: The agent.
            version: A version number: that version's definition, with the agent's
                current memory; ``updated_at`` is then when that version was made.

        Raises:
            NotFoundError: No agent has that name, or it has no such version.
            ValidationError: A bad name or version number.
        """
        check_id("name", name)
        if version is None:
            with self._store.unit(write=False) as driver:
                rows = driver.execute(_select, {"name": name})
            if not rows:
                raise _not_found(name)
            return _record(rows[0])
        _check_version(version)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_select_version, {"name": name, "version": version})
        if not rows:
            raise _not_found(name)
        agent = _record(rows[0])
        stored = rows[0][len(_RECORD) :]
        if stored[1] is None:  # no such row in the history
            if version == agent.version:
                return agent
            raise _no_version(name, version, agent.version)
        v = AgentVersion(*stored)
        return AgentRecord(
            agent.name,
            v.model,
            v.instructions,
            v.tools,
            agent.memory,
            v.version,
            agent.created_at,
            v.created_at,
        )

    def list(self) -> builtins.list[AgentRecord]:
        """Every agent's current definition, sorted by name."""
        with self._store.unit(write=False) as driver:
            return [_record(row) for row in driver.execute(_select_all, {})]

    def delete(self, name: str) -> bool:
        """Remove an agent with its whole history; ``True`` if it existed."""
        check_id("name", name)
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete, {"name": name}) > 0

    def update_memory(self, name: str, memory: Any) -> AgentRecord:
        """Replace an agent's memory (``None`` clears it); makes no new version.

        Raises:
            NotFoundError: No agent has that name.
            ValidationError: A bad name, or memory that is not JSON.
        """
        check_id("name", name)
        check_json("memory", memory)
        with self._store.unit(write=True) as driver:
            rows = driver.execute(_update_memory, {"name": name, "memory": memory, "now": utcnow()})
        if not rows:
            raise _not_found(name)
        return _record(rows[0])

    def versions(self, name: str) -> builtins.list[AgentVersion]:
        """Every version of an agent's definition, oldest first (the last is current).

        Raises:
            NotFoundError: No agent has that name.
        """
        check_id("name", name)
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_select_history, {"name": name})
        if not rows:
            raise _not_found(name)
        agent = _record(rows[0])
        history = [AgentVersion(*row[len(_RECORD) :]) for row in rows if row[-1] is not None]
        if not any(v.version == agent.version for v in history):
            history.append(_current_as_version(agent))
        return history

    def rollback(self, name: str, version: int) -> AgentRecord:
        """Make an old version's definition current again, as a new version.

        History is never rewritten: rolling back from version 5 to 2 makes version 6,
        equal in definition to 2. The memory is left as it is. When the current
        definition already equals that version's, nothing changes.

        Raises:
            NotFoundError: No agent has that name, or it has no such version.
            ValidationError: A bad name or version number.
        """
        check_id("name", name)
        _check_version(version)
        now = utcnow()
        with self._store.unit(write=True) as driver:
            rows = driver.execute(_select_for_update, {"name": name})
            if not rows:
                raise _not_found(name)
            agent = _record(rows[0])
            # Read under the lock: the history cannot move before the change is written.
            found = driver.execute(_select_version, {"name": name, "version": version})
            stored = found[0][len(_RECORD) :]
            if stored[1] is None:
                if version == agent.version:
                    return agent
                raise _no_version(name, version, agent.version)
            target = AgentVersion(*stored)
            definition = {
                "model": target.model,
                "instructions": target.instructions,
                "tools": target.tools,
            }
            return _change(driver, agent, definition, agent.memory, now)
