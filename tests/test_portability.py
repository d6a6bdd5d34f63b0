"""Export and import: round trips across engines, one user's data, bad files, idempotence."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arquivo import Arquivo, ValidationError
from arquivo.portability import Progress, export_data, import_data, schema_tables
from conftest import Backend, fresh_database


@pytest.fixture
def other_backend(
    request: pytest.FixtureRequest, backend: Backend, tmp_path: Path
) -> Iterator[Backend]:
    """A fresh database on the other engine than ``backend``."""
    name = "postgresql" if backend.name == "sqlite" else "sqlite"
    folder = tmp_path / "other"
    folder.mkdir()
    for url in fresh_database(request, name, folder):
        yield Backend(name, url)


def fill(store: Arquivo) -> None:
    """A little of everything, with the values most likely to drift between engines."""
    store.preferences.set("u1", "theme", "dark")
    store.preferences.set("u1", "limits", {"tokens": 4096, "ratio": 0.1, "nested": [1, None, "é"]})
    store.preferences.set("u2", "theme", "light")
    for i in range(30):
        store.conversations.append(
            "u1",
            f"s{i % 3}",
            "user" if i % 2 else "assistant",
            f'message {i} ✓ "quoted"\n',
            model="qwen",
            extra_data={"i": i, "f": i / 7} if i % 4 else None,
        )
    store.conversations.append("u2", "other", "user", "hello from u2")
    store.metrics.record("chat", 1234.5678901234, extra_data={"model": "qwen"})
    store.metrics.record("embed", 0.000123, success=False, error="timeout")
    store.agents.upsert("coder", "qwen2.5-coder", instructions="Be brief.", tools=["fs"])
    store.agents.upsert("coder", "qwen3", instructions="Be briefer.", tools=[{"name": "fs"}])
    first = store.hitl.request("wf", "step", {"tool": "rm", "args": ["-rf"]}, user_id="u1")
    store.hitl.approve(first.id, actor="ana", response_data={"ok": True})
    store.hitl.request("wf", "step2", None, user_id="u2", kind="input")
    store.hitl.request("wf", "step3", [1, 2], expires_in=3600)


def dump(store: Arquivo) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order, as Python values."""
    with store.engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(
                    sa.select(*table.columns).order_by(*table.primary_key.columns)
                )
            ]
            for table in schema_tables()
        }


def rows_of(path: Path) -> list[dict[str, Any]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines][1:]


def test_round_trip_to_the_other_engine_and_back(
    backend: Backend, other_backend: Backend, tmp_path: Path
) -> None:
    there = tmp_path / "there.jsonl.gz"
    back = tmp_path / "back.jsonl"
    with Arquivo.open(backend.url) as source:
        fill(source)
        original = dump(source)
        report = export_data(source, there)
    assert report.rows["conversation_history"] == 31
    assert report.rows["agent_versions"] == 2
    assert report.total_rows == sum(len(rows) for rows in original.values())
    assert report.bytes == there.stat().st_size
    assert there.read_bytes()[:2] == b"\x1f\x8b"  # .gz compresses

    with Arquivo.open(other_backend.url) as target:
        imported = import_data(target, there)
        assert imported.source_dialect == backend.name
        assert dict(imported.inserted) == {k: len(v) for k, v in original.items()}
        assert set(imported.skipped.values()) == {0}
        assert dump(target) == original

        again = import_data(target, there)
        assert set(again.inserted.values()) == {0}
        assert dict(again.skipped) == dict(imported.inserted)
        assert dump(target) == original

        # The engine's own ids continue after the imported ones (PostgreSQL sequences).
        largest = max(row[0] for row in original["conversation_history"])
        assert target.conversations.append("u9", "s", "user", "new").id > largest
        target.preferences.set("u9", "k", 1)
        export_data(target, back)

    # ...and back again: the same rows, value for value.
    assert [line for line in rows_of(back) if line.get("row", {}).get("user_id") != "u9"][
        :-1
    ] == rows_of(there)[:-1]


def test_one_users_export_holds_their_rows_and_their_sessions_actions(
    store: Arquivo, tmp_path: Path
) -> None:
    fill(store)
    path = tmp_path / "u1.jsonl"
    report = export_data(store, path, user_id="u1")
    lines = rows_of(path)
    tables = {line["table"] for line in lines[:-1]}
    assert tables == {"user_preferences", "conversation_history", "hitl_sessions", "hitl_actions"}
    assert all(line["row"]["user_id"] == "u1" for line in lines[:-1] if "user_id" in line["row"])
    session_ids = {line["row"]["id"] for line in lines if line.get("table") == "hitl_sessions"}
    actions = [line["row"] for line in lines if line.get("table") == "hitl_actions"]
    assert len(session_ids) == 1
    assert len(actions) >= 2
    assert {action["session_id"] for action in actions} == session_ids
    assert report.rows["conversation_history"] == 30
    assert report.rows["system_metrics"] == report.rows["agents"] == 0
    assert report.user_id == "u1"
    assert lines[-1] == {"end": True, "rows": dict(report.rows)}


def test_progress_reports_every_table(store: Arquivo, tmp_path: Path) -> None:
    fill(store)
    seen: list[Progress] = []
    export_data(store, tmp_path / "all.jsonl", progress=seen.append)
    finals = {event.table: event for event in seen if event.done == event.total}
    assert set(finals) == {table.name for table in schema_tables()}
    assert finals["conversation_history"].total == 31
    seen.clear()
    with Arquivo.open(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        import_data(copy, tmp_path / "all.jsonl", progress=seen.append, batch_size=7)
    done = [e.done for e in seen if e.stage == "import" and e.table == "conversation_history"]
    assert done == [7, 14, 21, 28, 31]


def _header(**changes: Any) -> str:
    header = {
        "format": "arquivo-export",
        "format_version": 1,
        "revision": None,
        "dialect": "sqlite",
        "user_id": None,
    }
    return json.dumps({**header, **changes})


def _pref(id_: int, **changes: Any) -> str:
    row = {"id": id_, "user_id": "u", "key": f"k{id_}", "value": id_}
    return json.dumps({"table": "user_preferences", "row": {**row, **changes}})


def _end(**rows: int) -> str:
    return json.dumps({"end": True, "rows": rows})


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        ([_header(), _pref(1), "{not json", _end(user_preferences=2)], 3, "not JSON"),
        ([_header(), _pref(1), _pref(2)], 4, "cut short"),
        ([_header(), _pref(1), _end(user_preferences=5)], 3, "end line counts"),
        ([json.dumps({"hello": 1}), _end()], 1, "not an Arquivo export header"),
        ([_header(format_version=99), _end()], 1, "format version 99"),
        ([_header(revision="9999"), _end()], 1, "unknown to this Arquivo"),
        ([_header(), json.dumps({"table": "nope", "row": {}}), _end()], 2, "unknown table"),
        ([_header(), _pref(1, color=1), _end(user_preferences=1)], 2, "no column 'color'"),
        ([_header(), _pref(1, id="one"), _end(user_preferences=1)], 2, "expected an integer"),
        ([_header(), _pref(1, key=None), _end(user_preferences=1)], 2, "must not be null"),
        ([_header(), _pref(1, key="k" * 300), _end(user_preferences=1)], 2, "longer than 255"),
        ([_header(), _pref(1, created_at="yesterday"), _end(user_preferences=1)], 2, "ISO 8601"),
        ([_header(), _pref(1), _end(user_preferences=1), _pref(2)], 4, "more after the end"),
    ],
)
def test_a_bad_file_names_its_line_and_writes_nothing(
    store: Arquivo, tmp_path: Path, lines: list[str], line: int, fragment: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError) as caught:
        import_data(store, path)
    assert fragment in caught.value.message
    assert f"line {line}:" in caught.value.message
    assert caught.value.hint
    assert store.preferences.all("u") == {}


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        ([_header(), _pref(1), _pref(2), "{not json", _end(user_preferences=3)], 4, "not JSON"),
        ([_header(), _pref(1), _pref(2), _pref(3, id="x"), _end()], 4, "expected an integer"),
        ([_header(), _pref(1), _pref(2), _end(user_preferences=5)], 4, "end line counts"),
        ([_header(), _pref(1), _pref(2)], 4, "cut short"),
    ],
)
def test_an_atomic_import_checks_as_it_writes_and_rolls_everything_back(
    store: Arquivo, tmp_path: Path, lines: list[str], line: int, fragment: str
) -> None:
    # One pass: rows before the bad line were already inserted (batches of 1), in the
    # transaction that the error rolls back.
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError) as caught:
        import_data(store, path, atomic=True, batch_size=1)
    assert fragment in caught.value.message
    assert f"line {line}:" in caught.value.message
    assert store.preferences.all("u") == {}
    good = [_header(), _pref(1), _pref(2), _end(user_preferences=2)]
    path.write_text("\n".join(good) + "\n")
    assert import_data(store, path, atomic=True, batch_size=1).inserted["user_preferences"] == 2
    assert import_data(store, path, atomic=True).skipped["user_preferences"] == 2
    assert len(store.preferences.all("u")) == 2


def test_a_cut_short_gzip_file_is_refused(store: Arquivo, tmp_path: Path) -> None:
    fill(store)
    path = tmp_path / "all.jsonl.gz"
    export_data(store, path)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with Arquivo.open(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        with pytest.raises(ValidationError, match=r"cut short|damaged"):
            import_data(copy, cut)
        assert dump(copy)["conversation_history"] == []


@pytest.mark.parametrize("atomic", [False, True])
def test_a_row_the_database_refuses_is_named_by_its_line(
    store: Arquivo, tmp_path: Path, atomic: bool
) -> None:
    action = {"id": "a1", "session_id": "missing", "action_type": "created"}
    path = tmp_path / "orphan.jsonl"
    path.write_text(
        "\n".join(
            [
                _header(),
                _pref(1),
                _pref(2),
                json.dumps({"table": "hitl_actions", "row": action}),
                _end(user_preferences=2, hitl_actions=1),
            ]
        )
    )
    with pytest.raises(ValidationError, match="line 4") as caught:
        import_data(store, path, atomic=atomic)
    assert "hitl_actions" in caught.value.message
    # Batches before the refused one stay imported, unless the import was atomic.
    assert len(store.preferences.all("u")) == (0 if atomic else 2)


def test_an_unwritable_destination_leaves_nothing_behind(store: Arquivo, tmp_path: Path) -> None:
    from arquivo import StorageFullError

    with pytest.raises(StorageFullError):
        export_data(store, tmp_path / "no" / "such" / "dir.jsonl")
    assert not (tmp_path / "no").exists()
    (tmp_path / "x.jsonl").write_text("old")
    export_data(store, tmp_path / "x.jsonl")
    assert json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])["format"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_cli_exports_and_imports(sqlite_backend: Backend, tmp_path: Path) -> None:
    from test_cli import run, run_json

    with Arquivo.open(sqlite_backend.url) as store:
        fill(store)
    path = tmp_path / "cli.jsonl.gz"
    exported = run_json("--url", sqlite_backend.url, "export", "--to", str(path))
    assert exported["rows"]["conversation_history"] == 31
    one = run_json(
        "--url", sqlite_backend.url, "export", "--to", str(tmp_path / "u2.jsonl"), "--user", "u2"
    )
    assert one["total_rows"] == 4  # a preference, a message, a HITL session and its action
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    first = run_json("--url", copy, "import", str(path))
    assert first["inserted"] == exported["rows"]
    second = run("--url", copy, "import", str(path))
    assert second.returncode == 0, second.stderr
    assert f"0 rows inserted, {exported['total_rows']} skipped" in second.stdout
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    ranged = run_json(
        "--url", f"sqlite:///{tmp_path / 'ranged.db'}", "import", str(plain), "--jobs", "3"
    )
    assert ranged["inserted"] == exported["rows"]
    assert run("--url", copy, "import", str(plain), "--jobs", "0").returncode == 2
    (tmp_path / "bad.jsonl").write_text('{"format": "arquivo-export", "format_version": 1}\n')
    bad = run("--url", copy, "import", str(tmp_path / "bad.jsonl"))
    assert bad.returncode == 1
    assert "cut short" in bad.stderr
    assert "hint:" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_benchmark_runs_and_prints_its_figures() -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "portability.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rows", "300,600", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") :])
    names = [row["name"] for row in report["results"]]
    assert names == [
        "export sqlite 300 rows",
        "import sqlite 300 rows",
        "import --atomic sqlite 300 rows",
        "export sqlite 600 rows",
        "import sqlite 600 rows",
        "import --atomic sqlite 600 rows",
    ]
    assert all(row["rows_per_s"] > 0 and row["naive_rows_per_s"] > 0 for row in report["results"])
