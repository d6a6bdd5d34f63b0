"""How one column's values become JSON and back, chosen from the column's type.

Conversions are driven by the schema rather than by tags inside the values: a JSON
column may hold any document (even one shaped like a tag), so only the column type can
say that a string is a timestamp. Types Arquivo does not know (a vector column added
later, a user's own type) pass through as plain JSON, with ``tolist()`` for arrays and
base64 for bytes.
"""

from __future__ import annotations

import base64
import json
import math
import operator
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, Table
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["ColumnCodec", "DecodeError", "TableCodec", "is_json"]

Convert = Callable[[Any], Any]


class DecodeError(Exception):
    """A value in an export file does not fit its column (the caller adds the line)."""


def _base_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    # A TypeDecorator (UTCDateTime) stores through its impl; a with_variant type keeps
    # its generic form as the object itself, which is what the checks below need.
    while isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_


def _float_out(value: Any) -> Any:
    # Strict JSON has no NaN or infinities: write them as the strings Python reads back.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _float_in(value: Any) -> float:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(f"expected a number, got {value!r}")
    return float(value)


def _int_in(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"expected an integer, got {value!r}")
    return value


def _bool_in(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"expected true or false, got {value!r}")
    return value


def _datetime_in(value: Any) -> datetime:
    if not isinstance(value, str):
        raise DecodeError(f"expected an ISO 8601 timestamp, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise DecodeError(f"{value!r} is not an ISO 8601 timestamp") from None


def _date_in(value: Any) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise DecodeError(f"{value!r} is not an ISO 8601 date") from None


def _time_in(value: Any) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise DecodeError(f"{value!r} is not an ISO 8601 time") from None


def _interval_in(value: Any) -> timedelta:
    return timedelta(seconds=_float_in(value))


def _decimal_in(value: Any) -> Decimal:
    try:
        return Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise DecodeError(f"{value!r} is not a decimal number") from None


def _bytes_in(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, ValueError):
        raise DecodeError("expected base64 text") from None


def _uuid_in(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise DecodeError(f"{value!r} is not a UUID") from None


def _generic_out(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    tolist = getattr(value, "tolist", None)  # numpy / pgvector arrays
    if callable(tolist):
        return tolist()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    return value


def _isoformat(value: Any) -> Any:
    return value.isoformat()


def _seconds(value: Any) -> float:
    return float(value.total_seconds())


def _b64(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def is_json(type_: TypeEngine[Any]) -> bool:
    """Whether a column holds JSON documents (exported as their JSON text, unparsed)."""
    return isinstance(_base_type(type_), sa.JSON)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_string: Callable[[str], str] = json.encoder.encode_basestring


def _text_fragment(value: Any) -> str:
    return _string(value) if type(value) is str else _dumps(_generic_out(value))


def _int_fragment(value: Any) -> str:
    return str(value) if type(value) is int else _dumps(_generic_out(value))


def _bool_fragment(value: Any) -> str:
    return "true" if value else "false"


def _float_fragment(value: Any) -> str:
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return _dumps(_float_out(value))


def _time_fragment(value: Any) -> str:
    return f'"{value.isoformat()}"'


def _raw_json_fragment(value: Any) -> str:
    # The database's own JSON text (SQLite's column, PostgreSQL's jsonb::text).
    return value if isinstance(value, str) else _dumps(_generic_out(value))


def _generic_fragment(value: Any) -> str:
    return _dumps(_generic_out(value))


def _fragment_for(type_: TypeEngine[Any]) -> Convert:
    """A function writing a non-NULL value of the type as JSON text."""
    base = _base_type(type_)
    if isinstance(base, sa.JSON):
        return _raw_json_fragment
    if isinstance(base, (sa.DateTime, sa.Date, sa.Time)):
        return _time_fragment
    if isinstance(base, sa.Boolean):
        return _bool_fragment
    if isinstance(base, sa.Integer):
        return _int_fragment
    if isinstance(base, sa.Float):
        return _float_fragment
    if isinstance(base, sa.String):
        return _text_fragment
    encode, _, _ = _codec_for(type_)
    if encode is None:
        return _generic_fragment
    return lambda value: _dumps(encode(value))


def _codec_for(type_: TypeEngine[Any]) -> tuple[Convert | None, Convert | None, type | None]:
    """(encode, decode, expected Python type for a cheap check) for a column type."""
    base = _base_type(type_)
    # Order matters: JSON before String (no overlap today, but JSON is the open type),
    # Boolean before Integer, Float before Numeric (Float subclasses Numeric).
    if isinstance(base, sa.JSON):
        return None, None, None
    if isinstance(base, sa.DateTime):
        return _isoformat, _datetime_in, None
    if isinstance(base, sa.Date):
        return _isoformat, _date_in, None
    if isinstance(base, sa.Time):
        return _isoformat, _time_in, None
    if isinstance(base, sa.Interval):
        return _seconds, _interval_in, None
    if isinstance(base, sa.Boolean):
        return None, _bool_in, None
    if isinstance(base, sa.Integer):
        return None, _int_in, None
    if isinstance(base, sa.Float):
        return _float_out, _float_in, None
    if isinstance(base, sa.Numeric):
        return str, _decimal_in, None
    if isinstance(base, sa.LargeBinary):
        return _b64, _bytes_in, None
    if isinstance(base, sa.Uuid):
        return str, _uuid_in, None
    if isinstance(base, sa.String):
        return None, None, str
    return _generic_out, None, None


@dataclass(frozen=True, slots=True)
class ColumnCodec:
    """The conversions of one column.

    Attributes:
        name: The column name.
        encode: Python value -> JSON value (``None``: already JSON).
        decode: JSON value -> Python value, raising :class:`DecodeError` (``None``: as is).
        expected: A Python type the JSON value must have, if any.
        max_length: The longest text the column takes (``VARCHAR(n)``), if bounded.
        nullable: Whether the column takes NULL.
    """

    name: str
    encode: Convert | None
    decode: Convert | None
    expected: type | None
    max_length: int | None
    nullable: bool

    @classmethod
    def of(cls, column: Column[Any]) -> ColumnCodec:
        """The codec for a table column."""
        encode, decode, expected = _codec_for(column.type)
        base = _base_type(column.type)
        length = getattr(base, "length", None) if isinstance(base, sa.String) else None
        return cls(column.name, encode, decode, expected, length, bool(column.nullable))

    def check(self, value: Any) -> Any:
        """Decode and check one JSON value for this column.

        Raises:
            DecodeError: The value does not fit the column.
        """
        if value is None:
            if not self.nullable:
                raise DecodeError("must not be null")
            return None
        if self.expected is not None and not isinstance(value, self.expected):
            raise DecodeError(f"expected {self.expected.__name__}, got {value!r}")
        if self.max_length is not None and len(value) > self.max_length:
            raise DecodeError(f"longer than {self.max_length} characters")
        return value if self.decode is None else self.decode(value)


class TableCodec:
    """Row conversions for one table: tuples out to JSON objects, JSON objects back in."""

    def __init__(self, table: Table) -> None:
        """Build the codecs of every column of ``table``."""
        self.table = table
        self.names = [column.name for column in table.columns]
        self.columns = {column.name: ColumnCodec.of(column) for column in table.columns}
        self.primary_key = [column.name for column in table.primary_key.columns]
        self._keys = [_string(name) + ":" for name in self.names]
        # Python-side defaults (``created_at``'s clock) for columns a file lacks (an
        # export from an older schema): the raw INSERT does not run SQLAlchemy's.
        self._defaults: list[tuple[str, Any]] = [
            (column.name, column.default)
            for column in table.columns
            if column.default is not None
            and (column.default.is_scalar or column.default.is_callable)
        ]
        self._fragments = [_fragment_for(column.type) for column in table.columns]

    def line_encoder(self) -> Callable[[Any], str]:
        """A function writing a row (in column order, JSON columns as their text) as
        one line of the export file."""
        head = '{"table":' + _string(self.table.name) + ',"row":{'
        keyed = list(zip(self._keys, self._fragments, strict=True))

        def encode(row: Any) -> str:
            return (
                head
                + ",".join(
                    [
                        key + ("null" if value is None else fragment(value))
                        for (key, fragment), value in zip(keyed, row, strict=True)
                    ]
                )
                + "}}\n"
            )

        return encode

    def defaults_missing(self, keys: Any) -> list[str]:
        """The columns with a Python-side default that ``keys`` lacks (a file from an
        older schema); :meth:`add_defaults` fills them."""
        return [name for name, _ in self._defaults if name not in keys]

    def add_defaults(self, values: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """Set the Python-side default of each column in ``names`` (in place)."""
        for name, default in self._defaults:
            if name in names:
                values[name] = default.arg(None) if default.is_callable else default.arg
        return values

    def unknown(self, names: Any) -> list[str]:
        """The names among ``names`` that are not columns of the table."""
        return [name for name in names if name not in self.columns]

    def loader(
        self,
        names: list[str],
        binds: Mapping[str, Convert | None] | None = None,
        *,
        as_is: Collection[str] = (),
    ) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """A function checking a row from a file and returning its values for the
        driver, in the order of ``names``, in one pass over the row.

        Each value is checked (NULL, type, length) and decoded as :meth:`validate` does,
        then passed through ``binds[name]`` (the column type's bind processor, so what
        is stored is what the ORM stores). Every row given to the function must hold
        exactly ``names`` (the caller checks the keys once per batch, and
        :meth:`unknown` once per set of names).

        Args:
            names: The columns, in the order of the tuples returned.
            binds: The bind processor of each column (none: values are only checked).
            as_is: Columns whose values are Python values already (defaults filled in
                by :meth:`add_defaults`): bound, neither checked nor decoded.

        Returns:
            The function, raising :class:`DecodeError` naming the column of a bad value.
        """
        binds = binds or {}
        shapes = [
            _Shape(None, None, None, False, _bind_only(binds.get(name)))
            if name in as_is
            else _Shape.of(self.columns[name], binds.get(name), key=name in self.primary_key)
            for name in names
        ]
        steps = [shape.step for shape in shapes]
        getter = operator.itemgetter(*names)
        single = len(names) == 1
        # Per set of value types (a "signature", e.g. a nullable column holding null in
        # some rows): which values need a length check, and which a call. The common
        # rows then cost a few C calls and the calls of the columns that convert.
        plans: dict[tuple[type, ...], tuple[list[tuple[int, int]], list[tuple[int, Convert]]]] = {}

        def plan(
            signature: tuple[type, ...],
        ) -> tuple[list[tuple[int, int]], list[tuple[int, Convert]]]:
            limits: list[tuple[int, int]] = []
            calls: list[tuple[int, Convert]] = []
            for index, (kind, shape, step) in enumerate(zip(signature, shapes, steps, strict=True)):
                if kind is type(None) and shape.null_passes:
                    continue
                if kind is shape.kind:
                    if shape.limit is not None:
                        limits.append((index, shape.limit))
                    if shape.convert is not None:
                        calls.append((index, shape.convert))
                else:
                    calls.append((index, step))  # checks (and words the error) itself
            if len(plans) < _MAX_SIGNATURES:
                plans[signature] = (limits, calls)
            return limits, calls

        def load(row: Mapping[str, Any]) -> tuple[Any, ...]:
            values: Any = (getter(row),) if single else getter(row)
            signature = tuple(map(type, values))
            found = plans.get(signature)
            limits, calls = plan(signature) if found is None else found
            if not calls and not limits:
                return values  # type: ignore[no-any-return]
            converted = list(values)
            for index, limit in limits:
                if len(converted[index]) > limit:
                    steps[index](converted[index])  # raises DecodeError, naming the column
            try:
                for index, call in calls:
                    converted[index] = call(converted[index])
            except ValueError:
                # A text that is not a timestamp: the steps word the error.
                return tuple([step(value) for step, value in zip(steps, values, strict=True)])
            return tuple(converted)

        return load


#: Signatures remembered per loader: a real file has a few; a hostile one, any number.
_MAX_SIGNATURES = 64


@dataclass(frozen=True, slots=True)
class _Shape:
    """A column's common case, which :meth:`TableCodec.loader` handles without its step.

    Attributes:
        kind: The exact type of a value that needs no check beyond :attr:`limit`
            (``None``: every value goes through the step).
        limit: The longest text the column takes, if bounded.
        convert: The call turning such a value into the driver's (``None``: as is).
        null_passes: Whether null is stored as is (a nullable column, not a key).
        step: The column's step, for anything else (see :func:`_column_step`).
    """

    kind: type | None
    limit: int | None
    convert: Convert | None
    null_passes: bool
    step: Convert

    @classmethod
    def of(cls, codec: ColumnCodec, bind: Convert | None, *, key: bool) -> _Shape:
        """The shape of ``codec``'s column (its step: :func:`_column_step`)."""
        step = _column_step(codec, bind, key=key)
        null_passes = codec.nullable and not key
        decode, length = codec.decode, codec.max_length
        exact = _exact_type(codec)
        from_text = getattr(bind, "from_text", None)
        if decode is _datetime_in and from_text is not None:
            # A timestamp's text, bound straight to the stored layout (ValueError if it
            # is not one: the loader then takes the step).
            return cls(str, None, from_text, null_passes, step)
        if decode is _datetime_in or exact is None:
            return cls(None, None, None, null_passes, step)  # other timestamps, documents
        return cls(exact, length if exact is str else None, bind, null_passes, step)


def _exact_type(codec: ColumnCodec) -> type | None:
    """The JSON type a column's values need no decoding from (int for an integer column)."""
    return _AS_IS.get(codec.decode) if codec.decode is not None else codec.expected


def _bind_only(bind: Convert | None) -> Convert:
    if bind is None:
        return _same
    return bind


def _same(value: Any) -> Any:
    return value


def _column_step(codec: ColumnCodec, bind: Convert | None, *, key: bool) -> Convert:
    """One column's check, decoding and binding, as one function of the file's value.

    The general path is :meth:`ColumnCodec.check` (which also words the error); columns
    whose values need no check (documents) or only a decoding skip it.
    """
    name, expected, length, decode = codec.name, codec.expected, codec.max_length, codec.decode
    null = _null_step(name, nullable=codec.nullable and not key, key=key)

    def general(value: Any) -> Any:
        if value is None:
            return null()
        try:
            checked = codec.check(value)
        except DecodeError as exc:
            raise DecodeError(f"column {name}: {exc}") from None
        return checked if bind is None else bind(checked)

    # Values of the type a column takes as is (a str for a text column, a timestamp's
    # text where the type binds from text) are handled by the loader itself (see
    # _Shape); its step sees only the others, and every value on the loader's rare
    # fallback: the general path, which checks and words the error.
    exact = _exact_type(codec)
    if exact is not None or (decode is _datetime_in and hasattr(bind, "from_text")):
        return general
    if decode is not None and expected is None and length is None:
        convert = decode

        def decoded(value: Any) -> Any:
            if value is None:
                return null()
            try:
                value = convert(value)
            except DecodeError as exc:
                raise DecodeError(f"column {name}: {exc}") from None
            return value if bind is None else bind(value)

        return decoded
    if decode is None:  # JSON documents, and types passed through as JSON
        # A type with a faster route from parsed JSON (_SQLiteJSON: orjson).
        bind = getattr(bind, "from_json", bind)

        def document(value: Any) -> Any:
            if value is None:
                return null()
            return value if bind is None else bind(value)

        return document
    return general


def _null_step(name: str, *, nullable: bool, key: bool) -> Callable[[], None]:
    def null() -> None:
        if key:
            raise DecodeError(f"the key column {name} is missing")
        if not nullable:
            raise DecodeError(f"column {name}: must not be null")

    return null


#: Decodings that return a value of this exact JSON type unchanged (only check it).
_AS_IS: dict[Convert, type] = {_int_in: int, _bool_in: bool, _float_in: float}
