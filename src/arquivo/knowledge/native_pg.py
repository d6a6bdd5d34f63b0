"""Search on PostgreSQL: pgvector HNSW, or exact numpy where the server has no pgvector.

Collections have their own widths, so the column is an untyped ``vector`` and each
collection gets a partial expression index on ``embedding::vector(N)`` for
``collection_id = ID``, created in the transaction that fixes its width. Queries spell
the same expression and the collection id as a literal, so the planner can match the
partial index. A filtered query sets ``hnsw.iterative_scan = relaxed_order`` (otherwise
the index may return fewer than ``k`` rows that pass the filter) and re-sorts.

Without pgvector (the migration could not create the extension) the column is
``real[]`` and :class:`PgArrayBackend` searches exactly in numpy, as on SQLite;
:func:`enable_ann` converts the column in place once pgvector is installed.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

from arquivo.db.dialects import get_dialect, translate_errors
from arquivo.db.fastpath import Driver, Prepared
from arquivo.db.migrate import ANN_INDEX_PREFIX
from arquivo.db.types import Vector, decode_float4_arrays
from arquivo.errors import ConfigurationError
from arquivo.knowledge.backend import Matrix
from arquivo.knowledge.filters import Filter
from arquivo.knowledge.native import CHUNKS, NativeBackend
from arquivo.knowledge.native_numpy import NumpyBackend
from arquivo.knowledge.values import AnnReport, CollectionInfo, Hit

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from arquivo.store import Arquivo

__all__ = ["PgArrayBackend", "PgvectorBackend", "enable_ann"]

_log = logging.getLogger("arquivo")
_announced = threading.Event()
_NO_PGVECTOR = (
    "this PostgreSQL database has no pgvector: knowledge queries search exactly in numpy "
    "(fine to ~100k chunks per collection); for HNSW indexes, install pgvector on the "
    "server, CREATE EXTENSION vector, then run `arquivo kb enable-ann`"
)
#: What building an HNSW index may use (per index build; PostgreSQL's default is 64MB,
#: which makes a 100k x 384 build spill to disk and take minutes).
BUILD_MEMORY = "512MB"

_K = CHUNKS.c
# pgvector's HNSW indexes `vector` up to 2,000 dimensions; wider collections are scanned.
_MAX_INDEXED = 2000
_OPERATORS = {"cosine": "<=>", "l2": "<->", "ip": "<#>"}
_OPCLASSES = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}


class _VectorN(UserDefinedType[Any]):
    """``vector(N)``: the cast that matches a collection's index expression."""

    cache_ok = True

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def get_col_spec(self, **kw: Any) -> str:
        return f"vector({int(self.dimensions)})"


def index_name(cid: int) -> str:
    """The ANN index of collection ``cid``."""
    return f"{ANN_INDEX_PREFIX}{int(cid)}"


def create_index_sql(cid: int, dimensions: int, metric: str) -> str | None:
    """``CREATE INDEX`` for collection ``cid``'s HNSW index (``None``: too wide to index)."""
    if dimensions > _MAX_INDEXED:
        return None
    # Identifiers and numbers only, all ours: nothing here comes from the caller.
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(cid)} ON knowledge_chunks "
        f"USING hnsw ((embedding::vector({int(dimensions)})) {_OPCLASSES[metric]}) "
        f"WHERE collection_id = {int(cid)}"
    )


class PgArrayBackend(NumpyBackend):
    """The native backend on PostgreSQL without pgvector: ``real[]``, exact numpy search."""

    dialect = "postgresql"
    mark = "%s"
    # The array's binary form: numpy decodes it without a Python float per element.
    embedding_sql = "array_send(embedding)"

    def decode(self, values: list[Any], width: int) -> Matrix:
        return decode_float4_arrays(values, width)  # type: ignore[no-any-return]

    def announce(self) -> None:
        # The migration warned already (once); this repeats it only for who logs INFO.
        if not _announced.is_set():
            _announced.set()
            _log.info(_NO_PGVECTOR)

    def search_note(self) -> str | None:
        return _NO_PGVECTOR


class PgvectorBackend(NativeBackend):
    """The native backend on PostgreSQL: pgvector HNSW, or an exact scan on request."""

    dialect = "postgresql"
    approximate = True
    ann_index = True
    #: The smallest HNSW candidate list a query searches (``hnsw.ef_search``; at least
    #: 4k). Measured on the benchmark's 100k sentence embeddings (m=16,
    #: ef_construction=64), over several builds: recall@10 0.82-0.87 at pgvector's
    #: default 40, 0.94-0.98 at 100, 0.96-0.99 at 128, 0.982-0.990 at 160, for about
    #: 1.3x the latency of 100 at 160.
    ef_search = 160

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepared: dict[tuple[int, int, str], Prepared] = {}
        # What each pooled connection's session has set: (ef_search, iterative scan).
        self._sessions: weakref.WeakKeyDictionary[Any, tuple[int, bool]] = (
            weakref.WeakKeyDictionary()
        )

    def _configure(self, connection: Any, ef_search: int, iterative: bool) -> None:
        wanted = (ef_search, iterative)
        if not connection.autocommit:
            # Inside the caller's transaction (store.transaction()): a session SET would
            # be rolled back with it, so the settings last for this transaction only.
            connection.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            if iterative:
                connection.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return
        if self._sessions.get(connection) == wanted:
            return
        # A filtered query needs the iterative scan, or the index may return fewer
        # than k rows that pass the filter.
        scan = "relaxed_order" if iterative else "off"
        connection.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        connection.execute(f"SET hnsw.iterative_scan = {scan}")
        self._sessions[connection] = wanted

    def on_dimensions(self, driver: Driver, cid: int, dimensions: int, metric: str) -> None:
        statement = create_index_sql(cid, dimensions, metric)
        if statement is not None:
            driver.connection.execute(statement)

    def on_drop(self, driver: Driver, cid: int) -> None:
        driver.connection.execute(f"DROP INDEX IF EXISTS {index_name(cid)}")

    def drop_index(self, collection: CollectionInfo) -> bool:
        with self._store.unit(write=True) as driver:
            cid, _ = self._collection_id(driver, collection.name)
            driver.connection.execute(f"DROP INDEX IF EXISTS {index_name(cid)}")
        return True

    def build_index(self, collection: CollectionInfo) -> None:
        with self._store.unit(write=True) as driver:
            cid, dimensions = self._collection_id(driver, collection.name)
            if dimensions is None:
                return
            statement = create_index_sql(cid, dimensions, collection.metric)
            if statement is not None:
                # One build with room to work beats maintaining the graph row by row
                # (measured here: ~90 vectors/s inserting into a live index).
                driver.connection.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
                driver.connection.execute(statement)
                # Statistics that still count the table before the load could make the
                # planner prefer a scan to the new index; autovacuum catches up later.
                driver.connection.execute("ANALYZE knowledge_chunks")
                self._check_memory(driver, cid, collection.name)

    def _check_memory(self, driver: Driver, cid: int, name: str) -> None:
        # HNSW reads its graph at random: an index larger than shared_buffers is
        # copied in from the OS cache query after query (measured at 100k x 384, a
        # 195MB index: p50 2.2 ms with 512MB of shared_buffers, 4.5-6.8 ms with 128MB).
        size, buffers = driver.connection.execute(
            "SELECT pg_relation_size(%s::regclass), "
            "pg_size_bytes(current_setting('shared_buffers'))",
            (index_name(cid),),
        ).fetchone()
        if size > buffers:
            _log.warning(
                "the HNSW index of knowledge collection %r (%d MB) is larger than "
                "PostgreSQL's shared_buffers (%d MB): searches will be slower than they "
                "could be; raise shared_buffers (postgresql.conf) above the indexes' size",
                name,
                size // 2**20,
                buffers // 2**20,
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
        dimensions = collection.dimensions
        if dimensions is None:
            return []
        filtered = where is not None or user_id is not None
        ef_search = max(self.ef_search, 4 * int(k))
        values = {"q": embedding.astype(np.float32), "k": k}
        # Exact scans need SET LOCAL, so a transaction; ANN queries run in autocommit
        # (fewer round trips) with the HNSW settings kept per connection.
        with self._store.unit(write=exact) as driver:
            # The row the caller's lookup found (one round trip fewer); dropped and
            # made again since, it simply matches no chunk, as if asked a moment earlier.
            cid = collection.row_id
            if cid is None:
                cid, _ = self._collection_id(driver, collection.name)
            key = (cid, dimensions, collection.metric)
            prepared = None if filtered else self._prepared.get(key)
            if prepared is None:
                vector_n = _VectorN(dimensions)
                query = sa.cast(sa.bindparam("q", type_=Vector()), vector_n)
                distance = sa.cast(_K.embedding, vector_n).op(
                    _OPERATORS[collection.metric], return_type=sa.Float
                )(query)
                conditions = self._conditions(cid, where=where, user_id=user_id)
                # The collection id as a literal: a bound parameter could not prove
                # that the query falls inside the partial index.
                conditions[0] = _K.collection_id == sa.literal_column(str(int(cid)))
                statement = (
                    sa.select(
                        _K.key,
                        _K.text,
                        CHUNKS.c["metadata"],
                        _K.user_id,
                        _K.document_id,
                        distance.label("distance"),
                    )
                    .where(*conditions)
                    .order_by(sa.text("distance"))
                    .limit(sa.bindparam("k"))
                )
                # Compiling costs more than the search itself: unfiltered queries
                # (the common case) reuse theirs.
                prepared = driver.prepare(statement)
                if not filtered:
                    self._prepared[key] = prepared
            connection = driver.connection
            if exact:
                connection.execute("SET LOCAL enable_indexscan = off")
            else:
                self._configure(connection, ef_search, filtered)
            rows = driver.run(prepared, values)
        # relaxed_order may return rows slightly out of order.
        rows.sort(key=lambda row: row[5])
        return self.hits(collection.metric, rows)


def enable_ann(store: Arquivo, *, dry_run: bool = False) -> AnnReport:
    """Turn a PostgreSQL database migrated without pgvector into one with HNSW indexes
    (or, where the column is pgvector's already, build the indexes that are missing).

    In one transaction: ``CREATE EXTENSION vector``, the ``real[]`` embedding column
    converted in place to ``vector`` (pgvector's own cast; the values are kept
    exactly), the exact index's triggers dropped, and an HNSW index built per
    collection. A failure rolls all of it back. Other processes using the store
    should be restarted afterwards (they keep searching their in-memory copy).

    Raises:
        ConfigurationError: Not PostgreSQL, or the extension cannot be created
            (pgvector not installed, or this role may not create it).
    """
    support = get_dialect(store.dialect)
    if store.dialect != PgvectorBackend.dialect:
        raise ConfigurationError(
            f"ANN indexes are for PostgreSQL; this database is {store.dialect}",
            hint="SQLite's knowledge search is exact numpy, which needs no index",
        )
    with translate_errors(store.dialect), store.engine.begin() as connection:
        if support.has_vector_column(connection):
            # Already pgvector: build only the indexes that are missing (collections
            # that arrived by `arquivo import`, say).
            missing = [c for c in _indexable(connection) if not _has_index(connection, c[1])]
            if not dry_run:
                connection.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
                for _, cid, dimensions, metric in missing:
                    index = create_index_sql(cid, dimensions, metric)
                    if index is not None:
                        connection.exec_driver_sql(index)
            return AnnReport(False, 0, [name for name, *_ in missing], dry_run)
        chunks = int(
            connection.exec_driver_sql("SELECT count(*) FROM knowledge_chunks").scalar_one()
        )
        collections = _indexable(connection)
        if dry_run:
            return AnnReport(True, chunks, [name for name, *_ in collections], True)
        if not support.enable_vectors(connection, warn=False):
            raise ConfigurationError(
                "cannot create the pgvector extension in this database",
                hint="install pgvector on the server (https://github.com/pgvector/pgvector) "
                "and have a superuser run CREATE EXTENSION vector; here, then run this again",
            )
        connection.exec_driver_sql(
            "ALTER TABLE knowledge_chunks ALTER COLUMN embedding TYPE vector "
            "USING embedding::vector"
        )
        for statement in support.drop_chunk_change_triggers():
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
        built = []
        for name, cid, dimensions, metric in collections:
            index = create_index_sql(cid, dimensions, metric)
            if index is not None:
                connection.exec_driver_sql(index)
                built.append(name)
    # The next use picks the pgvector backend.
    store.knowledge.close()
    return AnnReport(True, chunks, built, False)


def _has_index(connection: Connection, cid: int) -> bool:
    found = connection.exec_driver_sql(f"SELECT to_regclass('{index_name(cid)}')").scalar()
    return found is not None


def _indexable(connection: Connection) -> list[tuple[str, int, int, str]]:
    rows = connection.exec_driver_sql(
        "SELECT name, id, dimensions, metric FROM knowledge_collections "
        "WHERE dimensions IS NOT NULL ORDER BY name"
    ).all()
    return [(str(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in rows]
