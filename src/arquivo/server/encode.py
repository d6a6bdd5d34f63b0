"""Values to JSON responses, fast: the library's frozen dataclasses, encoded by hand.

FastAPI would validate a returned value against its ``response_model`` and serialise it
through pydantic; returning a ready :class:`Json` response skips that work on the hot
routes while the ``response_model`` still documents the shape in OpenAPI.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from starlette.responses import Response

__all__ = ["Json", "plain"]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default)


def plain(value: Any) -> Any:
    """``value`` with dataclasses and datetimes turned into JSON-ready objects."""
    return json.loads(_encoder.encode(value))


class Json(Response):
    """A JSON response that knows the library's values."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content`` (dataclasses, datetimes and JSON values) as UTF-8 JSON."""
        return _encoder.encode(content).encode("utf-8")
