"""The Chroma backend: the seeds' vector store, local (``CHROMA_DB_PATH``) or a server
(``CHROMA_HOST``).

Chroma is always handed our embeddings (it is created with ``embedding_function=None``
and never given bare texts to embed), so it never tries to download a model, and
telemetry is off. Owner and source document ride in reserved metadata keys
(``_arquivo_user``, ``_arquivo_document``) so ``forget_user`` and ``delete_document``
reach them. Writes are not part of the database's transactions: a document's old chunks
are deleted, then its new ones added, as two Chroma calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from arquivo.errors import (
    ArquivoError,
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateError,
    MissingDependencyError,
    NotFoundError,
    ValidationError,
)
from arquivo.knowledge.backend import Matrix, VectorBackend
from arquivo.knowledge.filters import RESERVED_PREFIX, Filter, to_chroma
from arquivo.knowledge.values import Chunk, CollectionInfo, Hit, Record

__all__ = ["ChromaBackend", "folder_lock"]

_T = TypeVar("_T")

_USER = f"{RESERVED_PREFIX}_user"
_DOCUMENT = f"{RESERVED_PREFIX}_document"
_DIMENSIONS = f"{RESERVED_PREFIX}_dimensions"
_EMBEDDER = f"{RESERVED_PREFIX}_embedder"


_FOLDER_LOCKS: dict[str, threading.RLock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


def folder_lock(path: str | Path) -> threading.RLock:
    """The lock every write to the Chroma folder ``path`` holds, in this process.

    A backup holds it while it copies the folder, so that the copy is of a folder no
    write of ours is changing (``arquivo.backup.vectors``).
    """
    key = str(Path(path).resolve())
    with _FOLDER_LOCKS_GUARD:
        return _FOLDER_LOCKS.setdefault(key, threading.RLock())


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(
        f"there is no knowledge collection {name!r} in Chroma",
        hint="create it with store.knowledge.create_collection(), or list them with "
        "`arquivo kb list`",
    )


class ChromaBackend(VectorBackend):
    """Collections in Chroma (HNSW; ``query(exact=True)`` is not available)."""

    name = "chroma"
    exact_search = False
    approximate = True

    def __init__(self, client: Any, *, folder: str | Path | None = None) -> None:
        """Use a ``chromadb`` client (prefer :meth:`from_settings`).

        Args:
            client: The client.
            folder: The folder of a local client: its writes then hold
                :func:`folder_lock`, which a backup of the folder takes.
        """
        self._client = client
        self._lock = folder_lock(folder) if folder is not None else threading.RLock()
        self._widths: dict[str, int] = {}
        # Looking a collection up by name lists every collection and then fetches one:
        # ~1.5 ms, more than a top-10 search of 30k vectors. Handles are kept per name
        # and checked by use instead (see _on).
        self._handles: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, *, host: str | None, path: str) -> ChromaBackend:
        """A server client when ``host`` (``CHROMA_HOST``) is set, else a local folder.

        Raises:
            MissingDependencyError: ``chromadb`` is not installed.
            DatabaseUnavailableError: The server does not answer.
        """
        try:
            import chromadb
            from chromadb.config import Settings as ChromaSettings
        except ImportError as exc:
            raise MissingDependencyError(
                "the Chroma backend needs chromadb, which is not installed",
                hint="pip install 'arquivo[chroma]'",
            ) from exc
        settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        if host:
            parts = urlsplit(host if "://" in host else f"http://{host}")
            if not parts.hostname:
                raise ConfigurationError(
                    f"CHROMA_HOST is not a URL: {host!r}", hint="e.g. http://chroma-server:8000"
                )
            try:
                client = chromadb.HttpClient(
                    host=parts.hostname,
                    port=parts.port or (443 if parts.scheme == "https" else 8000),
                    ssl=parts.scheme == "https",
                    settings=settings,
                )
            except Exception as exc:
                raise DatabaseUnavailableError(
                    f"cannot reach the Chroma server at {host}: {exc}",
                    hint="check that `chroma run` is up and that CHROMA_HOST is right",
                ) from exc
            return cls(client)
        try:
            return cls(chromadb.PersistentClient(path=path, settings=settings), folder=path)
        except Exception as exc:
            raise DatabaseUnavailableError(
                f"cannot open the Chroma folder {path}: {exc}",
                hint="check CHROMA_DB_PATH and the folder's permissions",
            ) from exc

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        try:
            yield
        except ArquivoError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            if name == "NotFoundError":
                raise NotFoundError(f"Chroma: {exc}") from exc
            if isinstance(exc, ValueError):
                raise ValidationError(f"Chroma refused {what}: {exc}") from exc
            raise DatabaseUnavailableError(f"Chroma failed to {what}: {name}: {exc}") from exc

    def _collection(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        with self._calls("open the collection"):
            if name not in self._names():
                raise _not_found(name)
            handle = self._client.get_collection(name, embedding_function=None)
        self._handles[name] = handle
        return handle

    def _on(self, name: str, what: str, action: Callable[[Any], _T]) -> _T:
        """``action(collection)``, once more on a fresh handle if the kept one is stale.

        A handle names the collection by its id, so when another client drops and
        recreates the collection, Chroma answers that the old id does not exist. Every
        call fails that way before changing anything, so running it again is safe.
        """
        handle = self._collection(name)
        try:
            with self._calls(what):
                return action(handle)
        except NotFoundError:
            if self._handles.get(name) is not handle:
                raise
            self._handles.pop(name, None)
        with self._calls(what):
            return action(self._collection(name))

    def _names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self._client.list_collections()]

    def _info(self, collection: Any) -> CollectionInfo:
        meta = collection.metadata or {}
        width = meta.get(_DIMENSIONS) or self._widths.get(collection.name)
        if width is None:
            peek = collection.get(limit=1, include=["embeddings"])
            embeddings = peek.get("embeddings")
            if embeddings is not None and len(embeddings):
                width = len(embeddings[0])
                self._widths[collection.name] = width
        return CollectionInfo(
            collection.name, width, meta.get("hnsw:space", "l2"), meta.get(_EMBEDDER)
        )

    def create_collection(
        self, name: str, dimensions: int | None, metric: str, embedder: str | None
    ) -> CollectionInfo:
        meta: dict[str, Any] = {"hnsw:space": metric}
        if dimensions is not None:
            meta[_DIMENSIONS] = dimensions
        if embedder is not None:
            meta[_EMBEDDER] = embedder
        with self._lock, self._calls("create the collection"):
            if name in self._names():
                raise DuplicateError(
                    f"the knowledge collection {name!r} already exists",
                    hint="use it, or drop it first with store.knowledge.drop_collection()",
                )
            self._handles[name] = self._client.create_collection(
                name, metadata=meta, embedding_function=None
            )
        return CollectionInfo(name, dimensions, metric, embedder)

    def get_collection(self, name: str) -> CollectionInfo:
        with self._calls("read the collection"):
            return self._info(self._collection(name))

    def collections(self) -> list[CollectionInfo]:
        with self._calls("list collections"):
            return sorted(
                (self._info(self._collection(n)) for n in self._names()), key=lambda c: c.name
            )

    def drop_collection(self, name: str) -> None:
        with self._lock, self._calls("drop the collection"):
            if name not in self._names():
                raise _not_found(name)
            self._handles.pop(name, None)
            self._client.delete_collection(name)
            self._widths.pop(name, None)

    def upsert(
        self, collection: CollectionInfo, records: list[Record], *, replace_document: str | None
    ) -> None:
        target = self._collection(collection.name)
        info = self._info(target)
        width = int(records[0].embedding.shape[0]) if records else None
        if width is not None and info.dimensions is not None and width != info.dimensions:
            raise ValidationError(
                f"the embeddings have {width} dimensions; the collection "
                f"{collection.name!r} has {info.dimensions}",
                hint="embed with the collection's model, or use another collection",
            )

        def write(target: Any) -> None:
            if replace_document is not None:
                target.delete(where={_DOCUMENT: replace_document})
            step = max(1, int(self._client.get_max_batch_size()))
            for start in range(0, len(records), step):
                batch = records[start : start + step]
                # Chroma's upsert merges metadata into the old chunk's; ours replaces it.
                # Only ids that exist are deleted: a delete of absent ids still costs a
                # scan, which halved bulk loads.
                existing = target.get(ids=[r.id for r in batch], include=[])["ids"]
                if existing:
                    target.delete(ids=existing)
                target.add(
                    ids=[r.id for r in batch],
                    embeddings=np.stack([r.embedding for r in batch]),
                    documents=[r.text for r in batch],
                    metadatas=[self._metadata(r) for r in batch],
                )

        with self._lock:
            self._on(collection.name, "store the chunks", write)
        if width is not None:
            self._widths[collection.name] = width

    @staticmethod
    def _metadata(record: Record) -> dict[str, Any] | None:
        meta = dict(record.metadata)
        if record.user_id is not None:
            meta[_USER] = record.user_id
        if record.document_id is not None:
            meta[_DOCUMENT] = record.document_id
        return meta or None

    @staticmethod
    def _split(meta: dict[str, Any] | None) -> tuple[dict[str, Any], str | None, str | None]:
        meta = dict(meta or {})
        user, document = meta.pop(_USER, None), meta.pop(_DOCUMENT, None)
        return meta, user, document

    def delete(
        self,
        collection: CollectionInfo,
        *,
        ids: list[str] | None = None,
        where: Filter | None = None,
        document_id: str | None = None,
    ) -> int:
        extra = {_DOCUMENT: document_id} if document_id is not None else {}
        condition = to_chroma(where, extra)

        def remove(target: Any) -> int:
            found = target.get(ids=ids, where=condition, include=[])["ids"]
            if found:
                target.delete(ids=found)
            return len(found)

        with self._lock:
            return self._on(collection.name, "delete chunks", remove)

    def get(self, collection: CollectionInfo, ids: list[str]) -> list[Chunk]:
        if not ids:
            return []
        got = self._on(
            collection.name,
            "read chunks",
            lambda target: target.get(ids=ids, include=["documents", "metadatas", "embeddings"]),
        )
        found = {}
        for key, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
        ):
            plain, user, document = self._split(meta)
            found[key] = Chunk(key, text, plain, user, document, [float(x) for x in vector])
        return [found[i] for i in ids if i in found]

    def count(self, collection: CollectionInfo) -> int:
        return self._on(collection.name, "count chunks", lambda target: int(target.count()))

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
        condition = to_chroma(where, {_USER: user_id} if user_id is not None else None)
        # Chroma answers fewer than n_results when the collection holds fewer chunks;
        # counting first would cost as much as the search.
        got = self._on(
            collection.name,
            "query",
            lambda target: target.query(
                query_embeddings=[embedding.astype(np.float32)],
                n_results=k,
                where=condition,
                include=["documents", "metadatas", "distances"],
            ),
        )
        hits = []
        for key, text, meta, raw in zip(
            got["ids"][0],
            got["documents"][0],
            got["metadatas"][0],
            got["distances"][0],
            strict=True,
        ):
            plain, user, document = self._split(meta)
            distance = self._distance(collection.metric, float(raw))
            score = 1.0 - distance if collection.metric == "cosine" else -distance
            hits.append(Hit(key, text, plain, distance, score, user, document))
        return hits

    @staticmethod
    def _distance(metric: str, raw: float) -> float:
        # Chroma's l2 is the squared distance and its ip is 1 - dot; ours are the
        # Euclidean distance and -dot, as pgvector and the SQLite index report them.
        if metric == "l2":
            return float(np.sqrt(max(raw, 0.0)))
        if metric == "ip":
            return raw - 1.0
        return raw

    def delete_user(self, user_id: str) -> int:
        deleted = 0
        with self._lock, self._calls("forget the user"):
            for name in self._names():
                target = self._client.get_collection(name, embedding_function=None)
                found = target.get(where={_USER: user_id}, include=[])["ids"]
                if found:
                    target.delete(ids=found)
                    deleted += len(found)
        return deleted

    def count_user(self, user_id: str) -> int:
        counted = 0
        with self._calls("count the user's chunks"):
            for name in self._names():
                target = self._client.get_collection(name, embedding_function=None)
                counted += len(target.get(where={_USER: user_id}, include=[])["ids"])
        return counted

    def close(self) -> None:
        self._widths.clear()
        self._handles.clear()
        # Release the folder's files (a restore replaces them); chromadb < 1.1 has no close.
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
