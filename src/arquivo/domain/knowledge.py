"""``store.knowledge``: collections of embedded chunks for retrieval-augmented generation.

This facade checks every input, embeds texts with the collection's embedder, cuts long
documents into chunks, and hands finished records to the configured backend (native by
default: the vectors live in the store's own database). A bad input raises before
anything is written.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from arquivo.domain.base import Facade
from arquivo.errors import ValidationError
from arquivo.knowledge.backend import Matrix, VectorBackend
from arquivo.knowledge.chunking import split_text
from arquivo.knowledge.embedders import (
    DEFAULT_EMBEDDER,
    Embedder,
    MiniLMEmbedder,
    embed_texts,
    embedder_name,
)
from arquivo.knowledge.filters import check_metadata, parse_where
from arquivo.knowledge.values import (
    AnnReport,
    Chunk,
    CollectionInfo,
    DocumentInfo,
    Hit,
    Record,
)
from arquivo.models.knowledge import METRICS
from arquivo.validation import check_id, check_limit, check_text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from arquivo.store import Arquivo

__all__ = ["Knowledge"]

_MAX_BATCH = 10_000
_MAX_DIMENSIONS = 16_000


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


def _check_name(name: object) -> str:
    check_id("collection", name)
    assert isinstance(name, str)
    if not _NAME.match(name) or ".." in name:
        raise ValidationError(
            f"invalid collection name {name!r}: 3-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit",
            hint="Chroma's rule, kept on every backend so collections can move between them",
        )
    return name


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or isinstance(texts, bytes):
        raise ValidationError(f"texts must be a list of strings, not {type(texts).__name__}")
    if not texts:
        raise ValidationError("texts is empty", hint="pass at least one text")
    if len(texts) > _MAX_BATCH:
        raise ValidationError(f"{len(texts):,} texts in one call; the limit is {_MAX_BATCH:,}")
    result = []
    for index, text in enumerate(texts):
        check_text(f"texts[{index}]", text)
        if not text.strip():
            raise ValidationError(f"texts[{index}] is empty", hint="drop blank texts first")
        result.append(text)
    return result


def _as_matrix(field: str, value: object, rows: int | None) -> Matrix:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be lists of numbers: {exc}") from exc
    if matrix.ndim == 1 and rows is None:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValidationError(
            f"{field} must be a list of vectors of equal length, not shape {matrix.shape}"
        )
    if rows is not None and matrix.shape[0] != rows:
        raise ValidationError(f"{field} has {matrix.shape[0]} vectors for {rows} texts")
    if matrix.shape[1] > _MAX_DIMENSIONS:
        raise ValidationError(f"{field} has {matrix.shape[1]} dimensions; the limit is 16,000")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValidationError(
            f"{field}[{int(np.argmax(bad))}] holds NaN or infinity",
            hint="check the embedder; a vector must be finite numbers",
        )
    single = matrix.astype(np.float32)
    if not np.isfinite(single).all():
        raise ValidationError(f"{field} holds numbers too large for float32")
    return single


class _ExternalChunks:
    """``store.users`` reaching the chunks of a backend outside the database (Chroma).

    Chroma cannot join the database transaction, so ``forget`` deletes there as it goes;
    a failure later rolls back the rows only, and running ``forget`` again finishes.
    """

    def __init__(self, knowledge: Knowledge) -> None:
        self._knowledge = knowledge
        #: The report's key, beside the table names.
        self.name = "knowledge (vector store)"

    def count(self, session: Session, user_id: str) -> int:
        backend = self._knowledge.backend
        return 0 if backend.transactional else backend.count_user(user_id)

    def delete(self, session: Session, user_id: str) -> int:
        backend = self._knowledge.backend
        return 0 if backend.transactional else backend.delete_user(user_id)


class Knowledge(Facade):
    """Collections of embedded chunks: add, query, delete, by id, document or user.

    Example::

        store.knowledge.create_collection("docs")
        store.knowledge.add_document("docs", long_text, metadata={"source": "a.md"})
        hits = store.knowledge.query("docs", "how do I reset?", k=5)
    """

    __slots__ = ("_backend", "_backend_factory", "_default", "_embedders", "_lock")

    def __init__(
        self,
        store: Arquivo,
        backend: Callable[[], VectorBackend] | None = None,
    ) -> None:
        """Set up; the backend is built on first use.

        Args:
            store: The store whose database the native backend uses.
            backend: Makes the backend (default: the native one for the store's database).
        """
        from arquivo.knowledge.native import native_backend

        super().__init__(store)
        self._backend_factory = backend or (lambda: native_backend(store))
        self._backend: VectorBackend | None = None
        self._embedders: dict[str, Embedder] = {}
        self._default: Embedder | None = None
        self._lock = threading.Lock()
        if backend is not None:
            # The native backend's chunks are rows with a user_id, which
            # store.users.forget() finds by itself; any other store needs the hook.
            store.users.add_hook(_ExternalChunks(self))

    @property
    def backend(self) -> VectorBackend:
        """The vector backend in use (built on first access)."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = self._backend_factory()
        return self._backend

    # --- collections ---------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        *,
        dimensions: int | None = None,
        metric: str = "cosine",
        embedder: Embedder | None = None,
    ) -> CollectionInfo:
        """Create an empty collection.

        Args:
            name: 3-63 characters.
            dimensions: Width of its vectors; taken from the embedder (if it says) or
                from the first vectors added, when omitted.
            metric: ``cosine`` (default), ``l2`` or ``ip`` (inner product).
            embedder: Embeds its texts in this process (default: all-MiniLM-L6-v2 when
                no embeddings are passed). Its ``name`` is recorded with the collection.

        Raises:
            ValidationError: A bad name, metric or width.
            DuplicateError: The name is taken.
        """
        _check_name(name)
        if metric not in METRICS:
            raise ValidationError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        if embedder is not None and not callable(embedder):
            raise ValidationError("embedder must be a callable: list[str] -> list[vector]")
        if dimensions is None and embedder is not None:
            given = getattr(embedder, "dimensions", None)
            dimensions = given if isinstance(given, int) else None
        if dimensions is not None:
            check_limit("dimensions", dimensions, maximum=_MAX_DIMENSIONS)
        label = embedder_name(embedder) if embedder is not None else None
        info = self.backend.create_collection(name, dimensions, metric, label)
        if embedder is not None:
            self._embedders[name] = embedder
        return info

    def collection(self, name: str) -> CollectionInfo:
        """A collection's settings (``NotFoundError`` when there is none)."""
        return self.backend.get_collection(_check_name(name))

    def collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        return self.backend.collections()

    def drop_collection(self, name: str) -> None:
        """Delete a collection and everything in it (``NotFoundError`` when there is none)."""
        self.backend.drop_collection(_check_name(name))
        self._embedders.pop(name, None)

    def set_embedder(self, collection: str, embedder: Embedder) -> None:
        """Use ``embedder`` for ``collection`` in this process (e.g. after a restart)."""
        _check_name(collection)
        if not callable(embedder):
            raise ValidationError("embedder must be a callable: list[str] -> list[vector]")
        self._embedders[collection] = embedder

    # --- writing -------------------------------------------------------------------

    def add(
        self,
        collection: str,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        embeddings: Any = None,
        user_id: str | None = None,
    ) -> list[str]:
        """Add (or replace, by id) chunks of text, embedding them unless given vectors.

        Args:
            collection: The collection.
            texts: The texts (or one text).
            ids: Their ids (default: new random ids); an existing id is replaced.
            metadatas: Flat metadata per text (str, int, float or bool values).
            embeddings: Their vectors, if already computed.
            user_id: Whose data these are (``forget_user`` deletes them).

        Returns:
            The ids, in order.

        Raises:
            ValidationError: Empty texts, duplicate or bad ids, bad metadata, vectors of
                the wrong width or with NaN/infinity. Nothing is written.
            NotFoundError: The collection does not exist.
        """
        info = self.collection(collection)
        records = self._records(info, texts, ids, metadatas, embeddings, user_id, None)
        self.backend.upsert(info, records, replace_document=None)
        return [r.id for r in records]

    def add_document(
        self,
        collection: str,
        text: str,
        *,
        document_id: str | None = None,
        chunk_size: int = 1000,
        overlap: int = 200,
        metadata: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> DocumentInfo:
        """Split a long text into chunks, embed and store them, replacing any earlier
        version of the same document.

        Chunk ids are ``"{document_id}#{n}"``; each chunk carries ``metadata`` and
        points back to ``document_id`` (see :meth:`delete_document`).

        Args:
            collection: The collection.
            text: The document's text.
            document_id: Its id (default: a new random id).
            chunk_size: Most characters in a chunk.
            overlap: Characters a chunk repeats from the end of the one before.
            metadata: Flat metadata for every chunk.
            user_id: Whose document it is.

        Raises:
            ValidationError: Empty text, bad sizes or metadata. Nothing is written.
            NotFoundError: The collection does not exist.
        """
        check_text("text", text, max_chars=100_000_000)
        document = document_id if document_id is not None else uuid.uuid4().hex
        check_id("document_id", document)
        pieces = split_text(text, chunk_size=chunk_size, overlap=overlap)
        if not pieces:
            raise ValidationError("the document has no text", hint="pass a non-blank text")
        info = self.collection(collection)
        ids = [f"{document}#{n}" for n in range(len(pieces))]
        meta = check_metadata("metadata", metadata)
        records: list[Record] = []
        for start in range(0, len(pieces), _MAX_BATCH):
            part = slice(start, start + _MAX_BATCH)
            records += self._records(
                info, pieces[part], ids[part], [meta] * len(ids[part]), None, user_id, document
            )
        self.backend.upsert(info, records, replace_document=document)
        return DocumentInfo(document, ids)

    def delete(
        self,
        collection: str,
        ids: Sequence[str] | None = None,
        *,
        where: dict[str, Any] | None = None,
    ) -> int:
        """Delete chunks by id, by metadata filter, or both (both must match).

        Returns:
            How many chunks were deleted.

        Raises:
            ValidationError: Neither ``ids`` nor ``where`` given, or either is malformed.
            NotFoundError: The collection does not exist.
        """
        parsed = parse_where(where)
        keys = None if ids is None else self._check_ids(ids)
        if keys is None and parsed is None:
            raise ValidationError(
                "delete needs ids or a where filter",
                hint="to empty a collection, drop it and create it again",
            )
        info = self.collection(collection)
        return self.backend.delete(info, ids=keys, where=parsed)

    def delete_document(self, collection: str, document_id: str) -> int:
        """Delete every chunk of a document; returns how many there were."""
        check_id("document_id", document_id)
        info = self.collection(collection)
        return self.backend.delete(info, document_id=document_id)

    def forget_user(self, user_id: str) -> int:
        """Delete every chunk of ``user_id`` in every collection; returns how many."""
        check_id("user_id", user_id)
        return self.backend.delete_user(user_id)

    def bulk_load(self, collection: str) -> AbstractContextManager[None]:
        """A block for loading many chunks: the ANN index is built once, at its end.

        The collection's ANN index is dropped on entry and built again, in one pass, on
        exit (even when the block raises): building an HNSW index once is far faster
        than keeping it up to date row by row. Meanwhile queries on the collection
        still work (exactly, by a scan).
        Backends without such an index ignore it.

        Example::

            with store.knowledge.bulk_load("docs"):
                for batch in batches:
                    store.knowledge.add("docs", batch.texts, embeddings=batch.vectors)

        Raises:
            NotFoundError: The collection does not exist.
        """
        return self._bulk_load(collection)

    @contextlib.contextmanager
    def _bulk_load(self, collection: str) -> Iterator[None]:
        info = self.collection(collection)
        dropped = self.backend.drop_index(info)
        try:
            yield
        finally:
            if dropped:
                self.backend.build_index(self.collection(collection))

    def enable_ann(self, *, dry_run: bool = False) -> AnnReport:
        """Give a PostgreSQL database migrated without pgvector its HNSW indexes.

        Run once pgvector is installed on the server: the embeddings (``real[]``) are
        converted in place to pgvector's ``vector``, exactly, and every collection gets
        its index, all in one transaction. Does nothing when the column is already
        ``vector``. Restart other processes using the store afterwards.

        Args:
            dry_run: Report what would be converted, and change nothing.

        Raises:
            ConfigurationError: Not PostgreSQL, or pgvector cannot be created here.
        """
        from arquivo.knowledge.native_pg import enable_ann

        return enable_ann(self._store, dry_run=dry_run)

    # --- reading -------------------------------------------------------------------

    def get(self, collection: str, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids (those that exist), in the order asked."""
        keys = self._check_ids(ids)
        return self.backend.get(self.collection(collection), keys)

    def count(self, collection: str) -> int:
        """How many chunks ``collection`` holds."""
        return self.backend.count(self.collection(collection))

    def query(
        self,
        collection: str,
        query: str | Sequence[float],
        *,
        k: int = 5,
        where: dict[str, Any] | None = None,
        user_id: str | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` chunks closest to a text (embedded here) or a vector, best first.

        Args:
            collection: The collection.
            query: A text, or a vector of the collection's width.
            k: How many hits, at most (1-1000).
            where: A metadata filter (see :mod:`arquivo.knowledge.filters`).
            user_id: Only this user's chunks.
            exact: Search exhaustively even where an ANN index exists.

        Raises:
            ValidationError: A bad query, ``k`` or filter.
            NotFoundError: The collection does not exist.
        """
        check_limit("k", k, maximum=1000)
        parsed = parse_where(where)
        if user_id is not None:
            check_id("user_id", user_id)
        info = self.collection(collection)
        if exact and not self.backend.exact_search:
            raise ValidationError(f"the {self.backend.name} backend cannot search exactly")
        if isinstance(query, str):
            check_text("query", query)
            if not query.strip():
                raise ValidationError("the query text is empty")
            vector = self._embed(info, [query])[0]
        else:
            vector = _as_matrix("query", query, None)[0]
        self._check_width(info, vector.shape[0], "query")
        self._check_direction(info, vector[None, :], "query")
        return self.backend.query(info, vector, k=k, where=parsed, user_id=user_id, exact=exact)

    # --- helpers -------------------------------------------------------------------

    def _embedder(self, info: CollectionInfo) -> Embedder:
        embedder = self._embedders.get(info.name)
        if embedder is not None:
            return embedder
        if info.embedder not in (None, DEFAULT_EMBEDDER):
            raise ValidationError(
                f"the collection {info.name!r} was embedded with {info.embedder!r}, which "
                "this process does not have",
                hint="call store.knowledge.set_embedder(collection, embedder), or pass embeddings=",
            )
        with self._lock:
            if self._default is None:
                self._default = MiniLMEmbedder()
        return self._default

    def _embed(self, info: CollectionInfo, texts: list[str]) -> Matrix:
        raw = embed_texts(self._embedder(info), texts)
        return _as_matrix("the embedder's output", raw, len(texts))

    def _check_ids(self, ids: object) -> list[str]:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValidationError("ids must be a list of strings", hint='e.g. ids=["a", "b"]')
        keys = [check_id(f"ids[{i}]", key) for i, key in enumerate(ids)]
        if len(set(keys)) != len(keys):
            raise ValidationError("ids holds the same id twice")
        return keys

    def _check_width(self, info: CollectionInfo, width: int, field: str) -> None:
        if info.dimensions is not None and width != info.dimensions:
            raise ValidationError(
                f"{field} has {width} dimensions; the collection {info.name!r} has "
                f"{info.dimensions}",
                hint="use the collection's embedder, or another collection",
            )

    def _check_direction(self, info: CollectionInfo, matrix: Matrix, field: str) -> None:
        if info.metric == "cosine":
            zero = np.linalg.norm(matrix.astype(np.float64), axis=1) == 0
            if zero.any():
                raise ValidationError(
                    f"{field} holds an all-zero vector, which has no cosine distance"
                )

    def _records(
        self,
        info: CollectionInfo,
        texts: object,
        ids: Sequence[str] | None,
        metadatas: object,
        embeddings: Any,
        user_id: str | None,
        document_id: str | None,
    ) -> list[Record]:
        items = _check_texts(texts)
        count = len(items)
        keys = [uuid.uuid4().hex for _ in items] if ids is None else self._check_ids(ids)
        if len(keys) != count:
            raise ValidationError(f"{len(keys)} ids for {count} texts")
        if metadatas is None:
            metas: list[dict[str, Any]] = [{} for _ in items]
        else:
            if not isinstance(metadatas, Sequence) or len(metadatas) != count:
                raise ValidationError(f"metadatas must be a list of {count} dicts (or None)")
            metas = [check_metadata(f"metadatas[{i}]", m) for i, m in enumerate(metadatas)]
        if user_id is not None:
            check_id("user_id", user_id)
        if embeddings is None:
            matrix = self._embed(info, items)
        else:
            matrix = _as_matrix("embeddings", embeddings, count)
        self._check_width(info, matrix.shape[1], "embeddings")
        self._check_direction(info, matrix, "embeddings")
        return [
            Record(key, text, meta, user_id, document_id, vector)
            for key, text, meta, vector in zip(keys, items, metas, matrix, strict=True)
        ]

    def close(self) -> None:
        """Release the backend's clients and caches (the store's ``close`` calls it)."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
