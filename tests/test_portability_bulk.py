"""The import's bulk paths: many batches, odd JSON, rows refused or skipped inside a batch.

On PostgreSQL a batch goes through COPY into a staging table and one
INSERT ... SELECT ... ON CONFLICT DO NOTHING; on SQLite through ``executemany``. Both
must keep the import's promises: idempotent, types kept, bad lines named.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, ValidationError
from arquivo.models import ConversationHistory, SystemMetric
from arquivo.portability import export_data, import_data
from conftest import Backend
from test_portability import _end, _header, _pref, dump


def _line(table: str, row: dict[str, Any]) -> str:
    return json.dumps({"table": table, "row": row}, ensure_ascii=False)


@pytest.mark.parametrize("atomic", [False, True])
def test_many_batches_round_trip_and_a_second_import_adds_nothing(
    store: Arquivo, tmp_path: Path, atomic: bool
) -> None:
    start = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with store.transaction() as session:
        session.execute(
            sa.insert(ConversationHistory),
            [
                {
                    "user_id": f"u{i % 3}",
                    "session_id": f"s{i % 5}",
                    "role": "user",
                    "content": f"line {i}\twith a tab, a backslash \\ and \\N, ✓\n",
                    "extra_data": {"i": i, "big": 2**70, "nested": [None, "é"]} if i % 2 else None,
                    "created_at": start + timedelta(seconds=i, microseconds=i),
                }
                for i in range(230)
            ],
        )
        session.execute(
            sa.insert(SystemMetric),
            [
                {
                    "operation": "op",
                    "duration_ms": [0.1, 1e300, -0.0, float(i)][i % 4],
                    "success": i % 3 != 0,
                    "created_at": start,
                }
                for i in range(40)
            ],
        )
    original = dump(store)
    path = tmp_path / "all.jsonl"
    export_data(store, path)
    copy_path = tmp_path / "copy.db"
    with Arquivo.open(f"sqlite:///{copy_path}") as copy:
        first = import_data(copy, path, batch_size=17, atomic=atomic)
        assert first.inserted["conversation_history"] == 230
        assert dump(copy) == original
    # Back into a fresh database of the fixture's kind, through its own bulk path.
    with store.transaction() as session:
        session.execute(sa.delete(ConversationHistory))
        session.execute(sa.delete(SystemMetric))
    report = import_data(store, path, batch_size=17, atomic=atomic)
    assert report.inserted["conversation_history"] == 230
    assert report.inserted["system_metrics"] == 40
    assert dump(store) == original
    again = import_data(store, path, batch_size=17, atomic=atomic)
    assert sum(again.inserted.values()) == 0
    assert again.skipped["conversation_history"] == 230
    assert dump(store) == original


def test_rows_already_there_are_skipped_inside_a_batch(store: Arquivo, tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    lines = [_header(), *(_pref(i) for i in range(1, 11)), _end(user_preferences=10)]
    path.write_text("\n".join(lines) + "\n")
    # Takes id 1 (the file's k1) and the unique key (u, k4) of the file's id 4.
    store.preferences.set("u", "k4", "kept")
    report = import_data(store, path)
    assert report.inserted["user_preferences"] == 8
    assert report.skipped["user_preferences"] == 2
    values = store.preferences.all("u")
    assert values["k4"] == "kept"
    assert "k1" not in values
    assert values["k7"] == 7


def test_json_beyond_what_a_fast_parser_takes_still_imports(store: Arquivo, tmp_path: Path) -> None:
    # Integers beyond 64 bits inside a JSON document: the json module reads the line.
    path = tmp_path / "big.jsonl"
    big = 123456789012345678901234567890
    lines = [
        _header(),
        "",  # a blank line is skipped
        _pref(1, value={"n": big, "s": "ação"}),
        _pref(2, value=big),
        _end(user_preferences=2),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_data(store, path).inserted["user_preferences"] == 2
    assert store.preferences.all("u") == {"k1": {"n": big, "s": "ação"}, "k2": big}


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"table": "user_preferences", "row": {"user_id": "u", "key": "k"}}', "key column id"),
        (b'{"table": "user_preferences", "row": {"id": 1, "user_id": "\xff"}}', "not UTF-8"),
        (
            b'{"table": "user_preferences", "row": {"id": 1, "user_id": "u", "key": 5}}',
            "column key: expected str",
        ),
        (
            b'{"table": "system_metrics", "row": {"id": 1, "operation": "o", '
            b'"duration_ms": "fast", "success": true}}',
            "column duration_ms: expected a number",
        ),
        (
            b'{"table": "system_metrics", "row": {"id": 1, "operation": "o", '
            b'"duration_ms": 1, "success": 1}}',
            "column success: expected true or false",
        ),
    ],
)
@pytest.mark.parametrize("atomic", [False, True])
def test_a_bad_value_is_named_by_line_and_column_in_both_modes(
    store: Arquivo, tmp_path: Path, line: bytes, fragment: str, atomic: bool
) -> None:
    path = tmp_path / "bad.jsonl"
    table = json.loads(line.decode("utf-8", "replace"))["table"]
    body = [_header().encode(), _pref(1).encode(), line, _end(**{table: 1}).encode()]
    path.write_bytes(b"\n".join(body) + b"\n")
    with pytest.raises(ValidationError) as caught:
        import_data(store, path, atomic=atomic, batch_size=1)
    assert fragment in caught.value.message
    assert "line 3:" in caught.value.message
    assert store.preferences.all("u") == {}


def test_timestamps_in_any_iso_form_are_stored_as_the_same_instant(
    store: Arquivo, tmp_path: Path
) -> None:
    texts = [
        "2026-05-01T10:00:00+00:00",  # what an export writes: stored by slicing on SQLite
        "2026-05-01T10:00:00.250000+00:00",
        "2026-05-01T12:00:00+02:00",  # another offset: converted to UTC
        "2026-05-01T10:00:00",  # no offset: taken as UTC
        "2026-05-01 10:00:00.5+00:00",
    ]
    path = tmp_path / "times.jsonl"
    lines = [_pref(i, created_at=text) for i, text in enumerate(texts, 1)]
    path.write_text("\n".join([_header(), *lines, _end(user_preferences=len(texts))]) + "\n")
    import_data(store, path, batch_size=2)
    with store.engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT id, created_at FROM user_preferences ORDER BY id")
        ).all()
    expected = [datetime.fromisoformat(text) for text in texts]
    expected = [value if value.tzinfo else value.replace(tzinfo=UTC) for value in expected]
    as_read = {row.id: row.created_at for row in stored}
    for number, value in enumerate(expected, 1):
        read = as_read[number]
        if isinstance(read, str):  # SQLite's stored text: the UTC layout, always the same
            assert read == value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            assert read == value


def test_the_default_import_reads_its_file_once(
    store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check pass keeps the converted rows in a scratch file, so the write pass
    # needs neither a second parse nor a file that stays the same meanwhile.
    from arquivo.portability import reading

    opened: list[Path] = []
    real = reading.open_binary

    def counting(path: Path) -> Any:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(reading, "open_binary", counting)
    path = tmp_path / "prefs.jsonl"
    lines = [_header(), *(_pref(i) for i in range(1, 41)), _end(user_preferences=40)]
    path.write_text("\n".join(lines) + "\n")
    report = import_data(store, path, batch_size=7)
    assert report.inserted["user_preferences"] == 40
    assert opened == [path]
    assert store.preferences.all("u")["k40"] == 40


@pytest.mark.parametrize("atomic", [False, True])
def test_json_documents_keep_their_values_whatever_they_hold(
    store: Arquivo, tmp_path: Path, atomic: bool
) -> None:
    # Documents from the file are written by orjson when it writes what json.loads
    # reads back equal; null (NaN and infinities come out of orjson as null), integers
    # beyond 64 bits and lone surrogates take the json module's route.
    documents: list[Any] = [
        {"tokens": 12, "cost": 0.25, "tags": ["a", "é", "😀"], "deep": {"x": [1, [2, [3]]]}},
        {"none": None, "empty": {}, "list": []},
        {"big": 2**70, "neg": -(2**65)},
        [1.5, 2.25, "x", False, None],
        {'key with "quotes"': "\\ back \n line \u2028"},
        "plain text",
        7,
        2.5,
        True,
    ]
    # SQLite's JSON text only: JSONB refuses these (PostgreSQL says so, naming the line)
    # or keeps numbers as numeric (1e300 comes back an integer).
    sqlite = store.dialect == "sqlite"
    if sqlite:
        documents += [
            {"inf": float("inf"), "minus": float("-inf")},
            {"lone": "\ud800 x"},
            [-0.0, 1e300, 5e-324],
        ]
    path = tmp_path / "docs.jsonl"
    lines = [
        _header(),
        *(_pref(i, value=doc) for i, doc in enumerate(documents, 1)),
        _pref(99).replace('"value": 99', '"value": {"nan": NaN}' if sqlite else '"value": 0'),
        _end(user_preferences=len(documents) + 1),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_data(store, path, atomic=atomic)
    assert report.inserted["user_preferences"] == len(documents) + 1
    values = store.preferences.all("u")
    for i, doc in enumerate(documents, 1):
        assert values[f"k{i}"] == doc, doc
        assert type(values[f"k{i}"]) is type(doc)
    if sqlite:
        nan = values["k99"]["nan"]
        assert isinstance(nan, float)
        assert math.isnan(nan)


def test_rows_of_many_type_signatures_are_checked_alike(
    store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loader remembers a few signatures (the types of a row's values); rows beyond
    # what it remembers are converted the same way, and a bad one is still named.
    from arquivo.portability import codec

    monkeypatch.setattr(codec, "_MAX_SIGNATURES", 2)
    rows = []
    for i in range(1, 25):
        rows.append(
            {
                "id": i,
                "user_id": "u",
                "session_id": "s",
                "role": "user",
                "content": f"c{i}",
                "model": None if i % 2 else "m",
                "workspace_path": None if i % 3 else "/w",
                "extra_data": [None, {"a": i}, [i], "t", i, 1.5][i % 6],
                "created_at": f"2026-03-01T12:00:{i:02d}+00:00",
            }
        )
    path = tmp_path / "sig.jsonl"
    lines = [_header(), *(_line("conversation_history", row) for row in rows)]
    path.write_text("\n".join([*lines, _end(conversation_history=24)]) + "\n")
    assert import_data(store, path).inserted["conversation_history"] == 24
    stored = {m.id: m for m in store.conversations.history("u", "s")}
    for row in rows:
        message = stored[row["id"]]
        assert (message.model, message.workspace_path) == (row["model"], row["workspace_path"])
        assert message.extra_data == row["extra_data"]
    bad = dict(rows[0], id=100, model="m" * 256)
    path.write_text(
        "\n".join([*lines, _line("conversation_history", bad), _end(conversation_history=25)])
        + "\n"
    )
    with pytest.raises(ValidationError, match=r"line 26: .*column model: longer than 255"):
        import_data(store, path)


def test_a_bulk_load_gives_its_connection_back_as_it_was(sqlite_backend: Backend) -> None:
    from arquivo.db.dialects import get_dialect

    with Arquivo.open(sqlite_backend.url) as store, store.engine.connect() as connection:
        support = get_dialect(store.dialect)
        raw: Any = connection.connection.driver_connection
        pragmas = ("cache_size", "wal_autocheckpoint")
        before = [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas]
        with support.bulk_loading(connection):
            during = [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas]
            assert during == [-16384, 20_000]
            raw.execute(
                "INSERT INTO system_metrics (operation, duration_ms, success) VALUES ('op', 1.0, 1)"
            )
        assert [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas] == before
        # The WAL was folded into the database file on the way out: a reader of the file
        # alone (immutable: no WAL) sees the row.
        path = raw.execute("PRAGMA database_list").fetchone()[2]
        with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as alone:
            assert alone.execute("SELECT count(*) FROM system_metrics").fetchone()[0] == 1


def test_by_default_batches_share_transactions_sized_by_time(
    store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a batch size, consecutive batches of a table are joined into transactions
    # holding the write lock about _HOLD_S (here: forever, so up to the cap of 28 rows);
    # a given batch size keeps one transaction per batch.
    from arquivo.portability import importer

    monkeypatch.setattr(importer, "DEFAULT_BATCH", 7)
    monkeypatch.setattr(importer, "_HOLD_S", 1e6)
    monkeypatch.setattr(importer, "_MAX_TRANSACTION_ROWS", 28)
    path = tmp_path / "prefs.jsonl"
    lines = [_header(), *(_pref(i) for i in range(1, 41)), _end(user_preferences=40)]
    path.write_text("\n".join(lines) + "\n")
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _connection: commits.append(1))
    # 40 rows in batches of 7: the first alone (timed), then 4 batches (28 rows), then 5;
    # and one more commit, for the sequences.
    assert import_data(store, path).inserted["user_preferences"] == 40
    grown = len(commits)
    commits.clear()
    store.preferences.clear("u")
    assert import_data(store, path, batch_size=7).inserted["user_preferences"] == 40
    assert (grown, len(commits)) == (4, 7)


@pytest.mark.parametrize("atomic", [False, True])
def test_rows_whose_other_unique_key_is_taken_are_skipped_whatever_the_route(
    store: Arquivo, tmp_path: Path, atomic: bool
) -> None:
    # On PostgreSQL a batch whose ids are all free is copied straight into the table;
    # a unique key taken after all ((user_id, key) here, or one id twice in the file)
    # sends the batch through the staging table, which skips those rows.
    store.preferences.set("u", "k2", "already here")
    lines = [_pref(i + 100) for i in range(1, 6)]
    lines[1] = _pref(102, key="k2")  # (u, k2) is taken under another id
    lines.append(_pref(103))  # the same id twice in the file
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join([_header(), *lines, _end(user_preferences=len(lines))]) + "\n")
    report = import_data(store, path, atomic=atomic)
    assert report.inserted["user_preferences"] == 4
    assert report.skipped["user_preferences"] == 2
    stored = store.preferences.all("u")
    assert stored["k2"] == "already here"
    assert {key: stored[key] for key in ("k101", "k103", "k104", "k105")} == {
        "k101": 101,
        "k103": 103,
        "k104": 104,
        "k105": 105,
    }
    again = import_data(store, path, atomic=atomic)
    assert again.inserted["user_preferences"] == 0
