"""The knowledge store for RAG: collections of embedded chunks behind one contract.

``store.knowledge`` (:class:`arquivo.domain.knowledge.Knowledge`) validates, embeds and
chunks; a :class:`~arquivo.knowledge.backend.VectorBackend` stores and searches. Backends:
the native one (vectors in the same database: numpy over float32 rows on SQLite,
pgvector HNSW on PostgreSQL, numpy over ``real[]`` rows on a PostgreSQL without
pgvector) and Chroma (a local folder or a server).
"""

from arquivo.knowledge.embedders import Embedder, MiniLMEmbedder, OpenAIEmbedder
from arquivo.knowledge.values import AnnReport, Chunk, CollectionInfo, DocumentInfo, Hit

__all__ = [
    "AnnReport",
    "Chunk",
    "CollectionInfo",
    "DocumentInfo",
    "Embedder",
    "Hit",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
]
