"""Plain values the knowledge store returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AnnReport", "Chunk", "CollectionInfo", "DocumentInfo", "Hit", "Record"]


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's settings.

    Attributes:
        name: Its name.
        dimensions: Width of its embeddings (``None`` until the first are added).
        metric: ``cosine``, ``l2`` or ``ip``.
        embedder: Name of the embedder that made its vectors, if known.
        row_id: Its row in the native backend's collections table (``None`` from other
            backends): a search given this info need not look the name up again.
    """

    name: str
    dimensions: int | None
    metric: str
    embedder: str | None
    row_id: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Chunk:
    """One stored chunk.

    Attributes:
        id: Its id (unique in the collection).
        text: Its text.
        metadata: Flat metadata (string keys; str, int, float or bool values).
        user_id: Whose data it is, if anyone's.
        document_id: The document it was cut from, if any.
        embedding: Its vector.
    """

    id: str
    text: str
    metadata: dict[str, Any]
    user_id: str | None
    document_id: str | None
    embedding: list[float] = field(repr=False)


@dataclass(frozen=True)
class Hit:
    """A query result, best first.

    Attributes:
        id: The chunk's id.
        text: Its text.
        metadata: Its metadata.
        distance: Smaller is closer: ``1 - cosine`` for cosine, Euclidean distance for
            ``l2``, the negated inner product for ``ip``.
        score: Larger is closer: cosine similarity, ``-distance`` otherwise.
        user_id: Whose data it is, if anyone's.
        document_id: The document it was cut from, if any.
    """

    id: str
    text: str
    metadata: dict[str, Any]
    distance: float
    score: float
    user_id: str | None
    document_id: str | None


@dataclass(frozen=True)
class DocumentInfo:
    """What :meth:`~arquivo.domain.knowledge.Knowledge.add_document` stored.

    Attributes:
        id: The document's id.
        chunk_ids: The ids of its chunks, in order.
    """

    id: str
    chunk_ids: list[str]


@dataclass(frozen=True)
class Record:
    """A validated chunk on its way into a backend (internal)."""

    id: str
    text: str
    metadata: dict[str, Any]
    user_id: str | None
    document_id: str | None
    embedding: Any  # 1-D float32 numpy array


def score_of(metric: str, distance: float) -> float:
    """The similarity matching a distance of ``metric``."""
    return 1.0 - distance if metric == "cosine" else -distance


@dataclass(frozen=True)
class AnnReport:
    """What :func:`enable_ann` did (or, in a dry run, would do).

    Attributes:
        converted: Whether the embedding column was (or would be) converted.
        chunks: Chunks whose embeddings were converted.
        indexes: Collections that got an HNSW index.
        dry_run: ``True`` when nothing was changed.
    """

    converted: bool
    chunks: int
    indexes: list[str]
    dry_run: bool
