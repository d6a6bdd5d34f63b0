"""Exact search in numpy over each collection's matrix, cached in memory.

Used on SQLite, and on PostgreSQL servers without pgvector. On SQLite: this Python
cannot load SQLite extensions (``sqlite-vec`` would need another DB-API module for the
whole store), and numpy is faster anyway: measured here, ``X @ q`` over 100,000 x 384
float32 takes ~9 ms where sqlite-vec's exact ``vec0`` scan takes 80-110 ms. So
embeddings are float32 BLOBs in ``knowledge_chunks`` (``real[]`` on PostgreSQL) and a
query multiplies the collection's matrix, kept in memory per process.

The cache notices every writer, in this process or another: triggers bump the
collection's ``version`` on every insert and its ``epoch`` on every update or delete.
When only ``version`` moved, just the new rows (ids above the cached maximum) are read;
when ``epoch`` moved, the matrix is read again.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sqlalchemy as sa

from arquivo.db.fastpath import Driver
from arquivo.knowledge.backend import Matrix
from arquivo.knowledge.filters import Filter
from arquivo.knowledge.native import CHUNKS, NativeBackend, not_found
from arquivo.knowledge.values import CollectionInfo, Hit

__all__ = ["NumpyBackend", "SqliteNumpyBackend"]

_K = CHUNKS.c
# Plain SQL with the driver's own placeholder: compiling a Core statement per query
# cost more than the search.
_STATE = "SELECT id, version, epoch FROM knowledge_collections WHERE name = {mark}"
_FETCH = (
    "SELECT id, key, text, metadata, user_id, document_id FROM knowledge_chunks "
    "WHERE id IN ({marks})"
)
_LOAD = (
    "SELECT id, {embedding} FROM knowledge_chunks WHERE collection_id = {mark} "
    "AND id > {mark} ORDER BY id"
)


@dataclass
class _Matrix:
    """A collection's vectors as loaded: row ids (ascending) and one float32 matrix."""

    version: int
    epoch: int
    rowids: np.ndarray[Any, np.dtype[np.int64]]
    vectors: Matrix  # unit rows for cosine, raw otherwise
    sqnorms: Matrix  # squared norms of the raw rows (for l2)


def _decode(blobs: list[bytes], width: int) -> Matrix:
    if not blobs:
        return np.empty((0, width), dtype=np.float32)
    return (
        np.frombuffer(b"".join(blobs), dtype="<f4")
        .reshape(len(blobs), width)
        .astype(np.float32, copy=False)
    )


class NumpyBackend(NativeBackend):
    """Exact brute-force search in numpy; subclasses say how each database reads vectors."""

    #: The driver's placeholder.
    mark: ClassVar[str] = "?"
    #: What the matrix loader selects for a row's vector.
    embedding_sql: ClassVar[str] = "embedding"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[int, _Matrix] = {}
        self._lock = threading.Lock()
        self._state_sql = _STATE.format(mark=self.mark)
        self._load_sql = _LOAD.format(mark=self.mark, embedding=self.embedding_sql)

    def decode(self, values: list[Any], width: int) -> Matrix:
        """The matrix of the vectors the loader selected."""
        return _decode(values, width)

    def _state(self, driver: Driver, name: str) -> tuple[int, int, int]:
        row = driver.connection.execute(self._state_sql, (name,)).fetchone()
        if row is None:
            raise not_found(name)
        return int(row[0]), int(row[1]), int(row[2])

    def _matrix(self, driver: Driver, collection: CollectionInfo) -> tuple[int, _Matrix]:
        width = collection.dimensions or 0
        cosine = collection.metric == "cosine"
        with self._lock:
            for _attempt in range(5):
                cid, version, epoch = self._state(driver, collection.name)
                cached = self._cache.get(cid)
                if cached is not None and cached.version == version and cached.epoch == epoch:
                    return cid, cached
                start = None if cached is None or cached.epoch != epoch else cached
                after = int(start.rowids[-1]) if start is not None and len(start.rowids) else 0
                rows = driver.connection.execute(self._load_sql, (cid, after)).fetchall()
                # Another writer may have committed between the two reads; then retry.
                if self._state(driver, collection.name) != (cid, version, epoch):
                    continue
                rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                raw = self.decode([r[1] for r in rows], width)
                sqnorms = np.einsum("ij,ij->i", raw, raw).astype(np.float32)
                vectors = raw / np.sqrt(np.maximum(sqnorms, 1e-30))[:, None] if cosine else raw
                if start is not None:
                    rowids = np.concatenate([start.rowids, rowids])
                    vectors = np.concatenate([start.vectors, vectors.astype(np.float32)])
                    sqnorms = np.concatenate([start.sqnorms, sqnorms])
                fresh = _Matrix(version, epoch, rowids, vectors.astype(np.float32), sqnorms)
                self._cache = {cid: fresh, **{k: v for k, v in self._cache.items() if k != cid}}
                return cid, fresh
        # Writers kept committing under us; serve the last consistent snapshot we can.
        return cid, self._cache.get(cid) or _Matrix(
            -1, -1, np.empty(0, np.int64), np.empty((0, width), np.float32), np.empty(0, np.float32)
        )

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
        if collection.dimensions is None:
            return []
        with self._store.unit(write=False) as driver:
            cid, matrix = self._matrix(driver, collection)
            if not len(matrix.rowids):
                return []
            query = embedding.astype(np.float32)
            if collection.metric == "cosine":
                scores = matrix.vectors @ (query / np.linalg.norm(query))
                distances = 1.0 - scores
            elif collection.metric == "ip":
                distances = -(matrix.vectors @ query)
            else:
                distances = matrix.sqnorms - 2.0 * (matrix.vectors @ query) + query @ query
            if where is not None or user_id is not None:
                conditions = self._conditions(cid, where=where, user_id=user_id)
                statement = sa.select(_K.id).where(*conditions)
                allowed = np.fromiter(
                    (row[0] for row in driver.run(driver.prepare(statement), {})), dtype=np.int64
                )
                distances = np.where(np.isin(matrix.rowids, allowed), distances, np.inf)
            best = _top(distances, k)
            best = best[np.isfinite(distances[best])]
            ids = [int(i) for i in matrix.rowids[best]]
            if not ids:
                return []
            marks = ",".join([self.mark] * len(ids))
            rows = {
                row[0]: (row[1], row[2], _json(row[3]), row[4], row[5])
                for row in driver.connection.execute(_FETCH.format(marks=marks), ids).fetchall()
            }
        result = []
        for index, rowid in zip(best, ids, strict=True):
            if rowid in rows:  # deleted since the matrix was read
                distance = float(distances[index])
                if collection.metric == "l2":
                    distance = float(np.sqrt(max(distance, 0.0)))
                result.append((*rows[rowid], distance))
        return self.hits(collection.metric, result)


class SqliteNumpyBackend(NumpyBackend):
    """The native backend on SQLite: float32 BLOBs, exact search in numpy."""

    dialect = "sqlite"


def _json(value: Any) -> dict[str, Any]:
    # SQLite hands JSON back as text; psycopg has already decoded JSONB.
    if not value:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def _top(distances: Matrix, k: int) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Indices of the ``k`` smallest distances, smallest first (ties by row order)."""
    if k >= len(distances):
        return np.argsort(distances, kind="stable")
    part = np.argpartition(distances, k - 1)[:k]
    return part[np.lexsort((part, distances[part]))]
