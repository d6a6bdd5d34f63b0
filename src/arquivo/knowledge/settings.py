"""Choosing the knowledge store's backend from :class:`~arquivo.settings.Settings`."""

from __future__ import annotations

from collections.abc import Callable

from arquivo.knowledge.backend import VectorBackend
from arquivo.settings import Settings

__all__ = ["knowledge_backend_from", "uses_chroma"]


def uses_chroma(settings: Settings) -> bool:
    """Whether ``store.knowledge`` keeps its vectors in Chroma.

    ``ARQUIVO_KNOWLEDGE_BACKEND`` decides when it is given. When it is not, setting the
    seeds' own ``CHROMA_HOST`` or ``CHROMA_DB_PATH`` (environment, ``.env`` or
    arguments) chooses Chroma, as the seeds' set-up expects; otherwise the vectors stay
    in the database (native).
    """
    given = settings.model_fields_set
    if "knowledge_backend" in given:
        return settings.knowledge_backend == "chroma"
    return bool({"chroma_host", "chroma_db_path"} & given)


def knowledge_backend_from(settings: Settings) -> Callable[[], VectorBackend] | None:
    """A factory for the configured backend (``None``: native, see :func:`uses_chroma`).

    Chroma is a server when ``CHROMA_HOST`` is set, else the folder ``CHROMA_DB_PATH``.
    """
    if not uses_chroma(settings):
        return None
    host, path = settings.chroma_host, settings.chroma_db_path

    def make() -> VectorBackend:
        from arquivo.knowledge.chroma import ChromaBackend

        return ChromaBackend.from_settings(host=host, path=path)

    return make
