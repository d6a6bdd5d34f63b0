"""What every domain facade shares: the store it works on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arquivo.store import Arquivo

__all__ = ["Facade"]


class Facade:
    """Base of the domain facades (``store.preferences``, ``store.conversations``...)."""

    __slots__ = ("_store",)

    def __init__(self, store: Arquivo) -> None:
        self._store = store
