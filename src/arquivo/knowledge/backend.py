"""The contract every vector backend fulfils (the contract tests run it on each).

The facade (``store.knowledge``) has already validated and embedded everything a
backend receives: names and ids are checked, embeddings are finite float32 rows of the
collection's width, metadata is flat. A backend only stores and searches.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from arquivo.knowledge.filters import Filter
from arquivo.knowledge.values import Chunk, CollectionInfo, Hit, Record

__all__ = ["Matrix", "VectorBackend"]

Matrix = np.ndarray[Any, np.dtype[np.float32]]


class VectorBackend(abc.ABC):
    """Stores collections of chunks and finds the nearest ones.

    Capability flags tell the facade and the tests what differs:

    Attributes:
        name: ``native`` or ``chroma``.
        exact_search: Whether ``query(exact=True)`` is available (brute force).
        approximate: Whether the default search may miss true neighbours (an ANN index).
        transactional: Whether writes join ``store.transaction()`` (rows and vectors
            commit or roll back with the caller's other writes).
    """

    name: ClassVar[str]
    exact_search: ClassVar[bool] = True
    approximate: ClassVar[bool] = False
    transactional: ClassVar[bool] = False

    @abc.abstractmethod
    def create_collection(
        self, name: str, dimensions: int | None, metric: str, embedder: str | None
    ) -> CollectionInfo:
        """Create an empty collection (``DuplicateError`` when the name is taken)."""

    @abc.abstractmethod
    def get_collection(self, name: str) -> CollectionInfo:
        """A collection's settings (``NotFoundError`` when there is none)."""

    @abc.abstractmethod
    def collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""

    @abc.abstractmethod
    def drop_collection(self, name: str) -> None:
        """Delete a collection and all its chunks (``NotFoundError`` when there is none)."""

    @abc.abstractmethod
    def upsert(
        self, collection: CollectionInfo, records: list[Record], *, replace_document: str | None
    ) -> None:
        """Insert or replace chunks by id, all or none.

        When the collection has no width yet, the records' width becomes its width.
        ``replace_document`` first deletes that document's chunks (in the same write).
        """

    @abc.abstractmethod
    def delete(
        self,
        collection: CollectionInfo,
        *,
        ids: list[str] | None = None,
        where: Filter | None = None,
        document_id: str | None = None,
    ) -> int:
        """Delete chunks matching every given condition; return how many went."""

    @abc.abstractmethod
    def get(self, collection: CollectionInfo, ids: list[str]) -> list[Chunk]:
        """The chunks with these ids that exist, in the order asked."""

    @abc.abstractmethod
    def count(self, collection: CollectionInfo) -> int:
        """How many chunks the collection holds."""

    @abc.abstractmethod
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
        """The ``k`` chunks nearest to ``embedding`` (1-D), best first."""

    @abc.abstractmethod
    def delete_user(self, user_id: str) -> int:
        """Delete every chunk of ``user_id`` in every collection; return how many."""

    @abc.abstractmethod
    def count_user(self, user_id: str) -> int:
        """How many chunks of ``user_id`` there are, in every collection."""

    def search_note(self) -> str | None:
        """What an operator should know about how this backend searches, if anything
        (``arquivo kb list`` shows it)."""
        return None

    def drop_index(self, collection: CollectionInfo) -> bool:
        """Drop the collection's ANN index before a bulk load; return whether there was
        one to drop (backends whose index cannot be suspended return ``False``)."""
        return False

    def build_index(self, collection: CollectionInfo) -> None:  # noqa: B027 - see drop_index
        """Build the collection's ANN index (after :meth:`drop_index` and a bulk load)."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release clients and caches. Idempotent."""
