"""Durations written the way operators write them: ``30s``, ``15m``, ``6h``, ``30d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from arquivo.errors import ValidationError

__all__ = ["parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """Parse ``30s``, ``15m``, ``6h``, ``30d`` or ``2w`` into a positive ``timedelta``.

    Raises:
        ValidationError: The text is not a number followed by one of s, m, h, d, w,
            or it is zero.
    """
    match = _PATTERN.match(text or "")
    if match is None or float(match.group(1)) <= 0:
        raise ValidationError(
            f"{what} {text!r} is not a duration",
            hint="write a positive number and a unit: 30s, 15m, 6h, 30d or 2w",
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
