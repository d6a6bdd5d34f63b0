"""Listings decode a column at a time; rows written by hand must still read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, HITLSession
from arquivo.db.types import JSONText, UTCDateTime


def test_a_listing_reads_hand_written_rows_exactly(store: Arquivo) -> None:
    # Enough rows for the column-at-a-time path, with the values that make it fall back:
    # a timestamp carrying its own offset, JSON scalars, a string, nested data and NULLs.
    base = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    payloads = [{"n": 1}, [1, [2, {"x": None}]], "text, with a comma", 3.5, True, None, 0, {}]
    rows = [
        {
            "id": f"s{i}",
            "workflow_id": "wf",
            "step_id": str(i),
            "status": "pending",
            "kind": "approval",
            "request_data": payload,
            "created_at": base + timedelta(minutes=i),
            "updated_at": base,
        }
        for i, payload in enumerate(payloads * 2)
    ]
    with store.engine.begin() as connection:
        connection.execute(sa.insert(HITLSession.__table__), rows)
        # A timestamp with an explicit offset, as another tool might have written it.
        connection.exec_driver_sql(
            "UPDATE hitl_sessions SET created_at = '2026-01-01 14:30:00+02:00' WHERE id = 's0'"
        )

    listed = {r.id: r for r in store.hitl.pending(workflow_id="wf")}
    assert len(listed) == len(rows)
    for row in rows:
        assert listed[row["id"]].request_data == row["request_data"]
        assert listed[row["id"]].created_at.tzinfo is UTC
    assert listed["s0"].created_at == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert listed["s5"].created_at == base + timedelta(minutes=5)
    assert all(r.response_data is None for r in listed.values())


def test_column_processors_match_value_processors() -> None:
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    decode = JSONText().result_processor(dialect, None)
    texts = ['{"a": 1}', None, "2", '"s"', "[1, 2]"]
    assert decode.many(texts) == [decode(t) for t in texts]  # type: ignore[attr-defined]
    # A value that is not one JSON document falls back and fails like the single decoder.
    bad = ['{"a": 1}', "1, 2"]
    with pytest.raises(ValueError, match="Extra data"):
        decode.many(bad)  # type: ignore[attr-defined]
    parse = UTCDateTime().result_processor(dialect, None)
    assert parse is not None
    stamps = ["2026-01-01 10:00:00.000001", None, "2026-01-01 10:00:00+01:00"]
    assert parse.many(stamps) == [parse(s) for s in stamps]  # type: ignore[attr-defined]
    assert parse.many(stamps)[2] == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # type: ignore[attr-defined]
