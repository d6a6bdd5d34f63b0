"""The benchmark script runs end to end (its short version; full figures go in the notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_conversations_benchmark_quick_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "conversations.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") :])
    rows = {row["name"].split(" ")[0]: row for row in report["results"]}
    assert {"W1", "W2", "W3", "W4", "M1"} <= set(rows)
    for row in report["results"]:
        assert row["arquivo"] is not None, row
    # Correctness, not speed: concurrent writers never see "database is locked".
    errors = [row for row in report["results"] if "errors" in row["name"]]
    assert errors
    assert all(row["arquivo"] == 0 for row in errors)


def test_knowledge_benchmark_quick_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "knowledge.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("\n{") :])
    recall = report["K1"]
    # Exact search gives the same answers wherever it runs; the model ranks the corpus well.
    assert recall["native-sqlite"]["recall@5"] == recall["numpy"]["recall@5"] >= 0.9
    assert recall["native-sqlite"]["top5"] == recall["chroma"]["top5"]
    assert report["K2"]["native-sqlite"]["recall@10"] == 1.0
    assert report["K3"]["chunks"] > 0
