"""Run the reliability suite and print what it tried: ``python -m tests.reliability.report``.

Prints one row per fault and database (faults injected, processes killed, writes
acknowledged and verified, errors by type that reached callers), then totals.

    python -m tests.reliability.report            # the short version CI runs
    python -m tests.reliability.report --long     # the long one (ARQUIVO_RELIABILITY=long)
    python -m tests.reliability.report -- -k crash    # extra arguments go to pytest

Run it from the repository root with the test extra installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.reliability import ledger

SUITE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    """Run the suite in a child pytest, then print the table from its ledger."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--long", action="store_true", help="run the long version")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arquivo-reliability-") as scratch:
        record = Path(scratch) / "ledger.jsonl"
        env = {**os.environ, ledger.LEDGER_ENV: str(record)}
        if args.long:
            env[ledger.MODE_ENV] = "long"
        command = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider"]
        result = subprocess.run([*command, *args.pytest_args], env=env, check=False)
        entries = ledger.load(record) if record.exists() else []
    mode = "long" if args.long else "short (CI)"
    print(f"\nArquivo reliability report, {mode} version")
    print(ledger.table(entries) if entries else "(no test recorded anything)")
    print("result:", "PASSED" if result.returncode == 0 else f"FAILED ({result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
