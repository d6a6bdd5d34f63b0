"""``store.metrics``: operation timings, successes and errors, with aggregates."""

from __future__ import annotations

from arquivo.domain.base import Facade

__all__ = ["Metrics"]


class Metrics(Facade):
    """System metrics (to be implemented)."""

    __slots__ = ()
