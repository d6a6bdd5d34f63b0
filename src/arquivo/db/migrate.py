"""Running the Alembic migrations shipped inside the package, from code.

The migrations live in ``arquivo/migrations`` and record their state in a dedicated
version table, so an application that has its own Alembic history in the same database
is never disturbed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.errors import (
    MigrationError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    ValidationError,
)
from arquivo.migrations import HEAD_REVISION
from arquivo.models import Base
from arquivo.validation import shown

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported only when a migration command actually runs: opening a store
# whose schema is current needs one read of the version table, not 150 ms of imports.

__all__ = [
    "VERSION_TABLE",
    "Revision",
    "alembic_config",
    "check",
    "check_revision",
    "compare_type",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "head_revision",
    "history",
    "include_name",
    "revision",
    "script_heads",
    "upgrade",
]

VERSION_TABLE = "arquivo_alembic_version"
SCRIPT_LOCATION = "arquivo:migrations"
FILE_TEMPLATE = "%%(rev)s_%%(slug)s"


@dataclass(frozen=True)
class Revision:
    """One migration script.

    Attributes:
        id: The revision identifier.
        down_revision: The revision it follows (``None`` for the first).
        message: Its one-line description.
        is_head: Whether it is the newest revision.
    """

    id: str
    down_revision: str | None
    message: str
    is_head: bool


def alembic_config(connection: Connection | None = None, *, stdout: Any = None) -> Config:
    """An Alembic ``Config`` for Arquivo's migrations, optionally bound to a live connection."""
    from alembic.config import Config

    config = Config(stdout=stdout if stdout is not None else io.StringIO())
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("file_template", FILE_TEMPLATE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


#: Names of the per-collection ANN indexes the knowledge store creates itself.
ANN_INDEX_PREFIX = "ix_knowledge_ann_"


def include_name(name: str | None, type_: str, _parent: Any) -> bool:
    """Alembic filter: compare only Arquivo's own tables, never a host application's."""
    if type_ == "table":
        return name in Base.metadata.tables or name == VERSION_TABLE
    # The per-collection ANN indexes are made at run time (their width is the
    # collection's), not by a revision.
    return not (type_ == "index" and name is not None and name.startswith(ANN_INDEX_PREFIX))


def compare_type(
    _context: Any,
    _inspected: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    """Alembic type comparison: an embedding column may be either of its two forms.

    PostgreSQL stores :class:`~arquivo.db.types.Vector` as pgvector's ``vector``, or as
    ``real[]`` where the server has no pgvector (until ``arquivo kb enable-ann``);
    both agree with the model. ``None`` leaves every other column to Alembic.
    """
    from sqlalchemy.dialects import postgresql

    from arquivo.db.types import Vector

    if not isinstance(metadata_type, Vector):
        return None
    if isinstance(inspected_type, postgresql.ARRAY):
        return not isinstance(inspected_type.item_type, sa.REAL)
    return None


@contextlib.contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    read_only = get_dialect(engine.dialect.name).read_only_options()
    with (
        translate_errors(engine.dialect.name),
        engine.connect() as connection,
        connection.execution_options(**read_only).begin(),
    ):
        yield connection


def head_revision() -> str:
    """The newest revision this version of Arquivo ships."""
    return HEAD_REVISION


def script_heads() -> list[str]:
    """The heads Alembic finds in the shipped revisions (the test suite checks that
    there is one, equal to :func:`head_revision`)."""
    return list(_scripts().get_heads())


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it has no Arquivo schema yet."""
    with _reading(engine) as connection:
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return None
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        heads = connection.execute(sa.select(version.c.version_num)).scalars().all()
    if len(heads) > 1:
        raise MigrationError(f"the database records several revisions: {heads}")
    return heads[0] if heads else None


def ensure_schema(engine: Engine, *, auto_migrate: bool = True) -> None:
    """Bring the schema to the head revision, or verify it is there.

    Cheap when the schema is current (one read of the version table); otherwise the
    upgrade runs under the cross-process migration lock, so processes that start
    together against a fresh database do the work once.

    Raises:
        SchemaOutOfDateError: The schema is behind and ``auto_migrate`` is false.
        SchemaTooNewError: The database was migrated by a newer Arquivo.
    """
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return
    if current is not None and not _is_shipped(current):
        raise SchemaTooNewError(
            f"the database is at revision {current}, which this Arquivo does not know "
            f"(its newest is {head})"
        )
    if not auto_migrate:
        raise SchemaOutOfDateError(
            f"the database schema is at {current or 'nothing (empty database)'}, "
            f"and this Arquivo needs {head}"
        )
    upgrade(engine, "head")


def _is_shipped(revision_id: str) -> bool:
    from alembic.util import CommandError

    try:
        return _scripts().get_revision(revision_id) is not None
    except CommandError:
        return False


def _run(engine: Engine, action: str, *args: Any, **kwargs: Any) -> None:
    from alembic import command
    from alembic.util import CommandError

    support = get_dialect(engine.dialect.name)
    try:
        with (
            translate_errors(engine.dialect.name),
            support.migration_connection(engine) as connection,
        ):
            getattr(command, action)(alembic_config(connection), *args, **kwargs)
    except CommandError as exc:
        raise MigrationError(f"{action} failed: {exc}") from exc
    except DBAPIError as exc:
        raise MigrationError(
            f"{action} failed and was rolled back: {str(exc.orig).strip()}",
            hint="the schema is as it was before; if a table already exists, it was made "
            "outside Arquivo's migrations (rename or drop it, or use another database)",
        ) from exc


# Revision ids, head/base, relative steps (-1, +2) and branch forms (0003@head).
_REVISION = re.compile(r"[A-Za-z0-9_.:@+-]{1,64}")


def check_revision(revision: object) -> str:
    """A revision argument as Alembic understands it (an id, ``head``, ``base``, ``-1``...).

    Raises:
        ValidationError: Anything else (Alembic itself fails on some of them with an
            internal assertion).
    """
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise ValidationError(
            f"not a revision: {shown(revision)}",
            hint="give a revision id (see `arquivo db history`), head, base, or -1, -2...",
        )
    return revision


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (``head`` by default), all in one transaction."""
    check_revision(revision)
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to ``revision`` (``-1`` for one step, ``base`` for all)."""
    check_revision(revision)
    _run(engine, "downgrade", revision)


def revision(engine: Engine, message: str, *, autogenerate: bool = False) -> str:
    """Write a new migration script into the package; returns its path.

    With ``autogenerate`` the script holds the differences between the models and the
    database (which must be at head).
    """
    from alembic import command
    from alembic.util import CommandError

    support = get_dialect(engine.dialect.name)
    try:
        with (
            translate_errors(engine.dialect.name),
            support.migration_connection(engine) as connection,
        ):
            script = command.revision(
                alembic_config(connection),
                message=message,
                autogenerate=autogenerate,
                rev_id=_next_revision_id(),
            )
    except CommandError as exc:
        raise MigrationError(f"revision failed: {exc}") from exc
    _scripts.cache_clear()
    scripts = script if isinstance(script, list) else [script]
    return ", ".join(s.path for s in scripts if s is not None)


def _next_revision_id() -> str:
    # Sequential ids ("0002") keep the versions folder readable in order.
    numbers = [int(r.id) for r in history() if r.id.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def check(engine: Engine) -> list[str]:
    """Differences between the models and the database schema (empty when they agree).

    Raises:
        SchemaOutOfDateError: The database is not at the head revision, so comparing it
            with the models would only list the migrations still to apply.
    """
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"the database is at {current or 'base'}, not at the head revision {head}",
            hint="run `arquivo db upgrade` first; check compares a database at head "
            "with the models",
        )
    from alembic import command
    from alembic.util import CommandError
    from alembic.util.exc import AutogenerateDiffsDetected

    with _reading(engine) as connection:
        try:
            command.check(alembic_config(connection))
        except AutogenerateDiffsDetected as exc:
            return [str(diff) for diff in getattr(exc, "diffs", [])] or [str(exc)]
        except CommandError as exc:
            raise MigrationError(f"check failed: {exc}") from exc
    return []


def history() -> list[Revision]:
    """Every shipped revision, newest first."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    result = []
    for script in scripts.walk_revisions():
        down = script.down_revision
        result.append(
            Revision(
                id=script.revision,
                down_revision=down if isinstance(down, str) or down is None else ",".join(down),
                message=(script.doc or "").strip(),
                is_head=script.revision in heads,
            )
        )
    return result
