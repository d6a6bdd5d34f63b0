"""SQLite backups read the database file held still (one pass), and the paths around it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import blake3
import lz4.frame
import pytest
import sqlalchemy as sa

from arquivo import Arquivo
from arquivo.backup import Backups, chunks
from arquivo.backup import codec as codecs
from arquivo.backup.chunks import CHUNK_BYTES, chunk_name
from arquivo.backup.manifest import BackupInfo
from arquivo.backup.mapped import mapped
from arquivo.backup.sqlite_frozen import frozen

pytestmark = pytest.mark.sqlite_only


def _store_with(path: Path, messages: int) -> None:
    with Arquivo.open(f"sqlite:///{path}") as store:
        for i in range(messages):
            store.conversations.append("u1", "s1", "user", f"message {i} " + "x" * 200)


def _append(path: Path, count: int, start: int = 0) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("PRAGMA busy_timeout = 5000")
        for i in range(start, start + count):
            writer.execute(
                "INSERT INTO conversation_history (user_id, session_id, role, content, created_at)"
                " VALUES ('u1', 's1', 'user', ?, '2026-11-26 01:00:00')",
                (f"later {i} " + "y" * 200,),
            )


def _held_bytes(fd: int, size: int) -> str:
    return hashlib.sha256(os.pread(fd, size, 0)).hexdigest()


def _messages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as check:
        return int(check.execute("SELECT count(*) FROM conversation_history").fetchone()[0])


def test_the_held_file_stays_the_snapshot_while_writers_commit_and_checkpoint(
    tmp_path: Path,
) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 50)
    _append(db, 30)  # frames in the WAL, to be folded in when the file is held
    with frozen(db) as held:
        assert held is not None
        before = _held_bytes(held.fd, held.size)
        # Enough commits for auto-checkpoints, plus explicit ones: none may touch the file.
        _append(db, 3000, start=100)
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("PRAGMA busy_timeout = 100")
            _busy, log, folded = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert log > 0
            assert folded < log
        assert _held_bytes(held.fd, held.size) == before
        seen = held.connection.execute("SELECT count(*) FROM conversation_history").fetchone()
        assert seen[0] == 80
        copy = tmp_path / "copy.db"
        copy.write_bytes(os.pread(held.fd, held.size, 0))
    with contextlib.closing(sqlite3.connect(copy)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _messages(copy) == 80
    assert _messages(db) == 3080


def _create(db: Path, folder: Path, codec: str | None = None) -> tuple[BackupInfo, list[str]]:
    stages: list[str] = []
    with Arquivo.open(f"sqlite:///{db}") as store:
        info = Backups(store.engine, folder).create(
            codec=codec, progress=lambda done, total, what: stages.append(what)
        )
    return info, stages


def _restores(info: BackupInfo, folder: Path, target: Path, messages: int) -> None:
    report = Backups(None, folder).verify(info.id)
    assert report.ok, report.problems
    assert report.restored
    Backups(None, folder).restore(info.id, to=f"sqlite:///{target}")
    assert _messages(target) == messages


def test_an_older_reader_sends_the_backup_through_the_backup_api(tmp_path: Path) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 20)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as old_reader:
        old_reader.execute("BEGIN")
        old_reader.execute("SELECT count(*) FROM conversation_history").fetchone()
        _append(db, 40)  # frames the old reader keeps from being folded in
        with frozen(db) as held:
            assert held is None
        info, stages = _create(db, tmp_path / "backups")
        old_reader.execute("COMMIT")
    assert "copying pages" in stages
    assert info.tables["conversation_history"] == 60
    _restores(info, tmp_path / "backups", tmp_path / "restored.db", 60)


def test_a_rollback_journal_database_is_read_held_by_its_shared_lock(tmp_path: Path) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 25)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as switch:
        assert switch.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
    with frozen(db) as held:
        assert held is not None
        blocked = contextlib.closing(sqlite3.connect(db, timeout=0.1))
        with blocked as writer, pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.execute(
                "INSERT INTO conversation_history (user_id, session_id, role, content,"
                " created_at) VALUES ('u1', 's1', 'user', 'late', '2026-11-26 01:00:00')"
            )
            writer.commit()
        copy = tmp_path / "copy.db"
        copy.write_bytes(os.pread(held.fd, held.size, 0))
    assert _messages(copy) == 25


@pytest.mark.parametrize("codec", codecs.CODECS)
def test_each_codec_backs_up_in_one_pass_and_restores(tmp_path: Path, codec: str) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 40)
    _append(db, 500)
    info, stages = _create(db, tmp_path / "backups", codec=codec)
    assert "copying pages" not in stages
    assert "compressing" in stages
    component = info.components[0]
    assert component.codec == codec
    assert component.files[0].path == chunk_name(0, codec)
    assert component.files[0].path.endswith(codecs.suffix(codec))
    assert component.raw_size_bytes == db.stat().st_size
    assert info.tables["conversation_history"] == 540
    _restores(info, tmp_path / "backups", tmp_path / "restored.db", 540)


def test_the_default_codec_is_lz4() -> None:
    assert codecs.default_codec() == "lz4"


def test_a_damaged_lz4_backup_fails_verify(tmp_path: Path) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 200)
    info, _ = _create(db, tmp_path / "backups", codec="lz4")
    packed = info.path / info.components[0].files[0].path
    data = bytearray(packed.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
    packed.write_bytes(bytes(data))
    report = Backups(None, tmp_path / "backups").verify(info.id)
    assert not report.ok
    assert any("sha256" in p.lower() or "checksum" in p.lower() for p in report.problems)


_LOCK_PROBE = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    print(connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0])
except sqlite3.OperationalError as exc:
    print("refused:", exc)
"""


def test_a_backup_keeps_the_locks_of_the_process_own_connections(tmp_path: Path) -> None:
    # POSIX locks are per process: closing any descriptor of the file would drop the
    # locks of this process's other connections, and another process could then take
    # the database out of WAL mode under them.
    db = tmp_path / "arquivo.db"
    _store_with(db, 10)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as held:
        held.execute("BEGIN")
        held.execute("SELECT count(*) FROM conversation_history").fetchone()
        with Arquivo.open(f"sqlite:///{db}") as store:
            for _ in range(2):
                info = Backups(store.engine, tmp_path / "backups").create()
                assert info.tables["conversation_history"] == 10
        probe = subprocess.run(
            [sys.executable, "-c", _LOCK_PROBE, str(db)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.startswith("refused"), probe.stdout
        held.execute("COMMIT")
        assert held.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_long_write_transaction_sends_the_backup_through_the_backup_api(
    tmp_path: Path,
) -> None:
    db = tmp_path / "arquivo.db"
    _store_with(db, 10)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writing:
        writing.execute("BEGIN IMMEDIATE")
        writing.execute("DELETE FROM conversation_history")
        stages: list[str] = []
        plain = sa.create_engine(f"sqlite:///{db}")
        try:
            info = Backups(plain, tmp_path / "backups").create(
                progress=lambda done, total, what: stages.append(what)
            )
        finally:
            plain.dispose()
        writing.execute("ROLLBACK")
    assert "copying pages" in stages
    assert info.tables["conversation_history"] == 10


def test_a_database_of_many_blocks_is_backed_up_byte_for_byte(tmp_path: Path) -> None:
    # Several compression blocks, the last one partial: the mapped file goes into the
    # backup in order and whole.
    db = tmp_path / "arquivo.db"
    _store_with(db, 10)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("BEGIN")
        for i in range(45_000):
            writer.execute(
                "INSERT INTO conversation_history (user_id, session_id, role, content, created_at)"
                " VALUES ('u1', 's1', 'user', ?, '2026-11-26 01:00:00')",
                (f"bulk {i} " + os.urandom(60).hex(),),
            )
        writer.execute("COMMIT")
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    assert size > 2 * codecs.COMPRESS_CHUNK
    assert size % codecs.COMPRESS_CHUNK != 0
    info, stages = _create(db, tmp_path / "backups", codec="lz4")
    assert "copying pages" not in stages
    plain = tmp_path / "plain.db"
    files = info.components[0].files
    assert [f.path for f in files] == [chunk_name(i, "lz4") for i in range(len(files))]
    assert len(files) == -(-size // CHUNK_BYTES)
    codecs.decompress_files([info.path / f.path for f in files], plain, "lz4")
    assert plain.read_bytes() == db.read_bytes()


def test_a_map_reads_the_file_and_leaves_the_descriptor_open(tmp_path: Path) -> None:
    data = os.urandom(3 * 4096 + 17)
    path = tmp_path / "file"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        with mapped(fd, len(data)) as view:
            assert view is not None
            assert view[4096:] == data[4096:]
        with mapped(fd, 0) as view:
            assert view is None
        assert os.pread(fd, 8, 0) == data[:8]
    finally:
        os.close(fd)


def _chunky_store(db: Path, megabytes: int) -> None:
    """A database of about ``megabytes`` MB of big messages, so of many chunks."""
    _store_with(db, 10)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("BEGIN")
        for i in range(megabytes * 20):
            writer.execute(
                "INSERT INTO conversation_history (user_id, session_id, role, content, created_at)"
                " VALUES ('u1', 's1', 'user', ?, '2026-11-26 01:00:00')",
                (f"bulk {i} " + os.urandom(25_000).hex(),),
            )
        writer.execute("COMMIT")


def test_a_second_backup_shares_the_unchanged_chunks_and_both_restore(tmp_path: Path) -> None:
    db = tmp_path / "arquivo.db"
    _chunky_store(db, 48)
    folder = tmp_path / "backups"
    first, _ = _create(db, folder)
    assert first.components[0].details["shared_chunks"] == 0
    _append(db, 30, start=10_000)
    second, _ = _create(db, folder)
    details = second.components[0].details
    files = second.components[0].files
    assert details["shared_from"] == first.id
    # New messages change the last chunks and a few index pages, not the whole file.
    assert 0 < details["shared_chunks"] < len(files)
    assert details["shared_chunks"] >= len(files) // 2
    shared = [
        f
        for f in files
        if (second.path / f.path).stat().st_ino == (first.path / f.path).stat().st_ino
    ]
    assert len(shared) == details["shared_chunks"]
    assert details["shared_bytes"] == sum(f.size_bytes for f in shared)
    assert all((second.path / f.path).stat().st_nlink == 2 for f in shared)
    # The manifest's hashes are those of the chunks' uncompressed bytes.
    assert details["chunk_hash"] == "blake3"
    for index in (0, len(files) - 1):
        raw = lz4.frame.decompress((second.path / files[index].path).read_bytes())
        assert blake3.blake3(raw).hexdigest() == details["chunks"][index]
    backups = Backups(None, folder)
    assert backups.verify(second.id).ok
    # Removing the first backup leaves the second whole.
    backups.prune(keep_last=1)
    assert [b.id for b in backups.list()] == [second.id]
    assert backups.verify(second.id).ok
    _restores(second, folder, tmp_path / "restored.db", _messages(db))


def test_chunks_hashed_another_way_are_not_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backup made where BLAKE3 was missing (SHA-256) and one made with it cannot
    # compare their chunks' hashes: the chunks are compressed again, not linked.
    db = tmp_path / "arquivo.db"
    _chunky_store(db, 12)
    folder = tmp_path / "backups"
    first, _ = _create(db, folder)
    assert first.components[0].details["chunk_hash"] == "blake3"
    monkeypatch.setattr(chunks, "CHUNK_HASH", "sha256")
    monkeypatch.setattr(chunks, "_chunk_hasher", hashlib.sha256)
    second, _ = _create(db, folder)
    details = second.components[0].details
    assert details["chunk_hash"] == "sha256"
    assert details["shared_chunks"] == 0
    third, _ = _create(db, folder)
    assert third.components[0].details["shared_from"] == second.id
    assert third.components[0].details["shared_chunks"] == len(third.components[0].files)
    assert Backups(None, folder).verify(third.id).ok


def test_a_changed_codec_or_a_damaged_parent_file_is_not_shared(tmp_path: Path) -> None:
    db = tmp_path / "arquivo.db"
    _chunky_store(db, 16)
    folder = tmp_path / "backups"
    first, _ = _create(db, folder, codec="lz4")
    zstd, _ = _create(db, folder, codec="zstd")
    assert zstd.components[0].details["shared_chunks"] == 0
    # The newest lz4 backup is the parent; one of its files loses a byte.
    # One parent file loses a byte, another has one altered (same size).
    victim = first.path / first.components[0].files[1].path
    victim.write_bytes(victim.read_bytes()[:-1])
    altered = first.path / first.components[0].files[2].path
    content = bytearray(altered.read_bytes())
    content[len(content) // 2] ^= 0x55
    altered.write_bytes(bytes(content))
    third, _ = _create(db, folder, codec="lz4")
    details = third.components[0].details
    assert details["shared_from"] == first.id
    assert details["shared_chunks"] == len(third.components[0].files) - 2
    assert (third.path / third.components[0].files[1].path).stat().st_nlink == 1
    assert (third.path / third.components[0].files[2].path).stat().st_nlink == 1
    assert Backups(None, folder).verify(third.id).ok
    assert not Backups(None, folder).verify(first.id).ok
