"""Checks on caller input, done before anything touches the database.

Each check raises :class:`~arquivo.errors.ValidationError` naming the field, so a bad value
is reported as the caller's mistake and nothing is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from arquivo.errors import ValidationError

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_ID_CHARS",
    "MAX_JSON_BYTES",
    "check_datetime",
    "check_id",
    "check_json",
    "check_limit",
    "check_text",
    "shown",
]

#: Longest user, session, key, operation or agent name.
MAX_ID_CHARS = 255
#: Longest message content, error text or instructions (characters).
MAX_CONTENT_CHARS = 1_000_000
#: Largest JSON value (preference, extra data, tools, memory), serialised, in bytes.
MAX_JSON_BYTES = 1_000_000
_MAX_JSON_DEPTH = 64
_MAX_JSON_INT = 10**4000


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting caller input in a message.

    Never fails: a value too deep or too large to repr (a list nested thousands of levels,
    an integer of 5,000 digits) is described by its type instead.
    """
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_id(field: str, value: object) -> str:
    """An identifier: a non-blank string of printable characters, at most 255 long."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be a string, not {type(value).__name__}",
            hint=f"pass {field} as text, e.g. str({field})",
        )
    if not value or value.isspace():
        raise ValidationError(f"{field} must not be empty", hint=f"give a non-blank {field}")
    if len(value) > MAX_ID_CHARS:
        raise ValidationError(
            f"{field} is {len(value)} characters long; the limit is {MAX_ID_CHARS}",
            hint=f"use a shorter {field} (a hash or UUID of a long name works)",
        )
    if not value.isprintable():
        raise ValidationError(
            f"{field} contains control characters: {value!r}",
            hint=f"remove newlines, tabs and NUL bytes from {field}",
        )
    return value


def check_text(field: str, value: object, *, max_chars: int = MAX_CONTENT_CHARS) -> str:
    """Free text: a string without NUL bytes, at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{field} must be a string, not {type(value).__name__}",
            hint="decode bytes to text first; binary data belongs in a file, not a message",
        )
    if len(value) > max_chars:
        raise ValidationError(
            f"{field} is {len(value):,} characters long; the limit is {max_chars:,}",
            hint=f"split {field}, or store large documents in the knowledge store",
        )
    if "\x00" in value:
        raise ValidationError(
            f"{field} contains a NUL byte",
            hint="text must not contain \\x00; binary data belongs in a file",
        )
    return value


def check_json(field: str, value: object) -> Any:
    """A JSON value that round-trips exactly: dicts with string keys, lists, strings,
    finite numbers, booleans and None (tuples are stored as lists)."""
    _walk(field, value, field, 0)
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode())
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} holds text that is not valid Unicode: {exc.reason}",
            hint="lone surrogates cannot be stored; decode the text with errors='replace'",
        ) from exc
    if size > MAX_JSON_BYTES:
        raise ValidationError(
            f"{field} is {size:,} bytes as JSON; the limit is {MAX_JSON_BYTES:,}",
            hint="store large data elsewhere (a file or the knowledge store) and keep a reference",
        )
    return value


def _walk(field: str, value: object, path: str, depth: int) -> None:
    if depth > _MAX_JSON_DEPTH:
        raise ValidationError(
            f"{field} is nested more than {_MAX_JSON_DEPTH} levels deep (at {path})",
            hint="flatten the structure",
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        # Python refuses to write integers of more than 4,300 digits as text.
        if not -_MAX_JSON_INT < value < _MAX_JSON_INT:
            raise ValidationError(
                f"{field} holds an integer of more than 4,000 digits at {path}",
                hint="store very large numbers as strings",
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"{field} holds {value} at {path}, which JSON cannot represent",
                hint="use None or a string for missing or infinite numbers",
            )
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{field} holds a NUL character at {path}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"{field} has a key of type {type(key).__name__} at {path}: {shown(key)}",
                    hint="JSON object keys must be strings; convert them with str()",
                )
            if "\x00" in key:
                # PostgreSQL's JSONB cannot hold NUL in keys any more than in values.
                raise ValidationError(f"{field} has a key with a NUL character at {path}")
            _walk(field, item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(field, item, f"{path}[{index}]", depth + 1)
        return
    raise ValidationError(
        f"{field} holds a {type(value).__name__} at {path}, which is not JSON",
        hint="use only dict, list, str, int, float, bool and None",
    )


def check_limit(field: str, value: object, *, maximum: int = 10_000) -> int:
    """A positive page size, at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, not {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise ValidationError(f"{field} must be between 1 and {maximum}, not {shown(value)}")
    return value


def check_datetime(field: str, value: object) -> datetime:
    """A datetime (naive ones are taken as UTC)."""
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a datetime, not {type(value).__name__}",
            hint="pass e.g. datetime.now(UTC) - timedelta(hours=24)",
        )
    return value
