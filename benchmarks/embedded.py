"""What the benchmark scripts share: a PostgreSQL to measure on, when asked for one."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def postgres_url(
    given: str | None, database: str, settings: dict[str, str] | None = None
) -> Iterator[str | None]:
    """``given`` as it is, or with ``"auto"`` a fresh ``database`` on an embedded server
    (started with ``settings``, if any).

    PostgreSQL is optional for the benchmarks: when no server can be started the reason
    goes to stderr and ``None`` is yielded, so the SQLite figures are still printed.
    """
    if given != "auto":
        yield given
        return
    sys.path.insert(0, str(ROOT / "tests"))
    with contextlib.ExitStack() as stack:
        admin = None
        try:
            pg_server = importlib.import_module("pg_server")
            admin = stack.enter_context(pg_server.embedded_postgres(settings))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional: say why, run the rest
            print(
                f"--postgres auto: no embedded server ({exc}); skipping PostgreSQL",
                file=sys.stderr,
                flush=True,
            )
        yield None if admin is None else str(pg_server.create_database(admin, database))
