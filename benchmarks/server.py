"""The HTTP service under load: requests/s and p50/p99 latency at 32 connections, on loopback.

::

    .venv/bin/python benchmarks/server.py                      # SQLite, 10 s per operation
    .venv/bin/python benchmarks/server.py --postgres auto      # + the embedded PostgreSQL
    .venv/bin/python benchmarks/server.py --quick --json       # tiny run (CI smoke test)

Operations (user key, as an agent would call them): ``append`` (POST a message),
``history`` (GET the last 20 messages of a 200-message session), ``pref`` (GET one
preference), ``pending`` (GET the user's 10 pending HITL requests). The baseline, run
in the same process against the same server, is ``/healthz``: no key, no database; the
ratio says what the key check, the database and the JSON cost on top of the framework.

The load generator is ``wrk`` (one thread; C, so it takes little of the 2 cores the
server shares with it): installed with apt-get when missing and running as root.
Without it, ``--client python`` (asyncio, raw HTTP/1.1 keep-alive) does the job but
takes a core for itself, which lowers the figures. Targets on a 2-core machine with
SQLite: history >= 1,500 req/s, append >= 800 req/s, p99 <= 50 ms, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from embedded import postgres_url
from sqlalchemy.exc import SQLAlchemyError

from arquivo import Arquivo, ArquivoError

ROOT = Path(__file__).resolve().parents[1]
ARQUIVO = Path(sys.executable).with_name("arquivo")
USER = "bench"
TARGETS = {"append": 800.0, "history": 1500.0}
P99_TARGET_MS = 50.0


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Result:
    """One operation's figures."""

    database: str
    operation: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    client: str
    #: CPU time of the server processes per request (and of PostgreSQL's, when known).
    server_cpu_us: float = 0.0
    database_cpu_us: float = 0.0
    #: The load generator's connections per server worker, mid-run (``17/15``).
    split: str = ""


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    body: str | None = None
    auth: bool = True


OPERATIONS = [
    Operation("healthz (baseline)", "GET", "/healthz", auth=False),
    Operation(
        "append",
        "POST",
        f"/v1/users/{USER}/sessions/load/messages",
        json.dumps({"role": "user", "content": "Hello from the load generator", "model": "m"}),
    ),
    Operation("history", "GET", f"/v1/users/{USER}/sessions/hist/messages?limit=20"),
    Operation("pref", "GET", f"/v1/users/{USER}/preferences/theme"),
    Operation("pending", "GET", "/v1/hitl/pending"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(url: str) -> str:
    """Create the data the reads find, and a user key; returns its token."""
    with Arquivo.open(url) as store:
        _, token = store.api_keys.create(USER, name="bench")
        store.conversations.append_many(
            USER, "hist", [{"role": "user", "content": f"message {i} " * 8} for i in range(200)]
        )
        store.preferences.set(USER, "theme", {"mode": "dark", "size": 14})
        for i in range(10):
            store.hitl.request("bench-flow", f"step-{i}", {"i": i}, user_id=USER)
    return token


@contextlib.contextmanager
def server(url: str, workers: int) -> Iterator[tuple[str, int]]:
    """``arquivo serve`` on a free loopback port until the block ends."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url}
    command = [str(ARQUIVO), "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"arquivo serve exited: {process.stderr.read() if process.stderr else ''}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("arquivo serve did not become ready in 60 s")
            time.sleep(0.1)
        # With several workers, readiness of one is not of all: let the others start.
        time.sleep(1.0 * (workers - 1))
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


# --- CPU time, from /proc (Linux) ---------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(pid: int | None) -> float:
    """Seconds of CPU used so far by ``pid`` and its live descendants (0 off Linux)."""
    if pid is None:
        return 0.0
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid when it runs on this machine and we may ask it."""
    try:
        with Arquivo.open(url) as store, store.engine.connect() as connection:
            folder = connection.exec_driver_sql("SHOW data_directory").scalar()
        return int((Path(str(folder)) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, ArquivoError, SQLAlchemyError):
        return None


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        try:
            tasks = list(Path(f"/proc/{stack.pop()}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                stack += children
    return found


def connection_split(pid: int, port: int) -> str:
    """How the client's connections are spread over the server's workers, e.g. ``17/15``
    (Linux; empty elsewhere): a worker holding most of them sets the p99."""
    try:
        established = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                established.add(fields[9])
    except OSError:
        return ""
    counts = []
    for worker in [pid, *_descendants(pid)]:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{worker}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = fd.readlink().name
                    if target.startswith("socket:["):
                        inodes.add(target[len("socket:[") : -1])
        if held := len(inodes & established):
            counts.append(held)
    return "/".join(str(c) for c in sorted(counts, reverse=True))


# --- wrk -------------------------------------------------------------------------------


def ensure_wrk(install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    log("installing wrk with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
    if subprocess.run(command, capture_output=True, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        subprocess.run(command, capture_output=True, env=env, check=False)
    return shutil.which("wrk")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    wrk: str, base: str, op: Operation, token: str, connections: int, seconds: float, folder: Path
) -> tuple[float, float, float, int, int]:
    script = folder / "request.lua"
    lines = [f'wrk.method = "{op.method}"']
    if op.body is not None:
        lines.append(f"wrk.body = {json.dumps(op.body)}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    if op.auth:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    script.write_text("\n".join(lines) + "\n")
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(int(seconds), 1)}s", "--latency"]
    out = subprocess.run(
        [*command, "-s", str(script), base + op.path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(g) for g in match.groups())
    return rate, p50, p99, total, errors


# --- the Python client -----------------------------------------------------------------


async def _connection(
    host: str, port: int, request: bytes, stop: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                errors[0] += 1
    finally:
        writer.close()


def run_python(
    base: str, op: Operation, token: str, connections: int, seconds: float
) -> tuple[float, float, float, int, int]:
    host, port = base.removeprefix("http://").split(":")
    headers = [f"{op.method} {op.path} HTTP/1.1", f"Host: {host}:{port}"]
    body = (op.body or "").encode()
    if op.auth:
        headers.append(f"Authorization: Bearer {token}")
    if op.body is not None:
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = [0]

    async def main() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _connection(host, int(port), request, stop, latencies, errors)
                for _ in range(connections)
            )
        )

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000 if latencies else 0.0
        )

    return len(latencies) / elapsed, pct(0.50), pct(0.99), len(latencies), errors[0]


# --- the run ---------------------------------------------------------------------------


def measure(
    database: str, url: str, args: argparse.Namespace, wrk: str | None, folder: Path
) -> list[Result]:
    token = seed(url)
    results = []
    database_pid = postmaster_pid(url) if database != "sqlite" else None
    operations = [op for op in OPERATIONS if not args.only or op.name.split()[0] in args.only]
    with server(url, args.workers) as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        for op in operations:
            # A short warm-up: connections, caches and the key check's cache.
            for _ in range(20):
                httpx.request(
                    op.method,
                    base + op.path,
                    content=op.body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
            cpu_before = tree_cpu(pid), tree_cpu(database_pid)
            split: list[str] = []
            sampler = threading.Timer(
                args.duration / 2, lambda into=split: into.append(connection_split(pid, port))
            )
            sampler.start()
            if wrk:
                figures = run_wrk(wrk, base, op, token, args.connections, args.duration, folder)
            else:
                figures = run_python(base, op, token, args.connections, args.duration)
            sampler.join()
            served = max(figures[3], 1)
            result = Result(
                database,
                op.name,
                *figures,
                client="wrk" if wrk else "python",
                server_cpu_us=(tree_cpu(pid) - cpu_before[0]) / served * 1e6,
                database_cpu_us=(tree_cpu(database_pid) - cpu_before[1]) / served * 1e6,
                split=split[0] if split else "",
            )
            log(
                f"{database:10} {op.name:20} {result.requests_per_s:8.0f} req/s  "
                f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}"
                f"  cpu/req {result.server_cpu_us:5.0f} us + db {result.database_cpu_us:4.0f} us"
                f"  connections per worker {result.split}"
            )
            results.append(result)
    return results


def _verdict(r: Result) -> str:
    target = TARGETS.get(r.operation)
    if target is None and r.operation not in ("pref", "pending"):
        return ""
    ok = (target is None or r.requests_per_s >= target) and r.p99_ms <= P99_TARGET_MS
    ok = ok and r.errors == 0
    rate = f">= {target:.0f}/s, " if target else ""
    return f"{'met' if ok else 'MISSED'} ({rate}p99 <= {P99_TARGET_MS:.0f} ms, 0 errors)"


def _cpu(r: Result) -> str:
    text = f"{r.server_cpu_us:.0f} us"
    return text + (f" +{r.database_cpu_us:.0f}" if r.database_cpu_us else "")


def report(results: list[Result], workers: int, connections: int) -> None:
    client = results[0].client
    print(f"\nArquivo HTTP service: {connections} connections on loopback, {workers} worker(s),")
    print(f"load generator {client}; baseline = /healthz on the same server, same run")
    print("cpu/req: CPU time of the server's processes per request (+ PostgreSQL's own);")
    print("split: the connections each worker held, mid-run")
    header = (
        "database",
        "operation",
        "req/s",
        "x baseline",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu/req",
        "split",
    )
    print("{:10} {:20} {:>8} {:>10} {:>7} {:>7} {:>6} {:>13} {:>7}  target".format(*header))
    for db in dict.fromkeys(r.database for r in results):
        rows = [r for r in results if r.database == db]
        base = rows[0].requests_per_s if rows[0].operation.startswith("healthz") else 0.0
        base = base or 1.0
        for r in rows:
            print(
                f"{r.database:10} {r.operation:20} {r.requests_per_s:8.0f} "
                f"{r.requests_per_s / base:10.2f} {r.p50_ms:7.1f} {r.p99_ms:7.1f} "
                f"{r.errors:6d} {_cpu(r):>13} {r.split:>7}  {_verdict(r)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL, or 'auto' for an embedded server")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per operation")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[op.name.split()[0] for op in OPERATIONS],
        help="measure only these operations",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.connections, args.workers = 1.0, 4, 1
    wrk = None
    if args.client != "python":
        wrk = ensure_wrk(install=args.client == "wrk" or not args.quick)
        if wrk is None and args.client == "wrk":
            raise SystemExit("wrk is not available (apt-get install wrk)")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="arquivo-bench-server-") as tmp:
        folder = Path(tmp)
        results += measure("sqlite", f"sqlite:///{folder / 'bench.db'}", args, wrk, folder)
        if args.postgres:
            with postgres_url(args.postgres, "arquivo_bench_server") as pg:
                if pg is not None:
                    results += measure("postgresql", pg, args, wrk, folder)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        report(results, args.workers, args.connections)


if __name__ == "__main__":
    main()
