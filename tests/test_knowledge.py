"""The knowledge store's contract, run on every vector backend.

``kstore`` is a store whose ``knowledge`` uses one backend: native on SQLite, native on
PostgreSQL (pgvector), and Chroma (a local folder, and a real ``chroma run`` server).
Behaviour that differs is keyed on the backend's capability flags, never copied.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from arquivo import Arquivo, DuplicateError, NotFoundError, ValidationError
from conftest import Backend
from knowledge_support import (
    KNOWLEDGE_BACKENDS,
    chroma_server,
    open_knowledge_store,
    plain_postgres_url,
)

# The session's Chroma server and the PostgreSQL-without-pgvector database, for kstore.
__all__ = ["chroma_server", "plain_postgres_url"]


@pytest.fixture(params=KNOWLEDGE_BACKENDS)
def kstore(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Arquivo]:
    """A migrated store whose knowledge uses each backend in turn."""
    yield from open_knowledge_store(request, request.param, tmp_path)


def _unit(*values: float) -> list[float]:
    vector = np.array(values, dtype=np.float64)
    return list(vector / np.linalg.norm(vector))


def _seed(store: Arquivo, name: str = "docs") -> None:
    store.knowledge.create_collection(name, dimensions=3)
    store.knowledge.add(
        name,
        ["about cats", "about dogs", "about fish", "about birds"],
        ids=["c", "d", "f", "b"],
        embeddings=[_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1), _unit(1, 1, 0)],
        metadatas=[
            {"kind": "mammal", "legs": 4, "pet": True},
            {"kind": "mammal", "legs": 4, "pet": True},
            {"kind": "fish", "legs": 0, "pet": False},
            {"kind": "bird", "legs": 2, "pet": True},
        ],
        user_id="ana",
    )


def test_collections_lifecycle(kstore: Arquivo) -> None:
    knowledge = kstore.knowledge
    info = knowledge.create_collection("docs", dimensions=3, metric="cosine")
    assert (info.name, info.dimensions, info.metric) == ("docs", 3, "cosine")
    with pytest.raises(DuplicateError):
        knowledge.create_collection("docs", dimensions=3)
    knowledge.create_collection("notes")
    assert [c.name for c in knowledge.collections()] == ["docs", "notes"]
    assert knowledge.collection("notes").dimensions is None
    knowledge.drop_collection("notes")
    assert [c.name for c in knowledge.collections()] == ["docs"]
    with pytest.raises(NotFoundError):
        knowledge.drop_collection("notes")
    with pytest.raises(NotFoundError):
        knowledge.count("notes")


def test_query_ranks_and_filters(kstore: Arquivo) -> None:
    _seed(kstore)
    knowledge = kstore.knowledge
    hits = knowledge.query("docs", _unit(1, 0.1, 0), k=3)
    assert [h.id for h in hits] == ["c", "b", "d"]
    assert hits[0].text == "about cats"
    assert hits[0].metadata == {"kind": "mammal", "legs": 4, "pet": True}
    assert hits[0].user_id == "ana"
    assert math.isclose(hits[0].score, 1 - hits[0].distance, abs_tol=1e-6)
    assert hits[0].distance < hits[1].distance < hits[2].distance
    assert math.isclose(
        hits[0].score, float(np.dot(_unit(1, 0.1, 0), _unit(1, 0, 0))), abs_tol=1e-4
    )

    def ids(where: dict[str, Any]) -> list[str]:
        return sorted(h.id for h in knowledge.query("docs", _unit(1, 1, 1), k=10, where=where))

    assert ids({"kind": "mammal"}) == ["c", "d"]
    assert ids({"legs": {"$gte": 2}}) == ["b", "c", "d"]
    assert ids({"legs": {"$lt": 4}}) == ["b", "f"]
    assert ids({"kind": {"$in": ["fish", "bird"]}}) == ["b", "f"]
    assert ids({"kind": {"$nin": ["fish", "bird"]}}) == ["c", "d"]
    assert ids({"kind": {"$ne": "mammal"}}) == ["b", "f"]
    assert ids({"pet": False}) == ["f"]
    assert ids({"$or": [{"kind": "fish"}, {"legs": 2}]}) == ["b", "f"]
    assert ids({"kind": "mammal", "legs": 4}) == ["c", "d"]
    assert ids({"kind": "reptile"}) == []
    # Chroma's rule everywhere: "not equal" includes chunks lacking the key or typed otherwise.
    knowledge.add("docs", ["no metadata"], ids=["x"], embeddings=[_unit(1, 1, 1)])
    knowledge.add(
        "docs", ["text legs"], ids=["t"], embeddings=[_unit(1, 0, 1)], metadatas=[{"legs": "four"}]
    )
    assert ids({"kind": {"$ne": "mammal"}}) == ["b", "f", "t", "x"]
    assert ids({"kind": {"$nin": ["mammal", "fish"]}}) == ["b", "t", "x"]
    assert ids({"legs": {"$gte": 0}}) == ["b", "c", "d", "f"]
    assert ids({"legs": "four"}) == ["t"]
    knowledge.delete("docs", ["x", "t"])
    # A filter that keeps few rows still gives every one of them (iterative HNSW scan).
    assert [h.id for h in knowledge.query("docs", _unit(1, 0, 0), k=2, where={"legs": 0})] == ["f"]
    assert knowledge.query("docs", _unit(1, 0, 0), k=5, user_id="bob") == []
    assert len(knowledge.query("docs", _unit(1, 0, 0), k=5, user_id="ana")) == 4


def test_upsert_get_delete_count(kstore: Arquivo) -> None:
    _seed(kstore)
    knowledge = kstore.knowledge
    assert knowledge.count("docs") == 4
    knowledge.add("docs", ["cats, revised"], ids=["c"], embeddings=[_unit(0, 0, 1)])
    assert knowledge.count("docs") == 4
    (chunk,) = knowledge.get("docs", ["c"])
    assert chunk.text == "cats, revised"
    assert chunk.metadata == {}
    assert np.allclose(chunk.embedding, _unit(0, 0, 1), atol=1e-6)
    assert {h.id for h in knowledge.query("docs", _unit(0, 0, 1), k=2)} == {"c", "f"}
    assert [c.id for c in knowledge.get("docs", ["f", "nope", "d"])] == ["f", "d"]
    assert knowledge.delete("docs", ["d", "nope"]) == 1
    assert knowledge.delete("docs", where={"kind": "fish"}) == 1
    assert sorted(c.id for c in knowledge.get("docs", ["b", "c", "d", "f"])) == ["b", "c"]
    assert knowledge.count("docs") == 2
    assert knowledge.query("docs", _unit(0, 1, 0), k=5)[0].id == "b"


def test_documents_are_chunked_and_deleted_together(kstore: Arquivo) -> None:
    knowledge = kstore.knowledge
    width = 8

    def embed(texts: list[str]) -> list[list[float]]:
        # Deterministic, text-dependent vectors: enough to store and find chunks.
        return [
            [float((len(t) * (i + 3) + ord(t[0])) % 11) + 1.0 for i in range(width)] for t in texts
        ]

    knowledge.create_collection("manual", embedder=embed)
    text = " ".join(f"Sentence number {i} of the manual." for i in range(60))
    doc = knowledge.add_document(
        "manual",
        text,
        document_id="manual.md",
        chunk_size=200,
        overlap=40,
        metadata={"source": "manual.md"},
        user_id="ana",
    )
    assert len(doc.chunk_ids) >= 10
    assert doc.chunk_ids[0] == "manual.md#0"
    assert knowledge.collection("manual").dimensions == width
    chunks = knowledge.get("manual", doc.chunk_ids)
    assert all(len(c.text) <= 200 and c.document_id == "manual.md" for c in chunks)
    assert chunks[0].metadata == {"source": "manual.md"}
    assert "Sentence number 0 of the manual." in chunks[0].text
    knowledge.add("manual", ["unrelated"], ids=["other"])
    # Adding the document again replaces its chunks, leaving other rows alone.
    again = knowledge.add_document("manual", "A much shorter manual.", document_id="manual.md")
    assert again.chunk_ids == ["manual.md#0"]
    assert knowledge.count("manual") == 2
    assert knowledge.delete_document("manual", "manual.md") == 1
    assert [c.id for c in knowledge.get("manual", ["other", "manual.md#0"])] == ["other"]


def test_forget_user_reaches_the_vectors(kstore: Arquivo) -> None:
    _seed(kstore)
    kstore.knowledge.create_collection("other", dimensions=3)
    kstore.knowledge.add("other", ["bob's note"], embeddings=[_unit(1, 0, 0)], user_id="bob")
    kstore.knowledge.add("other", ["ana's note"], embeddings=[_unit(0, 1, 0)], user_id="ana")
    assert kstore.knowledge.forget_user("ana") == 5
    assert kstore.knowledge.count("docs") == 0
    assert [h.user_id for h in kstore.knowledge.query("other", _unit(0, 1, 0), k=5)] == ["bob"]


def test_store_users_forget_reaches_the_vectors(kstore: Arquivo) -> None:
    # "Forget this user" for the whole store: rows and vectors, on every backend.
    _seed(kstore)
    kstore.knowledge.add(
        "docs", ["bob's"], ids=["bob1"], embeddings=[_unit(1, 0, 1)], user_id="bob"
    )
    kstore.preferences.set("ana", "theme", "dark")
    key = (
        "knowledge_chunks"
        if kstore.knowledge.backend.transactional
        else ("knowledge (vector store)")
    )
    counted = kstore.users.data("ana")
    assert counted.rows[key] == 4
    assert counted.rows["user_preferences"] == 1
    assert kstore.knowledge.count("docs") == 5  # a dry run deletes nothing
    report = kstore.users.forget("ana")
    assert report.rows[key] == 4
    assert report.total == 5
    assert [c.id for c in kstore.knowledge.get("docs", ["c", "d", "f", "b", "bob1"])] == ["bob1"]
    assert [h.id for h in kstore.knowledge.query("docs", _unit(1, 0, 0), k=5)] == ["bob1"]
    assert kstore.users.data("ana").total == 0


BAD_CALLS: list[tuple[Any, type[Exception]]] = [
    (lambda k: k.add("docs", ["x"], embeddings=[[1.0, 0.0]]), ValidationError),
    (lambda k: k.add("docs", [], embeddings=[]), ValidationError),
    (lambda k: k.add("docs", ["  "], embeddings=[_unit(1, 0, 0)]), ValidationError),
    (lambda k: k.add("docs", ["x"], embeddings=[[1.0, float("nan"), 0.0]]), ValidationError),
    (lambda k: k.add("docs", ["x"], embeddings=[[1.0, float("inf"), 0.0]]), ValidationError),
    (lambda k: k.add("docs", ["x"], embeddings=[[0.0, 0.0, 0.0]]), ValidationError),
    (lambda k: k.add("docs", ["x", "y"], embeddings=[_unit(1, 0, 0)]), ValidationError),
    (
        lambda k: k.add("docs", ["x", "y"], ids=["a", "a"], embeddings=[_unit(1, 0, 0)] * 2),
        ValidationError,
    ),
    (
        lambda k: k.add("docs", ["x"], embeddings=[_unit(1, 0, 0)], metadatas=[{"a": {"b": 1}}]),
        ValidationError,
    ),
    (
        lambda k: k.add("docs", ["x"], embeddings=[_unit(1, 0, 0)], metadatas=[{"a b": 1}]),
        ValidationError,
    ),
    (lambda k: k.add("nope", ["x"], embeddings=[_unit(1, 0, 0)]), NotFoundError),
    (lambda k: k.query("docs", [1.0, 0.0], k=1), ValidationError),
    (lambda k: k.query("docs", _unit(1, 0, 0), k=0), ValidationError),
    (lambda k: k.query("docs", _unit(1, 0, 0), where={"legs": {"$near": 1}}), ValidationError),
    (lambda k: k.query("docs", _unit(1, 0, 0), where={"legs": {"$gt": "x"}}), ValidationError),
    (lambda k: k.query("nope", _unit(1, 0, 0)), NotFoundError),
    (lambda k: k.delete("docs"), ValidationError),
    (lambda k: k.create_collection("ab"), ValidationError),
    (lambda k: k.create_collection("fine", metric="manhattan"), ValidationError),
]


def test_bad_input_writes_nothing(kstore: Arquivo) -> None:
    _seed(kstore)
    before = sorted((c.id, c.text) for c in kstore.knowledge.get("docs", ["c", "d", "f", "b"]))
    for number, (call, error) in enumerate(BAD_CALLS):
        with pytest.raises(error) as info:
            call(kstore.knowledge)
        assert info.value.hint is not None, number  # type: ignore[attr-defined]
    after = sorted((c.id, c.text) for c in kstore.knowledge.get("docs", ["c", "d", "f", "b"]))
    assert after == before
    assert kstore.knowledge.count("docs") == 4
    assert [c.name for c in kstore.knowledge.collections()] == ["docs"]


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_other_metrics(kstore: Arquivo, metric: str) -> None:
    kstore.knowledge.create_collection("vecs", dimensions=2, metric=metric)
    kstore.knowledge.add(
        "vecs",
        ["near", "far", "long"],
        ids=["n", "f", "l"],
        embeddings=[[1.0, 0.0], [-1.0, 0.0], [4.0, 0.0]],
    )
    hits = kstore.knowledge.query("vecs", [1.0, 0.0], k=3)
    if metric == "l2":
        assert [h.id for h in hits] == ["n", "f", "l"]
        assert [round(h.distance, 4) for h in hits] == [0.0, 2.0, 3.0]
    else:
        assert [h.id for h in hits] == ["l", "n", "f"]
        assert [round(h.distance, 4) for h in hits] == [-4.0, -1.0, 1.0]
    assert all(math.isclose(h.score, -h.distance, abs_tol=1e-6) for h in hits)


def test_native_rows_and_vectors_commit_together(store: Arquivo, backend: Backend) -> None:
    store.knowledge.create_collection("docs", dimensions=3)
    with pytest.raises(RuntimeError), store.transaction():
        store.knowledge.add("docs", ["kept?"], ids=["x"], embeddings=[_unit(1, 0, 0)])
        store.preferences.set("ana", "theme", "dark")
        raise RuntimeError("roll it all back")
    assert store.knowledge.count("docs") == 0
    assert store.knowledge.query("docs", _unit(1, 0, 0)) == []
    assert store.preferences.get("ana", "theme") is None
    with store.transaction():
        store.knowledge.add("docs", ["kept"], ids=["x"], embeddings=[_unit(1, 0, 0)])
    assert [h.id for h in store.knowledge.query("docs", _unit(1, 0, 0))] == ["x"]


def test_native_cache_sees_other_writers(backend: Backend) -> None:
    # Two stores (as two processes would): writes through one, or by raw SQL, show in
    # the other's queries at once.
    with Arquivo.open(backend.url) as first, Arquivo.open(backend.url) as second:
        first.knowledge.create_collection("docs", dimensions=3)
        first.knowledge.add("docs", ["a"], ids=["a"], embeddings=[_unit(1, 0, 0)])
        assert [h.id for h in second.knowledge.query("docs", _unit(1, 0, 0))] == ["a"]
        first.knowledge.add("docs", ["b"], ids=["b"], embeddings=[_unit(0, 1, 0)])
        assert [h.id for h in second.knowledge.query("docs", _unit(0, 1, 0), k=1)] == ["b"]
        first.knowledge.add("docs", ["a2"], ids=["a"], embeddings=[_unit(0, 0, 1)])
        assert [h.id for h in second.knowledge.query("docs", _unit(0, 0, 1), k=1)] == ["a"]
        with first.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM knowledge_chunks WHERE key = 'b'")
        assert [h.id for h in second.knowledge.query("docs", _unit(0, 1, 0), k=5)] == ["a"]


@pytest.mark.parametrize("name", ["chroma-local", "chroma-server"])
def test_chroma_follows_a_collection_recreated_by_another_client(
    request: pytest.FixtureRequest, tmp_path: Any, name: str
) -> None:
    # The backend keeps collection handles; another client dropping and recreating the
    # collection must not leave this one answering from (or failing on) the old one.
    first_stores = open_knowledge_store(request, name, tmp_path)
    second_stores = open_knowledge_store(request, name, tmp_path)
    first, second = next(first_stores), next(second_stores)
    try:
        first.knowledge.create_collection("docs", dimensions=3)
        first.knowledge.add("docs", ["old"], ids=["old"], embeddings=[_unit(1, 0, 0)])
        assert [h.id for h in second.knowledge.query("docs", _unit(1, 0, 0))] == ["old"]
        first.knowledge.drop_collection("docs")
        first.knowledge.create_collection("docs", dimensions=3)
        first.knowledge.add("docs", ["new"], ids=["new"], embeddings=[_unit(0, 1, 0)])
        assert [h.id for h in second.knowledge.query("docs", _unit(1, 0, 0))] == ["new"]
        second.knowledge.add("docs", ["more"], ids=["more"], embeddings=[_unit(0, 0, 1)])
        assert first.knowledge.count("docs") == 2
        first.knowledge.drop_collection("docs")
        with pytest.raises(NotFoundError):
            second.knowledge.query("docs", _unit(1, 0, 0))
        with pytest.raises(NotFoundError):
            second.knowledge.add("docs", ["x"], ids=["x"], embeddings=[_unit(0, 0, 1)])
    finally:
        for stores in (second_stores, first_stores):
            with contextlib.suppress(StopIteration):
                next(stores)


def test_models_and_migrations_agree_with_collections_present(store: Arquivo) -> None:
    # Per-collection ANN indexes (PostgreSQL) are made at run time, not by a revision:
    # the schema check must not report them.
    from arquivo.db.migrate import check

    store.knowledge.create_collection("docs", dimensions=3)
    store.knowledge.add("docs", ["a"], embeddings=[_unit(1, 0, 0)])
    assert check(store.engine) == []


def test_async_facade(tmp_path: Any) -> None:
    import asyncio

    from arquivo import AsyncArquivo

    async def main() -> list[str]:
        async with await AsyncArquivo.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
            await store.knowledge.create_collection("docs", dimensions=3)
            await store.knowledge.add(
                "docs", ["a", "b"], ids=["a", "b"], embeddings=[_unit(1, 0, 0), _unit(0, 1, 0)]
            )
            return [h.id for h in await store.knowledge.query("docs", _unit(0, 1, 0), k=1)]

    assert asyncio.run(main()) == ["b"]


def test_bulk_load_builds_the_index_at_the_end(kstore: Arquivo) -> None:
    kstore.knowledge.create_collection("bulk", dimensions=3)
    with kstore.knowledge.bulk_load("bulk"):
        kstore.knowledge.add(
            "bulk", ["a", "b"], ids=["a", "b"], embeddings=[_unit(1, 0, 0), _unit(0, 1, 0)]
        )
        # Searchable meanwhile (exactly, where the index is gone).
        assert [h.id for h in kstore.knowledge.query("bulk", _unit(0, 1, 0), k=1)] == ["b"]
    assert [h.id for h in kstore.knowledge.query("bulk", _unit(1, 0.1, 0), k=1)] == ["a"]
    if kstore.knowledge.backend.name == "native" and kstore.knowledge.backend.approximate:
        with kstore.engine.connect() as connection:
            names = (
                connection.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes "
                    "WHERE starts_with(indexname, 'ix_knowledge_ann_')"
                )
                .scalars()
                .all()
            )
            # Fresh statistics, so that the planner does not prefer a scan to the index.
            analyzed = connection.exec_driver_sql(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'knowledge_chunks'"
            ).one()
        assert len(names) == 1
        assert analyzed.last_analyze is not None
    with pytest.raises(NotFoundError):
        kstore.knowledge.bulk_load("nope").__enter__()
