"""PostgreSQL without pgvector: the migration, the exact index, and ``enable_ann`` later.

The database belongs to a role that is not a superuser, so ``CREATE EXTENSION vector``
is refused for real (pgvector is not a trusted extension). The knowledge contract itself
runs here too, as the ``native-postgresql-plain`` backend of ``tests/test_knowledge.py``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import pytest

from arquivo import Arquivo, ConfigurationError
from arquivo.db.engine import create_engine
from arquivo.db.migrate import check, current_revision, downgrade, head_revision, upgrade
from knowledge_support import plain_postgres_url
from pg_server import _libpq
from test_cli import run, run_json

__all__ = ["plain_postgres_url"]


def _column_type(url: str) -> str | None:
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass('knowledge_chunks') AND attname = 'embedding'"
        ).fetchone()
    return None if row is None else str(row[0])


def _vectors(seed: int, count: int, width: int = 16) -> Any:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(count, width)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_migration_takes_the_portable_path_and_stays_checkable(
    plain_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(plain_postgres_url)
    try:
        with caplog.at_level(logging.WARNING, logger="arquivo"):
            upgrade(engine)
        assert any("arquivo kb enable-ann" in r.getMessage() for r in caplog.records)
        assert _column_type(plain_postgres_url) == "real[]"
        assert check(engine) == []
        with Arquivo(engine) as store:
            store.knowledge.create_collection("docs", dimensions=16)
            store.knowledge.add("docs", ["a", "b"], ids=["a", "b"], embeddings=_vectors(1, 2))
            store.preferences.set("ana", "theme", "dark")
            assert check(engine) == []
        # Down to before the knowledge tables and up again, with rows elsewhere kept.
        downgrade(engine, "0004")
        assert _column_type(plain_postgres_url) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with Arquivo(engine) as store:
            assert store.preferences.get("ana", "theme") == "dark"
            assert store.knowledge.collections() == []
    finally:
        engine.dispose()
    # The CLI's own check agrees.
    checked = run("--url", plain_postgres_url, "db", "check")
    assert checked.returncode == 0, checked.stderr


def test_exact_index_sees_other_writers(plain_postgres_url: str) -> None:
    with Arquivo.open(plain_postgres_url) as first, Arquivo.open(plain_postgres_url) as second:
        first.knowledge.create_collection("docs", dimensions=16)
        data = _vectors(2, 50)
        first.knowledge.add(
            "docs", [f"t{i}" for i in range(50)], ids=[str(i) for i in range(50)], embeddings=data
        )
        assert [h.id for h in second.knowledge.query("docs", data[7], k=1)] == ["7"]
        # An update and a delete, by raw SQL: the statement triggers bump the epoch.
        with first.engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE knowledge_chunks SET embedding = (SELECT embedding FROM "
                "knowledge_chunks WHERE key = '3') WHERE key = '7'"
            )
            connection.exec_driver_sql("DELETE FROM knowledge_chunks WHERE key = '3'")
        assert [h.id for h in second.knowledge.query("docs", data[3], k=1)] == ["7"]
        first.knowledge.add("docs", ["new"], ids=["new"], embeddings=[data[3]])
        assert [h.id for h in second.knowledge.query("docs", data[3], k=2)] in (
            ["7", "new"],
            ["new", "7"],
        )


def test_enable_ann_converts_in_place_once_pgvector_exists(
    plain_postgres_url: str, postgres_admin_url: str
) -> None:
    data = _vectors(3, 200)
    queries = _vectors(4, 10)
    with Arquivo.open(plain_postgres_url) as store:
        knowledge = store.knowledge
        knowledge.create_collection("docs", dimensions=16)
        knowledge.create_collection("notes", dimensions=16, metric="l2")
        knowledge.create_collection("empty")
        ids = [f"d{i}" for i in range(200)]
        knowledge.add(
            "docs",
            ids,
            ids=ids,
            embeddings=data,
            user_id="ana",
            metadatas=[{"n": i} for i in range(200)],
        )
        knowledge.add("notes", ["x"], ids=["x"], embeddings=data[:1])
        before = [
            [(h.id, round(h.distance, 5)) for h in knowledge.query("docs", q, k=5)] for q in queries
        ]
        stored = knowledge.get("docs", ["d5"])[0].embedding
        # No pgvector yet: a clear refusal, and nothing changed.
        with pytest.raises(ConfigurationError) as refused:
            knowledge.enable_ann()
        assert "CREATE EXTENSION vector" in str(refused.value.hint)
        assert _column_type(plain_postgres_url) == "real[]"
        plan = knowledge.enable_ann(dry_run=True)
        assert (plan.converted, plan.chunks, plan.indexes) == (True, 201, ["docs", "notes"])

    listed = run("--url", plain_postgres_url, "kb", "list")
    assert listed.returncode == 0
    note = " ".join(listed.stderr.split())  # rich wraps long lines
    assert "no pgvector" in note
    assert "arquivo kb enable-ann" in note
    # The operator installs pgvector in this database (as a superuser).
    admin = urlunsplit(
        urlsplit(postgres_admin_url)._replace(path=urlsplit(plain_postgres_url).path)
    )
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")

    done = run_json("--url", plain_postgres_url, "kb", "enable-ann", "--yes")
    assert done == {
        "converted": True,
        "chunks": 201,
        "indexes": ["docs", "notes"],
        "dry_run": False,
    }
    assert _column_type(plain_postgres_url) == "vector"
    with Arquivo.open(plain_postgres_url) as store:
        knowledge = store.knowledge
        assert type(knowledge.backend).__name__ == "PgvectorBackend"
        after = [
            [(h.id, round(h.distance, 5)) for h in knowledge.query("docs", q, k=5, exact=True)]
            for q in queries
        ]
        assert [[i for i, _ in row] for row in after] == [[i for i, _ in row] for row in before]
        assert np.allclose(
            [[d for _, d in row] for row in after],
            [[d for _, d in row] for row in before],
            atol=1e-4,
        )
        assert np.array_equal(knowledge.get("docs", ["d5"])[0].embedding, stored)
        assert knowledge.count("docs") == 200
        assert store.users.forget("ana").rows["knowledge_chunks"] == 200
        assert check(store.engine) == []
        with store.engine.connect() as connection:
            indexes = (
                connection.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes "
                    "WHERE starts_with(indexname, 'ix_knowledge_ann_')"
                )
                .scalars()
                .all()
            )
            triggers = (
                connection.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
                .scalars()
                .all()
            )
        assert len(indexes) == 2
        assert triggers == []
    # A second run has nothing to do.
    again = run("--url", plain_postgres_url, "kb", "enable-ann", "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout


def test_enable_ann_on_sqlite_explains(tmp_path: Any) -> None:
    with (
        Arquivo.open(f"sqlite:///{tmp_path / 'a.db'}") as store,
        pytest.raises(ConfigurationError) as info,
    ):
        store.knowledge.enable_ann()
    assert info.value.hint


def test_chunks_move_between_databases_by_export_and_import(
    plain_postgres_url: str, postgres_backend: Any, tmp_path: Any
) -> None:
    # SQLite -> PostgreSQL without pgvector -> PostgreSQL with pgvector: the vectors
    # arrive exactly and search the same.
    from arquivo.portability import export_data, import_data

    data = _vectors(5, 30)
    ids = [f"c{i}" for i in range(30)]
    urls = [f"sqlite:///{tmp_path / 'a.db'}", plain_postgres_url, postgres_backend.url]
    with Arquivo.open(urls[0]) as source:
        source.knowledge.create_collection("docs", dimensions=16)
        source.knowledge.add("docs", ids, ids=ids, embeddings=data, user_id="ana")
        export_data(source, tmp_path / "0.jsonl")
    for step, url in enumerate(urls[1:]):
        with Arquivo.open(url) as target:
            import_data(target, tmp_path / f"{step}.jsonl")
            got = target.knowledge.get("docs", ids)
            assert np.array_equal(np.array([c.embedding for c in got], dtype=np.float32), data)
            assert [h.id for h in target.knowledge.query("docs", data[9], k=1)] == ["c9"]
            export_data(target, tmp_path / f"{step + 1}.jsonl")
    # Imported collections get their HNSW index from enable-ann.
    built = run_json("--url", postgres_backend.url, "kb", "enable-ann", "--yes")
    assert built == {"converted": False, "chunks": 0, "indexes": ["docs"], "dry_run": False}
