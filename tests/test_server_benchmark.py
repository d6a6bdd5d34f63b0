"""``benchmarks/server.py`` runs end to end (its tiny version; the figures go in the notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_server_benchmark_quick_measures_every_operation() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "server.py"),
            "--quick",
            "--json",
            "--client",
            "python",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    assert [r["operation"] for r in rows] == [
        "healthz (baseline)",
        "append",
        "history",
        "pref",
        "pending",
    ]
    for row in rows:
        assert row["requests"] > 0, row
        assert row["errors"] == 0, row
        assert 0 < row["p50_ms"] <= row["p99_ms"], row
