"""Templates and the small formatting helpers the console pages share."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from arquivo.db.types import utcnow

__all__ = ["age", "environment", "message_html", "pretty_json", "until"]

_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def age(moment: datetime | None) -> str:
    """How long ago ``moment`` was, for people ("3 min ago")."""
    if moment is None:
        return ""
    return f"{_span((utcnow() - moment).total_seconds())} ago"


def until(moment: datetime | None) -> str:
    """How long until ``moment`` ("in 5 min", or "expired 2 min ago")."""
    if moment is None:
        return "never"
    seconds = (moment - utcnow()).total_seconds()
    if seconds <= 0:
        return f"passed {_span(seconds)} ago"
    return f"in {_span(seconds)}"


def message_html(content: str) -> Markup:
    """A message's text, escaped, with fenced code blocks in monospace."""
    parts: list[str] = []
    last = 0
    for match in _FENCE.finditer(content):
        if match.start() > last:
            parts.append(f'<p class="text">{escape(content[last : match.start()])}</p>')
        parts.append(f"<pre><code>{escape(match.group(1))}</code></pre>")
        last = match.end()
    if last < len(content):
        parts.append(f'<p class="text">{escape(content[last:])}</p>')
    return Markup("".join(parts))


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(sep=" ", timespec="seconds")


def environment() -> Environment:
    """The templates of the console, autoescaped."""
    env = Environment(
        loader=PackageLoader("arquivo.server", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty_json"] = pretty_json
    env.filters["age"] = age
    env.filters["until"] = until
    env.filters["when"] = _when
    env.filters["message_html"] = message_html
    return env
