"""Which rows of which tables belong to one user, derived from the schema.

A table holds a user's rows if it has a ``user_id`` column, or a foreign key to a table
that does (``hitl_actions`` through ``hitl_sessions``), at any depth. Tables added
later (the knowledge store's, API keys) are covered as soon as their models join
``Base.metadata``: nothing here names a table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import MetaData, Table
from sqlalchemy.sql.expression import ColumnElement

from arquivo.models import Base

__all__ = ["USER_COLUMN", "TableScope", "schema_tables", "user_scope"]

#: The column that names a row's owner, in every table that has one.
USER_COLUMN = "user_id"


def schema_tables(metadata: MetaData | None = None) -> list[Table]:
    """Every table of the Arquivo schema, parents before the tables that refer to them."""
    return list((metadata or Base.metadata).sorted_tables)


@dataclass(frozen=True)
class TableScope:
    """One table's share of a user's data.

    Attributes:
        table: The table.
        where: The condition selecting the user's rows in it.
    """

    table: Table
    where: ColumnElement[bool]


def user_scope(user_id: str, tables: Iterable[Table] | None = None) -> list[TableScope]:
    """The tables holding ``user_id``'s rows, with a condition for each, parents first.

    A row belongs to the user when its own ``user_id`` is theirs, or when it refers
    (by a single-column foreign key) to a row that belongs to them.
    """
    scopes: dict[str, TableScope] = {}
    for table in tables if tables is not None else schema_tables():
        conditions: list[ColumnElement[bool]] = []
        if USER_COLUMN in table.c:
            conditions.append(table.c[USER_COLUMN] == user_id)
        for fk in table.foreign_key_constraints:
            parent = scopes.get(fk.referred_table.name)
            if parent is None or len(fk.columns) != 1 or fk.referred_table is table:
                continue
            (local,) = fk.columns
            (element,) = fk.elements
            conditions.append(local.in_(sa.select(element.column).where(parent.where)))
        if conditions:
            scopes[table.name] = TableScope(table, sa.or_(*conditions))
    return list(scopes.values())
