"""Resource faults: a full disk, a read-only database, the PostgreSQL server going away,
and a connection pool with nothing left to give.

Each fault must surface as a clear ``ArquivoError`` subclass with a hint (never a driver
exception, never a hang), must not lose or double anything acknowledged before it, and
the store must work again once the fault is gone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from arquivo import (
    Arquivo,
    ArquivoError,
    DatabaseUnavailableError,
    StorageFullError,
)
from arquivo.settings import Settings
from conftest import Backend
from reliability.checks import integrity_problems
from reliability.ledger import Tally, scaled, tally
from reliability.pgcontrol import PostgresControl
from reliability.processes import pumping, say, spawn

CONTENT = "y" * 4000  # a few of these fill a small volume fast


def _mount(*args: str) -> bool:
    result = subprocess.run(["mount", *args], capture_output=True, check=False)
    return result.returncode == 0


@contextlib.contextmanager
def small_volume(megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` (needs root and mount rights; the test skips otherwise)."""
    where = Path(tempfile.mkdtemp(prefix="arquivo-full-"))
    if not _mount("-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(where)):
        where.rmdir()
        pytest.skip("cannot mount a tmpfs here (not root, or no mount rights)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def _fill(path: Path, leave: int) -> None:
    """Fill the volume holding ``path`` until only ``leave`` bytes are free."""
    stat = os.statvfs(path.parent)
    size = max(stat.f_bavail * stat.f_frsize - leave, 0)
    with path.open("wb") as filler:
        with contextlib.suppress(OSError):
            filler.write(b"\0" * size)
        filler.flush()


def _verify_messages(store: Arquivo, acked: list[str], rejected: list[str]) -> int:
    stored = Counter(m.content.split("|")[0] for m in store.conversations.history("full", "s"))
    assert all(stored[token] == 1 for token in acked), "an acknowledged write was lost"
    assert not [token for token in rejected if stored[token]], "a rejected write was stored"
    assert max(stored.values(), default=1) == 1
    return len(acked)


def _write_until_full(store: Arquivo, ledger: Tally) -> tuple[list[str], list[str]]:
    """Append until the disk refuses; then every kind of write must be refused cleanly."""
    acked: list[str] = []
    rejected: list[str] = []
    full: StorageFullError | None = None
    for seq in range(100_000):
        token = f"t{seq}"
        try:
            store.conversations.append("full", "s", "user", f"{token}|{CONTENT}")
        except StorageFullError as exc:
            full = exc
            rejected.append(token)
            break
        acked.append(token)
    assert full is not None, "the volume never filled up"
    assert full.hint
    ledger.error(full)
    attempts = [
        lambda: store.conversations.append("full", "s", "user", f"x1|{CONTENT}"),
        lambda: store.conversations.append_many(
            "full", "s", [{"role": "user", "content": f"x2|{CONTENT}"}] * 50
        ),
        lambda: store.metrics.record("full", 1.0, extra_data={"pad": CONTENT * 20}),
        lambda: store.preferences.set("full", "big", CONTENT * 50),
    ]
    for attempt in attempts:
        with pytest.raises(StorageFullError) as caught:
            attempt()
        ledger.error(caught.value)
    rejected += ["x1", "x2"]
    # Reads still work on a full disk.
    assert len(store.conversations.history("full", "s", limit=5)) == min(5, len(acked))
    return acked, rejected


@pytest.mark.sqlite_only
def test_disk_full_on_a_small_volume_raises_storage_full_and_loses_nothing() -> None:
    """ENOSPC from a real filesystem: a 16 MB tmpfs filled up behind the database's back."""
    ledger = tally("disk full (tmpfs, ENOSPC)", "sqlite")
    with small_volume(16) as volume:
        url = f"sqlite:///{volume / 'arquivo.db'}"
        with Arquivo.open(url) as store:
            store.conversations.append("full", "s", "user", f"first|{CONTENT}")
            filler = volume / "filler"
            _fill(filler, leave=256 * 1024)
            ledger.faults += 1
            acked, rejected = _write_until_full(store, ledger)
            acked.insert(0, "first")
            filler.unlink()
            # Space is back: the same store writes again, without reopening.
            store.conversations.append("full", "s", "user", "after|")
            acked.append("after")
            ledger.acknowledged += len(acked)
        with Arquivo.open(url) as store:
            assert integrity_problems(store.engine) == []
            ledger.verified += _verify_messages(store, acked, rejected)


@pytest.mark.sqlite_only
def test_an_import_whose_scratch_disk_fills_up_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import's scratch file (its checked rows) on a full tmpfs: a clear error, no rows."""
    from arquivo.portability import export_data, import_data

    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    with Arquivo.open(source_url) as source:
        source.conversations.append_many(
            "u", "s", [{"role": "user", "content": f"{i}|{CONTENT}"} for i in range(600)]
        )
        export_data(source, tmp_path / "all.jsonl")
    with small_volume(1) as volume, Arquivo.open(f"sqlite:///{tmp_path / 'target.db'}") as target:
        monkeypatch.setattr(tempfile, "tempdir", str(volume))
        with pytest.raises(StorageFullError) as caught:
            import_data(target, tmp_path / "all.jsonl", batch_size=50)
        assert "TMPDIR" in caught.value.hint
        assert "nothing was imported" in caught.value.hint
        assert target.conversations.history("u", "s") == []
        assert list(volume.iterdir()) == []  # the unnamed file went with its descriptor
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        report = import_data(target, tmp_path / "all.jsonl", batch_size=50)
        assert report.inserted["conversation_history"] == 600


def _capped_writer(out: int, url: str, headroom: int) -> None:
    """Write with RLIMIT_FSIZE just above the database's size: writes past it get EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us instead
    store = Arquivo.open(url)
    store.conversations.append("full", "s", "user", "warm|")  # the WAL exists now
    say(out, "K", "warm")
    path = Path(url.removeprefix("sqlite:///"))
    biggest = max(path.stat().st_size, Path(f"{path}-wal").stat().st_size)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + headroom, resource.RLIM_INFINITY))
    for seq in range(100_000):
        token = f"t{seq}"
        try:
            store.conversations.append("full", "s", "user", f"{token}|{CONTENT}")
        except ArquivoError as exc:
            say(out, "E", type(exc).__name__, bool(exc.hint), token)
            break
        except Exception as exc:
            say(out, "X", type(exc).__name__, exc)
            break
        say(out, "K", token)
    store.close()


@pytest.mark.sqlite_only
def test_file_size_limit_raises_storage_full_and_loses_nothing(sqlite_backend: Backend) -> None:
    """EFBIG from RLIMIT_FSIZE: works without root or mount rights, in a child process."""
    ledger = tally("file size limit (RLIMIT_FSIZE, EFBIG)", "sqlite")
    Arquivo.open(sqlite_backend.url).close()
    child = spawn(_capped_writer, sqlite_backend.url, 200_000)
    assert child.wait() == 0, child.lines
    ledger.faults += 1
    assert not child.events("X"), child.events("X")
    ((name, has_hint, token),) = child.fields("E")
    ledger.error(name)
    assert name == "StorageFullError"
    assert has_hint == "True"
    acked = [words[0] for words in child.events("K")]
    ledger.acknowledged += len(acked)
    with Arquivo.open(sqlite_backend.url) as store:
        assert integrity_problems(store.engine) == []
        ledger.verified += _verify_messages(store, acked, [token])


def _as_nobody() -> None:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)


def _read_only_probe(out: int, url: str, unprivileged: bool) -> None:
    """Open and use a read-only database; report what each call did."""
    if unprivileged:
        _as_nobody()
        os.chdir("/")  # the tests' working directory is private to root
    try:
        store = Arquivo.open(url)
    except ArquivoError as exc:
        say(out, "E", "open", type(exc).__name__, exc.hint)
        return
    calls = {
        "get": lambda: store.preferences.get("ro", "k"),
        "set": lambda: store.preferences.set("ro", "k", 2),
        "append": lambda: store.conversations.append("ro", "s", "user", "x"),
        "record": lambda: store.metrics.record("ro", 1.0),
    }
    for name, call in calls.items():
        try:
            call()
        except ArquivoError as exc:
            say(out, "E", name, type(exc).__name__, exc.hint)
            continue
        except Exception as exc:
            say(out, "X", name, type(exc).__name__, exc)
            continue
        say(out, "K", name)
    store.close()


def _read_only_case(
    url: str,
    make_read_only: contextlib.AbstractContextManager[str],
    unprivileged: bool,
    ledger: Tally,
) -> None:
    with Arquivo.open(url) as store:
        store.preferences.set("ro", "k", 1)
        store.conversations.append("ro", "s", "user", "kept")
        ledger.acknowledged += 2
    with make_read_only as ro_url:
        ledger.faults += 1
        child = spawn(_read_only_probe, ro_url, unprivileged)
        assert child.wait() == 0, child.lines
    assert not child.events("X"), child.events("X")
    errors = child.events("E")
    for words in errors:
        call, rest = words[0], words[1].split(" ", 1)
        ledger.error(rest[0])
        assert rest[0] == "DatabaseUnavailableError", (call, rest)
        assert len(rest) == 2, f"{call}: no hint"
        assert "writable" in rest[1] or "permission" in rest[1], rest[1]
    written = {words[0] for words in child.events("K")} & {"set", "append", "record"}
    assert not written, f"writes succeeded on a read-only database: {written}"
    assert errors
    with Arquivo.open(url) as store:
        assert store.preferences.get("ro", "k") == 1
        assert [m.content for m in store.conversations.history("ro", "s")] == ["kept"]
        assert store.metrics.list("ro") == []
        ledger.verified += 2


@pytest.mark.sqlite_only
def test_read_only_permissions_give_a_clear_error(tmp_path: Path) -> None:
    """chmod a-w on the file and its folder, used by an unprivileged user (root ignores modes)."""
    ledger = tally("read-only file and folder (chmod)", "sqlite")
    folder = Path(tempfile.mkdtemp(prefix="arquivo-ro-"))
    folder.chmod(0o755)
    url = f"sqlite:///{folder / 'arquivo.db'}"

    @contextlib.contextmanager
    def read_only() -> Iterator[str]:
        (folder / "arquivo.db").chmod(0o444)
        folder.chmod(0o555)
        try:
            yield url
        finally:
            folder.chmod(0o755)
            (folder / "arquivo.db").chmod(0o644)

    try:
        _read_only_case(url, read_only(), unprivileged=True, ledger=ledger)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


@pytest.mark.sqlite_only
def test_read_only_mount_gives_a_clear_error(tmp_path: Path) -> None:
    """The database's folder bind-mounted read-only: EROFS, which even root cannot bypass."""
    ledger = tally("read-only mount (EROFS)", "sqlite")
    folder = tmp_path / "db"
    folder.mkdir()
    view = tmp_path / "ro"
    view.mkdir()
    url = f"sqlite:///{folder / 'arquivo.db'}"

    @contextlib.contextmanager
    def read_only() -> Iterator[str]:
        if not _mount("--bind", str(folder), str(view)):
            pytest.skip("cannot bind-mount here (not root, or no mount rights)")
        try:
            assert _mount("-o", "remount,bind,ro", str(view))
            yield f"sqlite:///{view / 'arquivo.db'}"
        finally:
            subprocess.run(["umount", "-l", str(view)], check=False)

    _read_only_case(url, read_only(), unprivileged=False, ledger=ledger)


def _outage_writer(out: int, url: str) -> None:
    """Write steadily until SIGUSR1; report each ack and each error (class, hint, message)."""
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    settings = Settings(connect_timeout_s=2)
    with Arquivo.open(url, settings=settings) as store:
        say(out, "R")
        seq = 0
        while not stop.is_set():
            seq += 1
            token = f"t{seq}"
            say(out, "A", token)
            try:
                if seq % 3 == 0:
                    store.metrics.record("outage", float(seq), extra_data={"token": token})
                else:
                    store.conversations.append("outage", "s", "user", token)
            except ArquivoError as exc:
                say(out, "E", type(exc).__name__, f"{time.monotonic():.3f}", bool(exc.hint), exc)
                time.sleep(0.05)
                continue
            except Exception as exc:
                say(out, "X", type(exc).__name__, exc)
                time.sleep(0.05)
                continue
            say(out, "K", token, f"{time.monotonic():.3f}")
            time.sleep(0.002)


@pytest.mark.postgres_only
@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_postgres_stopped_and_restarted_mid_run(
    stoppable_postgres: tuple[str, PostgresControl], mode: str
) -> None:
    """The server crashes (``immediate``) or shuts down (``fast``) under a writer, then returns."""
    url, control = stoppable_postgres
    ledger = tally(f"server stopped ({mode}) and restarted", "postgresql")
    Arquivo.open(url).close()
    outages = scaled(2, 10)
    child = spawn(_outage_writer, url)
    while not child.lines and child.exit_status is None:
        child.pump()
        time.sleep(0.01)
    back_at: list[float] = []
    down_at: list[float] = []
    with pumping([child]):
        for _ in range(outages):
            time.sleep(0.5)
            down_at.append(time.monotonic())
            control.stop(mode)
            ledger.faults += 1
            time.sleep(0.7)
            control.start()
            back_at.append(time.monotonic())
        time.sleep(1.0)
        os.kill(child.pid, signal.SIGUSR1)
    assert child.wait(timeout=120) == 0, child.lines[-5:]
    assert not child.events("X"), child.events("X")[:3]
    # E lines: class, time, whether there is a hint, message.
    errors = [line.split(" ", 4)[1:] for line in child.lines if line.startswith("E ")]
    for name, *_ in errors:
        ledger.error(name)
    assert len(errors) >= outages, "the writer never noticed the server was gone"
    assert {name for name, *_ in errors} == {"DatabaseUnavailableError"}, errors[:3]
    assert all(hint == "True" for _, _, hint, _ in errors), "an error without a hint"
    # After the server is back, the next call works: no stale pooled connection fails it.
    last_error = max(float(when) for _, when, _, _ in errors)
    acked = child.events("K")
    assert any(float(when) > last_error for _, when in acked), child.lines[-5:]
    for back, next_down in zip(back_at, [*down_at[1:], float("inf")], strict=True):
        late = [e for e in errors if back + 0.05 < float(e[1]) < next_down]
        assert not late, f"calls failed after the server was back: {late[:3]}"
    tokens = [token for token, _ in acked]
    ledger.acknowledged += len(tokens)
    with Arquivo.open(url) as store:
        stored = Counter(m.content for m in store.conversations.history("outage", "s"))
        stored.update(r.extra_data["token"] for r in store.metrics.list("outage", limit=10_000))
        assert all(stored[token] == 1 for token in tokens), "an acknowledged write was lost"
        assert max(stored.values()) == 1
        attempted = {words[0] for words in child.events("A")}
        assert set(stored) <= attempted
        assert integrity_problems(store.engine) == []
    ledger.verified += len(tokens)


def test_exhausted_pool_times_out_with_a_clear_error(backend: Backend) -> None:
    """Every connection busy: a call waits ``pool_timeout_s``, then says so; never hangs."""
    ledger = tally("connection pool exhausted", backend.name)
    settings = Settings(pool_size=1, max_overflow=0, pool_timeout_s=0.5)
    with Arquivo.open(backend.url, settings=settings) as store:
        store.preferences.set("pool", "k", 1)
        holding = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with store.unit(write=False):
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert holding.wait(10)
            ledger.faults += 1
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError) as caught:
                store.preferences.get("pool", "k")
            waited = time.monotonic() - started
            ledger.error(caught.value)
            assert 0.4 <= waited < 5, waited
            assert "ARQUIVO_POOL_SIZE" in caught.value.hint
        finally:
            release.set()
            holder.join()
        # Freed: the same store serves calls again.
        assert store.preferences.get("pool", "k") == 1
        ledger.verified += 1
        ledger.acknowledged += 1
        if backend.name == "postgresql":  # the ORM's pool is sized by the settings there
            _exhaust_engine_pool(store, ledger)


def _exhaust_engine_pool(store: Arquivo, ledger: Tally) -> None:
    """``store.transaction()`` with the engine's pool used up: a clear timeout too."""
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.transaction() as session:
            session.execute(sa.text("SELECT 1"))  # a session takes a connection on first use
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        ledger.faults += 1
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as caught, store.transaction() as session:
            session.execute(sa.text("SELECT 1"))
        assert time.monotonic() - started < 5
        assert "ARQUIVO_POOL_SIZE" in caught.value.hint
        ledger.error(caught.value)
    finally:
        release.set()
        holder.join()
    with store.transaction() as session:
        assert session.execute(sa.text("SELECT 1")).scalar() == 1
