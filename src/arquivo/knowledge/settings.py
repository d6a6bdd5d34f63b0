"""Choosing the knowledge store's backend from :class:`~arquivo.settings.Settings`."""

from __future__ import annotations

from collections.abc import Callable

from arquivo.knowledge.backend import VectorBackend
from arquivo.settings import Settings

__all__ = ["knowledge_backend_from"]


def knowledge_backend_from(settings: Settings) -> Callable[[], VectorBackend] | None:
    """A factory for the backend ``ARQUIVO_KNOWLEDGE_BACKEND`` names (``None``: native).

    ``chroma`` uses a server when ``CHROMA_HOST`` is set, else the folder
    ``CHROMA_DB_PATH``.
    """
    if settings.knowledge_backend != "chroma":
        return None
    host, path = settings.chroma_host, settings.chroma_db_path

    def make() -> VectorBackend:
        from arquivo.knowledge.chroma import ChromaBackend

        return ChromaBackend.from_settings(host=host, path=path)

    return make
