"""The native backend: chunks and their vectors as rows of the store's own database.

A chunk's text, metadata, owner and embedding are one row of ``knowledge_chunks``, so
they commit in one transaction, join ``store.transaction()``, and are backed up,
restored and forgotten with everything else. What differs between databases is only
the search, in one subclass each: :mod:`~arquivo.knowledge.native_numpy` (numpy over
a cached matrix: SQLite, and PostgreSQL without pgvector) and
:mod:`~arquivo.knowledge.native_pg` (pgvector HNSW).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import sqlalchemy as sa

from arquivo.db.dialects import DialectSupport, get_dialect
from arquivo.db.fastpath import Driver
from arquivo.db.types import utcnow
from arquivo.errors import DuplicateError, NotFoundError, ValidationError
from arquivo.knowledge.backend import Matrix, VectorBackend
from arquivo.knowledge.filters import Filter, to_sql
from arquivo.knowledge.values import Chunk, CollectionInfo, Hit, Record
from arquivo.models.knowledge import KnowledgeChunk, KnowledgeCollection

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["CHUNKS", "COLLECTIONS", "NativeBackend", "native_backend"]

COLLECTIONS = cast(sa.Table, KnowledgeCollection.__table__)
CHUNKS = cast(sa.Table, KnowledgeChunk.__table__)
_C, _K = COLLECTIONS.c, CHUNKS.c
_META = CHUNKS.c["metadata"]
# Ids per IN list: far below SQLite's 32,766 parameters and PostgreSQL's 65,535.
_BATCH = 500


def not_found(name: str) -> NotFoundError:
    """The error for a collection that does not exist."""
    return NotFoundError(
        f"there is no knowledge collection {name!r}",
        hint="create it with store.knowledge.create_collection(), or list them with "
        "`arquivo kb list`",
    )


def _info(row: Any) -> CollectionInfo:
    return CollectionInfo(row[0], row[1], row[2], row[3], int(row[4]))


def _select_collection(_: DialectSupport) -> sa.Select[Any]:
    return sa.select(_C.name, _C.dimensions, _C.metric, _C.embedder, _C.id).where(
        _C.name == sa.bindparam("name")
    )


def _select_collections(_: DialectSupport) -> sa.Select[Any]:
    return sa.select(_C.name, _C.dimensions, _C.metric, _C.embedder, _C.id).order_by(_C.name)


def _insert_collection(support: DialectSupport) -> Any:
    return support.insert(COLLECTIONS).values(
        name=sa.bindparam("name"),
        dimensions=sa.bindparam("dimensions"),
        metric=sa.bindparam("metric"),
        embedder=sa.bindparam("embedder"),
        version=0,
        epoch=0,
        created_at=sa.bindparam("now", type_=_C.created_at.type),
    )


def _set_dimensions(_: DialectSupport) -> sa.Update:
    return (
        sa.update(COLLECTIONS)
        .where(_C.id == sa.bindparam("cid"), _C.dimensions.is_(None))
        .values(dimensions=sa.bindparam("dimensions"))
    )


def _delete_collection(_: DialectSupport) -> sa.Delete:
    return sa.delete(COLLECTIONS).where(_C.id == sa.bindparam("cid"))


def _delete_chunks_of(_: DialectSupport) -> sa.Delete:
    return sa.delete(CHUNKS).where(_K.collection_id == sa.bindparam("cid"))


def _upsert_chunk(support: DialectSupport) -> Any:
    return support.upsert(
        CHUNKS,
        {
            "collection_id": sa.bindparam("cid"),
            "key": sa.bindparam("key"),
            "document_id": sa.bindparam("document_id"),
            "user_id": sa.bindparam("user_id"),
            "text": sa.bindparam("text"),
            "metadata": sa.bindparam("meta", type_=_META.type),
            "embedding": sa.bindparam("embedding", type_=_K.embedding.type),
            "created_at": sa.bindparam("now", type_=_K.created_at.type),
            "updated_at": sa.bindparam("now", type_=_K.updated_at.type),
        },
        conflict=("collection_id", "key"),
        update=("document_id", "user_id", "text", "metadata", "embedding", "updated_at"),
    )


def _count(_: DialectSupport) -> sa.Select[Any]:
    return sa.select(sa.func.count()).where(_K.collection_id == sa.bindparam("cid"))


def _delete_user(_: DialectSupport) -> sa.Delete:
    return sa.delete(CHUNKS).where(_K.user_id == sa.bindparam("user_id"))


def _count_user(_: DialectSupport) -> sa.Select[Any]:
    return sa.select(sa.func.count()).where(_K.user_id == sa.bindparam("user_id"))


def in_list(column: sa.ColumnElement[Any], values: list[Any]) -> sa.ColumnElement[bool]:
    """``column IN (...)`` with one plain parameter per value (see ``Driver.prepare``)."""
    return column.in_(
        [sa.bindparam(f"v{i}", value, type_=column.type) for i, value in enumerate(values)]
    )


def _metadata(value: Any) -> dict[str, Any]:
    return dict(value) if value else {}


class NativeBackend(VectorBackend):
    """Rows in the store's database; subclasses implement :meth:`query` per database."""

    name = "native"
    transactional = True
    #: The SQLAlchemy dialect this subclass searches on (the registry's key).
    dialect: ClassVar[str]
    #: Whether it searches an ANN index in the database (pgvector HNSW).
    ann_index: ClassVar[bool] = False

    def announce(self) -> None:
        """Say once per process what an operator should know about this backend."""

    def __init__(self, store: Arquivo) -> None:
        """Work on ``store``'s database."""
        self._store = store
        self._support = get_dialect(store.dialect)

    # --- hooks for the per-database subclasses -------------------------------------

    def on_dimensions(self, driver: Driver, cid: int, dimensions: int, metric: str) -> None:
        """The collection's width is now known (create an index, say)."""

    def on_drop(self, driver: Driver, cid: int) -> None:
        """The collection is being dropped, in this transaction."""

    # --- collections ---------------------------------------------------------------

    def _collection_id(self, driver: Driver, name: str) -> tuple[int, int | None]:
        rows = driver.execute(_select_collection, {"name": name})
        if not rows:
            raise not_found(name)
        return int(rows[0][4]), rows[0][1]

    def create_collection(
        self, name: str, dimensions: int | None, metric: str, embedder: str | None
    ) -> CollectionInfo:
        values = {
            "name": name,
            "dimensions": dimensions,
            "metric": metric,
            "embedder": embedder,
            "now": utcnow(),
        }
        with self._store.unit(write=True) as driver:
            if driver.execute(_select_collection, {"name": name}):
                raise DuplicateError(
                    f"the knowledge collection {name!r} already exists",
                    hint="use it, or drop it first with store.knowledge.drop_collection()",
                )
            driver.rowcount(_insert_collection, values)
            if dimensions is not None:
                cid, _ = self._collection_id(driver, name)
                self.on_dimensions(driver, cid, dimensions, metric)
        return CollectionInfo(name, dimensions, metric, embedder)

    def get_collection(self, name: str) -> CollectionInfo:
        with self._store.unit(write=False) as driver:
            rows = driver.execute(_select_collection, {"name": name})
        if not rows:
            raise not_found(name)
        return _info(rows[0])

    def collections(self) -> list[CollectionInfo]:
        with self._store.unit(write=False) as driver:
            return [_info(row) for row in driver.execute(_select_collections, {})]

    def drop_collection(self, name: str) -> None:
        with self._store.unit(write=True) as driver:
            cid, _ = self._collection_id(driver, name)
            self.on_drop(driver, cid)
            # Chunks first: a cascade would work too, but only where foreign keys are on.
            driver.rowcount(_delete_chunks_of, {"cid": cid})
            driver.rowcount(_delete_collection, {"cid": cid})

    # --- chunks --------------------------------------------------------------------

    def upsert(
        self, collection: CollectionInfo, records: list[Record], *, replace_document: str | None
    ) -> None:
        width = int(records[0].embedding.shape[0]) if records else None
        now = utcnow()
        with self._store.unit(write=True) as driver:
            cid, dimensions = self._collection_id(driver, collection.name)
            if width is not None and dimensions is None:
                driver.rowcount(_set_dimensions, {"cid": cid, "dimensions": width})
                cid, dimensions = self._collection_id(driver, collection.name)
                if dimensions == width:
                    self.on_dimensions(driver, cid, width, collection.metric)
            if width is not None and dimensions != width:
                raise ValidationError(
                    f"the embeddings have {width} dimensions; the collection "
                    f"{collection.name!r} has {dimensions}",
                    hint="embed with the collection's model, or use another collection",
                )
            if replace_document is not None:
                statement = sa.delete(CHUNKS).where(
                    _K.collection_id == cid, _K.document_id == replace_document
                )
                driver.run(driver.prepare(statement), {})
            if records:
                prepared = driver.prepare(_upsert_chunk(self._support))
                driver.run_many(
                    prepared,
                    [
                        {
                            "cid": cid,
                            "key": r.id,
                            "document_id": r.document_id,
                            "user_id": r.user_id,
                            "text": r.text,
                            "meta": r.metadata or None,
                            "embedding": r.embedding,
                            "now": now,
                        }
                        for r in records
                    ],
                )

    def _conditions(
        self,
        cid: int,
        *,
        where: Filter | None = None,
        document_id: str | None = None,
        user_id: str | None = None,
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = [_K.collection_id == cid]
        if where is not None:
            conditions.append(to_sql(where, _META, self._support))
        if document_id is not None:
            conditions.append(_K.document_id == document_id)
        if user_id is not None:
            conditions.append(_K.user_id == user_id)
        return conditions

    def delete(
        self,
        collection: CollectionInfo,
        *,
        ids: list[str] | None = None,
        where: Filter | None = None,
        document_id: str | None = None,
    ) -> int:
        with self._store.unit(write=True) as driver:
            cid, _ = self._collection_id(driver, collection.name)
            conditions = self._conditions(cid, where=where, document_id=document_id)
            if ids is None:
                statement = sa.delete(CHUNKS).where(*conditions)
                return driver.rowcount_of(driver.prepare(statement), {})
            deleted = 0
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                statement = sa.delete(CHUNKS).where(*conditions, in_list(_K.key, batch))
                deleted += driver.rowcount_of(driver.prepare(statement), {})
            return deleted

    def get(self, collection: CollectionInfo, ids: list[str]) -> list[Chunk]:
        found: dict[str, Chunk] = {}
        with self._store.unit(write=False) as driver:
            cid, _ = self._collection_id(driver, collection.name)
            for start in range(0, len(ids), _BATCH):
                statement = sa.select(
                    _K.key, _K.text, _META, _K.user_id, _K.document_id, _K.embedding
                ).where(_K.collection_id == cid, in_list(_K.key, ids[start : start + _BATCH]))
                for key, text, meta, user, document, embedding in driver.run(
                    driver.prepare(statement), {}
                ):
                    found[key] = Chunk(
                        key, text, _metadata(meta), user, document, embedding.tolist()
                    )
        return [found[i] for i in ids if i in found]

    def count(self, collection: CollectionInfo) -> int:
        with self._store.unit(write=False) as driver:
            cid, _ = self._collection_id(driver, collection.name)
            return int(driver.execute(_count, {"cid": cid})[0][0])

    def delete_user(self, user_id: str) -> int:
        with self._store.unit(write=True) as driver:
            return driver.rowcount(_delete_user, {"user_id": user_id})

    def count_user(self, user_id: str) -> int:
        with self._store.unit(write=False) as driver:
            return int(driver.execute(_count_user, {"user_id": user_id})[0][0])

    def hits(self, metric: str, rows: list[tuple[Any, ...]]) -> list[Hit]:
        """Hits from rows of (key, text, metadata, user_id, document_id, distance)."""
        hits = []
        for key, text, meta, user, document, distance in rows:
            distance = float(distance)
            score = 1.0 - distance if metric == "cosine" else -distance
            hits.append(Hit(key, text, _metadata(meta), distance, score, user, document))
        return hits

    def query(
        self,
        collection: CollectionInfo,
        embedding: Matrix,
        *,
        k: int,
        where: Filter | None,
        user_id: str | None,
        exact: bool,
    ) -> list[Hit]:
        raise NotImplementedError


def native_backend(store: Arquivo) -> NativeBackend:
    """The native backend for ``store``'s database (a registry keyed by dialect name and
    whether the embedding column is a native vector type)."""
    from arquivo.knowledge.native_numpy import SqliteNumpyBackend
    from arquivo.knowledge.native_pg import PgArrayBackend, PgvectorBackend

    registry: dict[tuple[str, bool], type[NativeBackend]] = {
        (cls.dialect, cls.ann_index): cls
        for cls in (SqliteNumpyBackend, PgArrayBackend, PgvectorBackend)
    }
    support = get_dialect(store.dialect)
    with store.engine.connect() as connection:
        native_vectors = support.has_vector_column(connection)
    backend = registry[(store.dialect, native_vectors)](store)
    backend.announce()
    return backend


def as_matrix(value: Any) -> Matrix:
    """A float32 copy of ``value`` as a numpy array."""
    return np.asarray(value, dtype=np.float32)
