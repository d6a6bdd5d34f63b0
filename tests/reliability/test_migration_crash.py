"""``kill -9`` during a migration: the database is at the old or the new revision, never between.

A child runs an upgrade (or a downgrade) between two random revisions and is killed at
a random moment while it runs. The parent then reads the recorded revision and checks
that the schema is exactly the one of that revision (tables, columns, indexes, as a
clean migration to it makes them), and that migrating on from there still works.
"""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from arquivo.db import migrate
from arquivo.db.engine import create_engine
from conftest import Backend
from reliability.ledger import scaled, tally
from reliability.processes import run_until, say, spawn

Schema = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


def schema(engine: Engine, revision: str | None) -> Schema:
    """Every table with its columns and index names.

    At base the version table may exist, empty (after a downgrade), or not at all.
    """
    inspector = sa.inspect(engine)
    tables = sorted(inspector.get_table_names())
    if revision is None and migrate.VERSION_TABLE in tables:
        tables.remove(migrate.VERSION_TABLE)
    return {
        table: (
            tuple(sorted(column["name"] for column in inspector.get_columns(table))),
            tuple(sorted(str(index["name"]) for index in inspector.get_indexes(table))),
        )
        for table in tables
    }


def migrator(out: int, url: str, action: str, target: str) -> None:
    """Run one migration in the child, saying when it starts and when it is done."""
    engine = create_engine(url)
    migrate.current_revision(engine)  # connect first: the kill should hit the migration
    say(out, "R")
    getattr(migrate, action)(engine, target)
    say(out, "D")


def _revisions() -> list[str | None]:
    return [None, *reversed([r.id for r in migrate.history()])]


def test_kill_9_during_migrations_leaves_old_or_new_revision(backend: Backend) -> None:
    ledger = tally("kill -9 during migration", backend.name)
    revisions = _revisions()
    engine = create_engine(backend.url)
    try:
        # The schema of every revision, as clean migrations make it.
        expected: dict[str | None, Schema] = {None: schema(engine, None)}
        for revision in revisions[1:]:
            assert revision is not None
            migrate.upgrade(engine, revision)
            expected[revision] = schema(engine, revision)
        migrate.downgrade(engine, "base")
        # How long a whole upgrade takes here, to aim the kills inside it.
        child = spawn(migrator, backend.url, "upgrade", "head")
        child.wait()
        assert child.events("D"), child.lines
        started = time.monotonic()
        migrate.downgrade(engine, "base")
        window = time.monotonic() - started
        rng = random.Random(4)
        landed = {"old": 0, "new": 0}
        for _ in range(scaled(10, 100)):
            low, high = sorted(rng.sample(range(len(revisions)), 2))
            old, new = revisions[low], revisions[high]
            action = "upgrade"
            if rng.random() < 0.5:
                old, new, action = new, old, "downgrade"
            _move(engine, old)
            child = spawn(migrator, backend.url, action, new or "base")
            while not child.lines and child.exit_status is None:
                child.pump()
                time.sleep(0.001)
            run_until([child], [time.monotonic() + rng.uniform(0.5, 1.2) * window])
            child.wait()
            ledger.faults += 1
            ledger.kills += child.killed
            engine.dispose()
            current = migrate.current_revision(engine)
            assert current in (old, new), f"{action} {old}->{new} left {current}"
            assert schema(engine, current) == expected[current], f"schema disagrees with {current}"
            landed["new" if current == new else "old"] += 1
            # Aim the next kill nearer the commit: later after a rollback, earlier after a
            # commit, so the kills keep landing on both sides of it whatever the load.
            window *= 0.8 if current == new else 1.3
            ledger.verified += 1
            if current == migrate.head_revision():
                assert migrate.check(engine) == []
        # Kills that landed before the commit and after it: both outcomes were exercised.
        assert landed["old"], landed
        assert landed["new"], landed
        migrate.ensure_schema(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def _move(engine: Engine, revision: str | None) -> None:
    current = migrate.current_revision(engine)
    if current == revision:
        return
    order = _revisions()
    if order.index(current) < order.index(revision):
        migrate.upgrade(engine, revision or "base")
    else:
        migrate.downgrade(engine, revision or "base")


pytestmark = pytest.mark.timeout(600)
