"""Schemathesis fuzzes every operation of the OpenAPI document: no answer may be a 500.

Short in CI (a few examples per operation, a fixed seed so a run is reproducible); set
ARQUIVO_FUZZ_EXAMPLES=100, ARQUIVO_FUZZ_SEED=random and
ARQUIVO_FUZZ_PHASES=examples,coverage,fuzzing,stateful for a long exploratory run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server_support import LiveServer

ST = Path(sys.executable).with_name("st")


def test_no_generated_request_gets_a_server_error(live: LiveServer, tmp_path: Path) -> None:
    examples = os.environ.get("ARQUIVO_FUZZ_EXAMPLES", "5")
    phases = os.environ.get("ARQUIVO_FUZZ_PHASES", "examples,fuzzing")
    seed = os.environ.get("ARQUIVO_FUZZ_SEED", "20261126")
    seeding = [] if seed == "random" else ["--seed", seed]
    result = subprocess.run(
        [
            str(ST),
            "run",
            f"{live.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {live.tokens['admin']}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            examples,
            "--phases",
            phases,
            "--generation-database",
            "none",
            "--no-color",
            *seeding,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "Traceback" not in live.log.read_text()
