"""Portable column types: one definition, the best native type on each database."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from orjson import JSONEncodeError
from orjson import dumps as orjson_dumps
from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import ischema_names as pg_ischema_names
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

__all__ = [
    "BigIntPK",
    "Float32Array",
    "JSONText",
    "JSONType",
    "UTCDateTime",
    "Vector",
    "as_float32",
    "batched",
    "decode_float4_arrays",
    "register_psycopg_vectors",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def export_utc_layout(text: str) -> bool:
    """Whether ``text`` is a timestamp in the layout every export writes:
    ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`` (a bulk load passes it on without formatting;
    the caller has already parsed it)."""
    return (
        (len(text) == 25 or (len(text) == 32 and text[19] == "."))
        and text.endswith("+00:00")
        and text[10] == "T"
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
    )


def json_text(value: Any) -> str | None:
    """The JSON text of a value just parsed from JSON, written by orjson (10x faster than
    the json module, read back equal by it); ``None`` where that is not sure: orjson
    refuses the value (integers beyond 64 bits, lone surrogates, very deep nesting) or
    its text shows null, which is how orjson writes NaN and infinities."""
    try:
        out = orjson_dumps(value)
    except JSONEncodeError:
        return None
    return None if b"null" in out else out.decode()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone-aware type and PostgreSQL's ``timestamptz`` returns the
    session's zone; normalising both to UTC keeps ordering and comparisons right.
    Naive values are taken to be UTC already (as ``datetime.utcnow()`` and SQLite's
    ``CURRENT_TIMESTAMP`` produce).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite stores text; one C-level isoformat gives SQLAlchemy's own layout
        # ("YYYY-MM-DD HH:MM:SS.ffffff") at a fraction of the cost of its formatter.
        def process(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, datetime):
                raise TypeError(f"expected a datetime, got {type(value).__name__}")
            if value.tzinfo is not UTC and value.tzinfo is not None:
                value = value.astimezone(UTC)
            # [:26] drops the "+00:00" of an aware value: the column holds UTC by contract.
            text: str = value.isoformat(" ", "microseconds")
            return text[:26]

        fromisoformat = datetime.fromisoformat

        def from_text(text: str) -> str | None:
            # An ISO 8601 text (an import's timestamp) straight to the stored layout:
            # checked by the parse, and for the UTC form every export writes
            # ("YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00") sliced instead of formatted again.
            value = fromisoformat(text)  # ValueError: not a timestamp
            if export_utc_layout(text):
                if len(text) == 32:
                    return text[:10] + " " + text[11:26]
                return text[:10] + " " + text[11:19] + ".000000"
            return process(value)

        # Found by bulk loaders that hold text (see arquivo.portability.codec).
        process.from_text = from_text  # type: ignore[attr-defined]
        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        native = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            if native is not None:
                return super().result_processor(dialect, coltype)

            # The driver returns aware datetimes in the session's zone: normalise to UTC.
            def to_utc(value: Any) -> datetime | None:
                if value is None or value.tzinfo is UTC:
                    return value  # type: ignore[no-any-return]
                if value.tzinfo is None:
                    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
                return value.astimezone(UTC)  # type: ignore[no-any-return]

            return batched(to_utc, lambda values: [to_utc(v) for v in values])

        fromisoformat = datetime.fromisoformat

        def parse(value: Any) -> datetime | None:
            if value is None:
                return None
            # Also reads SQLite's CURRENT_TIMESTAMP ("YYYY-MM-DD HH:MM:SS") from raw inserts.
            parsed = fromisoformat(value)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)

        def parse_many(values: Sequence[Any]) -> list[datetime | None]:
            # Stored values are naive UTC by contract: parsed with an explicit "+00:00" they
            # come out aware in one C call. A value carrying its own offset falls back.
            try:
                return [None if v is None else fromisoformat(v + "+00:00") for v in values]
            except (TypeError, ValueError):
                return [parse(v) for v in values]

        return batched(parse, parse_many)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite stores text; drop the offset so every row has the same sortable shape.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json_decoder() -> Callable[[Any], Any]:
    loads = json.loads

    def decode(value: Any) -> Any:
        # Raw SQL may have stored a bare number, which SQLite hands back as one.
        return loads(value) if isinstance(value, (str, bytes)) else value

    def decode_many(values: Sequence[Any]) -> list[Any]:
        # One parse of "[v1,v2,...]" instead of one per value. Anything unusual (a bare
        # number, a text that is not one JSON value) falls back to value by value.
        try:
            decoded = loads("[" + ",".join(["null" if v is None else v for v in values]) + "]")
        except (TypeError, ValueError):
            return [decode(v) for v in values]
        if not isinstance(decoded, list) or len(decoded) != len(values):
            return [decode(v) for v in values]
        return decoded

    return batched(decode, decode_many)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _SQLiteJSON(TypeDecorator[Any]):
    """JSON text on SQLite that round-trips exactly, decoded in one call per value, or
    per column in listings.

    SQLAlchemy's own SQLite JSON decoder wraps ``json.loads`` in two more layers; on a
    listing of a thousand rows that is a measurable share of the call. (A decorator,
    because a plain ``JSON`` subclass is swapped for the dialect's own class.)
    """

    impl = JSON(none_as_null=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        text = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        dumps = json.dumps

        def process(value: Any) -> Any:
            # The column's NUMERIC affinity turns JSON text that reads as a number into an
            # INTEGER or REAL: 1.0 came back as 1, -0.0 as 0, 2**64 as a rounded float.
            # As a BLOB the text is kept as written (the decoder reads both).
            if isinstance(value, float) or (
                isinstance(value, int)
                and not isinstance(value, bool)
                and not _INT64_MIN <= value <= _INT64_MAX
            ):
                return dumps(value).encode()
            return value if text is None else text(value)

        def from_json(value: Any) -> Any:
            # A document just parsed from JSON text holds only JSON's own types, for
            # which orjson writes (10x faster) a text that json.loads reads back equal.
            # Except: NaN and infinities, which orjson writes as null; a document
            # showing null takes the general path (so does anything orjson refuses:
            # integers beyond 64 bits, lone surrogates, very deep nesting).
            if type(value) is dict or type(value) is list:
                out = json_text(value)
                if out is not None:
                    return out
            return process(value)

        # Found by bulk loaders that hold parsed JSON (see arquivo.portability.codec).
        process.from_json = from_json  # type: ignore[attr-defined]
        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        return _json_decoder()


class JSONText(TypeDecorator[Any]):
    """A JSON document read as its text and decoded here (per column in listings).

    For selects of many JSON values: a driver decoding each value itself (psycopg's
    JSONB loader) costs several times one parse of the whole column.
    """

    impl = Text()
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        return _json_decoder()


def batched(
    one: Callable[[Any], Any], many: Callable[[Sequence[Any]], list[Any]]
) -> Callable[[Any], Any]:
    """The result processor ``one``, carrying ``many`` to process a whole column at once.

    :meth:`arquivo.db.fastpath.Prepared.rows` uses ``many`` for listings.
    """
    one.many = many  # type: ignore[attr-defined]
    return one


# JSONB on PostgreSQL (indexable, compact, compares by value); JSON text on SQLite.
# Python None is SQL NULL (not the JSON text 'null'), whichever way a row is written.
JSONType: TypeEngine[Any] = (
    JSON(none_as_null=True)
    .with_variant(_SQLiteJSON(), "sqlite")
    .with_variant(JSONB(none_as_null=True), "postgresql")
)

# SQLite only aliases the rowid (and so auto-increments) for exactly INTEGER PRIMARY KEY.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


class _PgVector(UserDefinedType[Any]):
    """pgvector's ``vector`` without a fixed dimension (each collection has its own)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"


# Reflection (Alembic's check, inspect()) then knows the column's type.
pg_ischema_names["vector"] = _PgVector


def as_float32(value: Any) -> Any:
    """A contiguous 1-D float32 array from numbers, or from little-endian float32 bytes
    (how an export file carries an embedding)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return np.frombuffer(value, dtype="<f4").astype(np.float32)
    return np.ascontiguousarray(value, dtype=np.float32).reshape(-1)


class Float32Array:
    """A float32 vector bound as PostgreSQL ``real[]`` in binary (see :class:`Vector`).

    ``real[]`` goes into a pgvector ``vector`` column through pgvector's assignment
    cast and into a plain ``real[]`` column as it is, so one bound value serves a
    database with pgvector and one without. Binary, because formatting 384 floats as
    text cost ~1 ms a row here: 9x the whole insert.
    """

    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        """Wrap ``values`` (a 1-D sequence of numbers, or float32 bytes) as float32."""
        self.values = as_float32(values)


_FLOAT4_OID, _FLOAT4_ARRAY_OID = 700, 1021
_registered = False


def register_psycopg_vectors() -> None:
    """Teach psycopg to send :class:`Float32Array` (idempotent; a no-op without psycopg).

    Registered on psycopg's global adapters, for this class only: nothing else a host
    application sends changes.
    """
    global _registered
    if _registered:
        return
    try:
        import psycopg
        from psycopg.adapt import Dumper
        from psycopg.pq import Format
    except ImportError:
        return

    header = struct.Struct("!iiiii")  # ndim, has-nulls, element oid, length, lower bound

    class _Float32ArrayDumper(Dumper):
        format = Format.BINARY
        oid = _FLOAT4_ARRAY_OID

        def dump(self, obj: Any) -> bytes:
            values = obj.values
            # Each element is (length 4, big-endian float4): array_recv's layout.
            out = np.empty(len(values), dtype=[("length", ">i4"), ("value", ">f4")])
            out["length"] = 4
            out["value"] = values
            return header.pack(1, 0, _FLOAT4_OID, len(values), 1) + out.tobytes()

    psycopg.adapters.register_dumper(Float32Array, _Float32ArrayDumper)
    _registered = True


def decode_float4_arrays(blobs: Sequence[bytes], width: int) -> Any:
    """A float32 matrix from ``array_send(real[])`` values, all of ``width`` elements."""
    if not blobs:
        return np.empty((0, width), dtype=np.float32)
    # 20 header bytes (one dimension), then (length, big-endian value) per element.
    body = b"".join(bytes(blob)[20:] for blob in blobs)
    pairs = np.frombuffer(body, dtype=[("length", ">i4"), ("value", ">f4")])
    return pairs["value"].astype(np.float32).reshape(len(blobs), width)


class Vector(TypeDecorator[Any]):
    """An embedding: float32 bytes on SQLite; on PostgreSQL pgvector's ``vector``, or
    ``real[]`` where the server has no pgvector.

    Binds a 1-D numpy array (or a sequence of floats); returns a float32 numpy array.
    The dimension is not part of the type: collections of different widths share a table,
    and PostgreSQL's per-collection ANN index casts to ``vector(N)``. On PostgreSQL the
    value is sent as binary ``real[]`` (:class:`Float32Array`), which both column types
    take, so writes need not know which one the database has.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(_PgVector())
        return dialect.type_descriptor(LargeBinary())

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "postgresql":
            register_psycopg_vectors()

            def to_array(value: Any) -> Float32Array | None:
                return None if value is None else Float32Array(value)

            return to_array

        def to_bytes(value: Any) -> bytes | None:
            if value is None:
                return None
            return bytes(as_float32(value).astype("<f4", copy=False).tobytes())

        return to_bytes

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        def from_db(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):  # pgvector's text form, "[1,2,3]"
                return np.array(value[1:-1].split(","), dtype=np.float32)
            if isinstance(value, list):  # real[]
                return np.array(value, dtype=np.float32)
            if isinstance(value, memoryview):
                value = value.tobytes()
            return np.frombuffer(value, dtype="<f4").astype(np.float32)

        return from_db
