"""``where`` filters on chunk metadata: parsed once, translated for each backend.

The syntax is Chroma's (the seeds' vector store), so users move between backends
freely: ``{"topic": "cats"}``, ``{"year": {"$gte": 2020}}``,
``{"$and": [...]}``, ``{"$or": [...]}``; several keys at the top level mean AND.
Operators: ``$eq $ne $gt $gte $lt $lte $in $nin``. ``$eq``, ``$in`` and the ranges only
match chunks whose value under the key has the compared value's type (``year > 2000``
skips a ``year`` stored as text); ``$ne`` and ``$nin`` match every other chunk, including
those without the key (Chroma's semantics, measured on chromadb 1.5.9).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from arquivo.db.dialects import DialectSupport
from arquivo.errors import ValidationError

__all__ = ["And", "Compare", "Filter", "Or", "check_metadata", "parse_where", "to_chroma", "to_sql"]

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Metadata keys the Chroma backend uses for its own bookkeeping.
RESERVED_PREFIX = "_arquivo"
_RANGE = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = {"$eq", "$ne", "$in", "$nin", *_RANGE}
_HINT = 'e.g. {"topic": "cats", "year": {"$gte": 2020}}'


@dataclass(frozen=True)
class Compare:
    """``metadata[key] <op> value``."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    """Every part matches."""

    parts: tuple[Filter, ...]


@dataclass(frozen=True)
class Or:
    """At least one part matches."""

    parts: tuple[Filter, ...]


Filter = Compare | And | Or


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def check_key(field: str, key: object) -> str:
    """A metadata key usable in filters on every backend."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValidationError(
            f"{field} has the key {key!r}; keys are 1-64 letters, digits, '_' or '-'",
            hint="rename the key, e.g. 'source_file'",
        )
    if key.startswith(RESERVED_PREFIX):
        raise ValidationError(f"{field}: keys starting with {RESERVED_PREFIX!r} are reserved")
    return key


def _check_scalar(field: str, value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{field} holds {value}, which cannot be stored or compared")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{field} holds a NUL character")
        return
    if not isinstance(value, (bool, int, float)):
        raise ValidationError(
            f"{field} holds a {type(value).__name__}; metadata values are str, int, float or bool",
            hint="flatten nested values into their own keys, or store them as JSON text",
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        raise ValidationError(f"{field} holds {value}, beyond the exact range of a float")


def check_metadata(field: str, metadata: object) -> dict[str, Any]:
    """Flat metadata: string keys (see :func:`check_key`), scalar values."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"{field} must be a dict, not {type(metadata).__name__}")
    if len(metadata) > 64:
        raise ValidationError(f"{field} has {len(metadata)} keys; the limit is 64")
    for key, value in metadata.items():
        check_key(field, key)
        _check_scalar(f"{field}[{key!r}]", value)
        if isinstance(value, str) and len(value) > 10_000:
            raise ValidationError(f"{field}[{key!r}] is over 10,000 characters")
    return dict(metadata)


def parse_where(where: object) -> Filter | None:
    """Validate a ``where`` mapping; ``None`` or ``{}`` means no filter.

    Raises:
        ValidationError: An unknown operator, a bad key, or a value of the wrong type.
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ValidationError(f"where must be a dict, not {type(where).__name__}", hint=_HINT)
    if not where:
        return None
    return _parse(where)


def _parse(where: Mapping[str, Any]) -> Filter:
    parts: list[Filter] = []
    for key, condition in where.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise ValidationError(f"where {key} needs a non-empty list", hint=_HINT)
            inner = []
            for part in condition:
                if not isinstance(part, Mapping) or not part:
                    raise ValidationError(f"each part of {key} must be a non-empty dict")
                inner.append(_parse(part))
            parts.append(And(tuple(inner)) if key == "$and" else Or(tuple(inner)))
            continue
        check_key("where", key)
        if isinstance(condition, Mapping):
            if len(condition) != 1:
                raise ValidationError(f"where[{key!r}] must have exactly one operator", hint=_HINT)
            ((op, value),) = condition.items()
        else:
            op, value = "$eq", condition
        parts.append(_compare(key, op, value))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _compare(key: str, op: object, value: object) -> Compare:
    if op not in _OPERATORS:
        raise ValidationError(
            f"where[{key!r}] has the unknown operator {op!r}",
            hint="use one of " + ", ".join(sorted(_OPERATORS)),
        )
    field = f"where[{key!r}][{op!r}]"
    if op in ("$in", "$nin"):
        if not isinstance(value, list) or not value:
            raise ValidationError(f"{field} needs a non-empty list of values")
        for item in value:
            _check_scalar(field, item)
        if len({_kind(item) for item in value}) > 1:
            raise ValidationError(f"{field} mixes values of different types")
        return Compare(key, str(op), tuple(value))
    _check_scalar(field, value)
    if op in _RANGE and _kind(value) != "number":
        raise ValidationError(f"{field} compares with {value!r}; ranges need a number")
    return Compare(key, str(op), value)


def to_sql(
    node: Filter, column: ColumnElement[Any], support: DialectSupport
) -> ColumnElement[bool]:
    """The filter as a SQL condition on a JSON metadata column."""
    if isinstance(node, And):
        return sa.and_(*(to_sql(part, column, support) for part in node.parts))
    if isinstance(node, Or):
        return sa.or_(*(to_sql(part, column, support) for part in node.parts))
    sample = node.value[0] if isinstance(node.value, tuple) else node.value
    value = support.json_scalar(column, node.key, _kind(sample))
    ops: dict[str, Any] = {
        "$eq": lambda v: value == v,
        # As in Chroma: "not equal" also matches chunks without the key or of another type.
        "$ne": lambda v: sa.or_(value.is_(None), value != v),
        "$gt": lambda v: value > v,
        "$gte": lambda v: value >= v,
        "$lt": lambda v: value < v,
        "$lte": lambda v: value <= v,
        # Spelled out rather than IN (...): the hot path takes no expanding parameters.
        "$in": lambda v: sa.or_(*(value == item for item in v)),
        "$nin": lambda v: sa.or_(value.is_(None), sa.and_(*(value != item for item in v))),
    }
    condition: ColumnElement[bool] = ops[node.op](node.value)
    return condition


def to_chroma(node: Filter | None, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The filter in Chroma's ``where`` syntax, ANDed with ``extra`` equalities."""
    clauses: list[dict[str, Any]] = [{k: {"$eq": v}} for k, v in (extra or {}).items()]
    if node is not None:
        clauses.append(_chroma(node))
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _chroma(node: Filter) -> dict[str, Any]:
    if isinstance(node, (And, Or)):
        parts = [_chroma(part) for part in node.parts]
        if len(parts) == 1:
            return parts[0]
        return {"$and" if isinstance(node, And) else "$or": parts}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return {node.key: {node.op: value}}
