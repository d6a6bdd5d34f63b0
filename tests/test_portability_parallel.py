"""Checking an import file in byte ranges on forked processes gives the one pass's result:
the same rows, and for a bad file the same error, naming the same line."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arquivo import Arquivo, ArquivoError, ValidationError
from arquivo.portability import Progress, export_data, import_data, parallel, reading
from arquivo.portability.codec import TableCodec
from arquivo.portability.scope import schema_tables
from conftest import Backend
from test_portability import dump, fill

pytestmark = pytest.mark.skipif(not parallel._can_fork(), reason="ranges are checked on Linux")


def _header() -> str:
    return json.dumps({"format": "arquivo-export", "format_version": 1, "dialect": "sqlite"})


def _pref(id_: int, **changes: Any) -> str:
    row = {"id": id_, "user_id": "u", "key": f"k{id_}", "value": id_}
    return json.dumps({"table": "user_preferences", "row": {**row, **changes}})


def _end(rows: int) -> str:
    return json.dumps({"end": True, "rows": {"user_preferences": rows}})


def _prefs(count: int) -> list[str]:
    return [_header(), *(_pref(i) for i in range(1, count + 1)), _end(count)]


@pytest.fixture
def sqlite_store(sqlite_backend: Backend) -> Iterator[Arquivo]:
    with Arquivo.open(sqlite_backend.url) as opened:
        yield opened


@pytest.mark.parametrize("jobs", [2, 3])
def test_a_file_checked_in_ranges_imports_what_one_pass_imports(
    store: Arquivo, tmp_path: Path, jobs: int
) -> None:
    path = tmp_path / "all.jsonl"
    with Arquivo.open(f"sqlite:///{tmp_path / 'source.db'}") as source:
        fill(source)
        for i in range(300):
            source.conversations.append(f"u{i % 7}", "bulk", "user", f"line {i}", model="m")
        original = dump(source)
        export_data(source, path)
    assert len(parallel._ranges(path, jobs)) == jobs

    report = import_data(store, path, jobs=jobs)
    assert dict(report.inserted) == {table: len(rows) for table, rows in original.items()}
    assert dump(store) == original
    again = import_data(store, path, jobs=jobs)
    assert set(again.inserted.values()) == {0}
    assert dict(again.skipped) == dict(report.inserted)
    # Ids continue after the imported ones (PostgreSQL's sequences are moved).
    largest = max(row[0] for row in original["conversation_history"])
    assert store.conversations.append("u9", "s", "user", "new").id > largest


def _bad_files() -> Iterator[Any]:
    """(lines, line named by the error, words of the error), in the first range and
    in the later ones (90 rows: jobs=3 cuts about every 30 lines)."""
    wrong = {
        "not JSON": "{not json",
        "expected an integer": _pref(999, id="x"),
        "unknown table": json.dumps({"table": "nope", "row": {}}),
        'expected {"table"': _header(),
        "not a JSON object": json.dumps({"table": "user_preferences", "row": [1]}),
    }
    for words, line in wrong.items():
        for index in (5, 45, 85):
            lines = _prefs(90)
            lines[index] = line
            yield pytest.param(lines, index + 1, words, id=f"{words}-line{index + 1}")
    for index in (10, 50, 89):
        lines = _prefs(90)
        lines.insert(index, _end(index - 1))  # an end line, then more rows
        yield pytest.param(lines, index + 2, "more after the end", id=f"end-at-{index + 1}")
    lines = _prefs(90)
    lines[-1] = _end(89)
    yield pytest.param(lines, 92, "end line counts", id="counts")
    yield pytest.param(_prefs(90)[:-1], 92, "cut short", id="cut-short")
    lines = _prefs(90)
    lines[70] = "\xff"  # written below as a byte that is not UTF-8
    yield pytest.param(lines, 71, "not UTF-8", id="not-utf8")


@pytest.mark.parametrize(("lines", "line", "words"), list(_bad_files()))
def test_a_bad_file_gets_the_one_pass_error_from_any_range(
    sqlite_store: Arquivo, tmp_path: Path, lines: list[str], line: int, words: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8").replace(b"\xc3\xbf", b"\xff") + b"\n")
    errors: list[ValidationError] = []
    for jobs in (1, 3):
        with pytest.raises(ValidationError) as caught:
            import_data(sqlite_store, path, jobs=jobs)
        errors.append(caught.value)
    serial, ranged = errors
    assert f"line {line}:" in serial.message
    assert words in serial.message
    assert ranged.message == serial.message
    assert ranged.hint == serial.hint
    assert sqlite_store.preferences.all("u") == {}


def test_blank_lines_are_not_rows_in_any_range(sqlite_store: Arquivo, tmp_path: Path) -> None:
    lines = _prefs(60)
    for index in (50, 30, 3):
        lines[index:index] = ["", "   "]
    path = tmp_path / "blank.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    report = import_data(sqlite_store, path, jobs=3)
    assert report.inserted["user_preferences"] == 60


def test_rows_listing_their_columns_in_another_order_keep_their_values(
    store: Arquivo, tmp_path: Path
) -> None:
    # The later ranges see the columns in another order first: their values are put in
    # this process's order when replayed.
    lines = _prefs(60)
    for index in range(20, 61):
        row = {"value": index * 10, "key": f"k{index}", "user_id": "u", "id": index}
        lines[index] = json.dumps({"row": row, "table": "user_preferences"})
    path = tmp_path / "orders.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert import_data(store, path, jobs=3).inserted["user_preferences"] == 60
    stored = store.preferences.all("u")
    assert stored["k5"] == 5
    assert stored["k40"] == 400
    assert stored["k60"] == 600


def test_a_header_after_more_blank_lines_than_the_first_range_holds(
    sqlite_store: Arquivo, tmp_path: Path
) -> None:
    path = tmp_path / "late.jsonl"
    path.write_text("\n" * 5000 + "\n".join(_prefs(10)) + "\n")
    assert parallel._ranges(path, 2)[0][1] is not None
    assert import_data(sqlite_store, path, jobs=2).inserted["user_preferences"] == 10


def test_a_gzip_file_is_checked_in_ranges_of_a_plain_copy(
    sqlite_store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cut: list[tuple[Path, int]] = []
    real = parallel._ranges

    def spy(path: Path, jobs: int) -> list[tuple[int, int | None]]:
        ranges = real(path, jobs)
        cut.append((path, len(ranges)))
        # The copy has no name in TMPDIR: a killed import leaves nothing there.
        assert list(scratch.iterdir()) == []
        return ranges

    monkeypatch.setattr(parallel, "_ranges", spy)
    path = tmp_path / "prefs.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write("\n".join(_prefs(90)) + "\n")
    assert parallel._ranges(path, 3) == [(0, None)]
    cut.clear()
    assert import_data(sqlite_store, path, jobs=3).inserted["user_preferences"] == 90
    [(copy, ranges)] = cut
    assert copy.parent == Path("/proc/self/fd")
    assert ranges == 3


@pytest.mark.parametrize("damage", ["bad line", "cut short"])
def test_a_bad_gzip_file_gets_the_one_pass_error(
    sqlite_store: Arquivo, tmp_path: Path, damage: str
) -> None:
    lines = _prefs(90)
    lines[85] = _pref(999, id="x")
    path = tmp_path / "bad.jsonl.gz"
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path.write_bytes(data if damage == "bad line" else data[: len(data) // 2])
    errors: list[ValidationError] = []
    for jobs in (1, 3):
        with pytest.raises(ValidationError) as caught:
            import_data(sqlite_store, path, jobs=jobs)
        errors.append(caught.value)
    assert errors[1].message == errors[0].message
    assert str(path) in errors[1].message
    words = "line 86: table user_preferences" if damage == "bad line" else "cut short"
    assert words in errors[1].message
    assert sqlite_store.preferences.all("u") == {}


def test_progress_adds_the_rows_of_every_range(
    sqlite_store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "PROGRESS_EVERY", 5)
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(_prefs(90)) + "\n")
    seen: list[Progress] = []
    import_data(sqlite_store, path, jobs=3, progress=seen.append)
    checked = [event.done for event in seen if event.stage == "validate"]
    first_range = parallel._ranges(path, 3)[0][1]
    assert first_range is not None
    # Every range reports each 5th row; the last reports add up every range's.
    assert 90 - 3 * 4 <= max(checked) <= 90
    assert max(checked) > len(path.read_bytes()[:first_range].splitlines())
    imported = [event.done for event in seen if event.stage == "import"]
    assert imported[-1] == 90


def test_a_checking_process_that_dies_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(_prefs(90)) + "\n")
    codecs = {table.name: TableCodec(table) for table in schema_tables()}

    def produce(segment: reading.Segment) -> Iterator[Any]:
        if segment.after_header:
            os._exit(3)  # as if killed (out of memory)
        for _ in segment.rows():
            pass
        return iter(())

    with contextlib.ExitStack() as stack, pytest.raises(ArquivoError) as caught:
        parallel.check_file(
            path,
            codecs,
            produce,
            lambda plan: ("", (), ()),
            lambda table, columns, line: None,
            jobs=3,
            progress=None,
            stack=stack,
        )
    assert "ended without a result (exit code 3)" in caught.value.message
    assert caught.value.hint


def test_when_a_fork_fails_one_pass_checks_the_file(
    sqlite_store: Arquivo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second fork fails as it would at the process limit (EAGAIN): the first child
    # is ended and the file is checked in this process instead.
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(_prefs(90)) + "\n")
    real = parallel._Children._start
    started: list[int] = []

    def start_once(self: Any, *args: Any) -> None:
        if started:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        real(self, *args)
        started.append(self._processes[-1].pid)

    monkeypatch.setattr(parallel._Children, "_start", start_once)
    assert import_data(sqlite_store, path, jobs=3).inserted["user_preferences"] == 90
    assert len(started) == 1
    assert multiprocessing.active_children() == []


def test_the_default_is_one_process_per_cpu_and_16_mib(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_text("\n".join(_prefs(10)) + "\n")
    with open(large, "wb") as out:
        out.truncate(64 * 2**20)  # sparse: only its size counts
    cpus = len(os.sched_getaffinity(0))
    assert parallel.default_jobs(small) == 1
    assert parallel.default_jobs(large) == min(cpus, 4)
    # A gzip file counts by the size its trailer gives (64 MiB in 64 KiB here).
    packed = tmp_path / "large.jsonl.gz"
    packed.write_bytes(gzip.compress(b"\n" * (64 * 2**20), compresslevel=1))
    assert packed.stat().st_size < 2**20
    assert parallel.default_jobs(packed) == min(cpus, 4)
    assert parallel.default_jobs(tmp_path / "missing.jsonl") == 1


def test_a_missing_file_or_a_pipe_is_read_as_by_one_pass(
    sqlite_store: Arquivo, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="cannot open"):
        import_data(sqlite_store, tmp_path / "missing.jsonl", jobs=2)
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    feeder = threading.Thread(target=pipe.write_text, args=("\n".join(_prefs(40)) + "\n",))
    feeder.start()
    try:
        assert import_data(sqlite_store, pipe, jobs=2).inserted["user_preferences"] == 40
    finally:
        feeder.join(timeout=10)


def test_jobs_must_be_positive(sqlite_store: Arquivo, tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(_prefs(3)) + "\n")
    with pytest.raises(ValidationError, match="jobs must be positive"):
        import_data(sqlite_store, path, jobs=0)
