"""What the reliability suite tried and saw, tallied per fault and database, and its table.

Each test adds to a :class:`Tally` (faults injected, kills, writes acknowledged and
verified, errors by type). The pytest session prints the table at the end of the run
(see ``conftest.py``) and, when ``ARQUIVO_RELIABILITY_LEDGER`` names a file, writes the
tallies there as JSON lines for ``python -m tests.reliability.report``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LEDGER_ENV = "ARQUIVO_RELIABILITY_LEDGER"
MODE_ENV = "ARQUIVO_RELIABILITY"


# Read once, at import: the suite's autouse fixture hides ARQUIVO_* variables from tests.
_LONG = os.environ.get(MODE_ENV, "").lower() == "long"


def long_run() -> bool:
    """Whether the long version was asked for (``ARQUIVO_RELIABILITY=long``)."""
    return _LONG


def scaled(short: int, long: int) -> int:
    """``short`` in the CI run, ``long`` in the long one."""
    return long if long_run() else short


def scaled_seconds(short: float, long: float) -> float:
    """A duration in seconds: ``short`` in the CI run, ``long`` in the long one."""
    return long if long_run() else short


@dataclass
class Tally:
    """Counts for one fault on one database."""

    fault: str
    backend: str
    faults: int = 0
    kills: int = 0
    acknowledged: int = 0
    verified: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def error(self, exc: BaseException | str, count: int = 1) -> None:
        """Count an error that reached a caller (by class name)."""
        name = exc if isinstance(exc, str) else type(exc).__name__
        self.errors[name] += count

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "fault": self.fault,
            "backend": self.backend,
            "faults": self.faults,
            "kills": self.kills,
            "acknowledged": self.acknowledged,
            "verified": self.verified,
            "errors": dict(self.errors),
        }


_TALLIES: list[Tally] = []


def tally(fault: str, backend: str) -> Tally:
    """A new tally for ``fault`` on ``backend``, kept for the report."""
    entry = Tally(fault, backend)
    _TALLIES.append(entry)
    return entry


def recorded() -> list[Tally]:
    """Every tally of this process."""
    return list(_TALLIES)


def save(path: Path) -> None:
    """Append this process's tallies to ``path`` as JSON lines."""
    with path.open("a", encoding="utf-8") as out:
        for entry in _TALLIES:
            out.write(json.dumps(entry.as_dict()) + "\n")


def load(path: Path) -> list[Tally]:
    """Tallies written by :func:`save`."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        entries.append(
            Tally(
                raw["fault"],
                raw["backend"],
                raw["faults"],
                raw["kills"],
                raw["acknowledged"],
                raw["verified"],
                Counter(raw["errors"]),
            )
        )
    return entries


def merge(entries: Iterable[Tally]) -> list[Tally]:
    """One tally per (fault, backend), summed, in first-seen order."""
    merged: dict[tuple[str, str], Tally] = {}
    for entry in entries:
        key = (entry.fault, entry.backend)
        into = merged.setdefault(key, Tally(entry.fault, entry.backend))
        into.faults += entry.faults
        into.kills += entry.kills
        into.acknowledged += entry.acknowledged
        into.verified += entry.verified
        into.errors.update(entry.errors)
    return list(merged.values())


def table(entries: Iterable[Tally]) -> str:
    """The report: one row per fault and database, then totals per database."""
    rows = merge(entries)
    header = ("fault", "database", "faults", "kills", "acked", "verified", "errors by type")
    lines: list[tuple[str, ...]] = [header]
    for entry in rows:
        lines.append(_row(entry))
    totals: dict[str, Tally] = {}
    for entry in rows:
        total = totals.setdefault(entry.backend, Tally("TOTAL", entry.backend))
        total.faults += entry.faults
        total.kills += entry.kills
        total.acknowledged += entry.acknowledged
        total.verified += entry.verified
        total.errors.update(entry.errors)
    lines.extend(_row(total) for total in totals.values())
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(width) if column < 2 or column == 6 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        rendered.append("  ".join(cells).rstrip())
        if index == 0 or (index == len(rows) and totals):
            rendered.append("  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def _row(entry: Tally) -> tuple[str, ...]:
    errors = ", ".join(f"{name} x{count}" for name, count in sorted(entry.errors.items()))
    return (
        entry.fault,
        entry.backend,
        str(entry.faults),
        str(entry.kills),
        str(entry.acknowledged),
        str(entry.verified),
        errors or "-",
    )
