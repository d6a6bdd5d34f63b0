"""The backup benchmark runs end to end at a tiny size (the figures go in the notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_backup_benchmark_prints_every_figure() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "backup.py"),
            "--size-mb",
            "3",
            "--rounds",
            "1",
            "--writers",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") :])
    names = {row["name"].split(" ")[0] for row in report["results"]}
    assert {"B1", "B2", "B3", "B4"} <= names
    for row in report["results"]:
        assert row["mb_s"] > 0, row
