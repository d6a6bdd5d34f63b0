"""``arquivo kb`` through the real entry point, with the default offline model."""

from __future__ import annotations

from pathlib import Path

from test_cli import run, run_json


def test_kb_commands(tmp_path: Path) -> None:
    url = ("--url", f"sqlite:///{tmp_path / 'kb.db'}")
    pets = tmp_path / "pets.md"
    pets.write_text(
        "Cats purr when they are content.\n\nDogs need long walks every day.\n\n"
        "Goldfish need clean water in their tank.\n"
    )
    money = tmp_path / "money.md"
    money.write_text("The central bank raised interest rates to fight inflation.\n")
    added = run_json(
        *url, "kb", "add", "notes", str(pets), str(money), "--chunk-size", "45", "--overlap", "0"
    )
    assert added["collection"] == "notes"
    assert [d["chunks"] for d in added["documents"]] == [3, 2]
    hits = run_json(*url, "kb", "query", "notes", "my kitten is happy", "-k", "2")
    assert hits[0]["text"] == "Cats purr when they are content."
    assert hits[0]["metadata"] == {"source": "pets.md"}
    assert hits[0]["score"] > hits[1]["score"]
    table = run(*url, "kb", "query", "notes", "loans and mortgages")
    assert table.returncode == 0
    assert "central bank" in table.stdout
    # Adding a file again replaces its chunks.
    run_json(*url, "kb", "add", "notes", str(money))
    (listed,) = run_json(*url, "kb", "list")
    assert listed == {
        "name": "notes",
        "dimensions": 384,
        "metric": "cosine",
        "embedder": None,
        "chunks": 4,
    }
    assert "would drop notes (4 chunks)" in run(*url, "kb", "drop", "notes", "--dry-run").stdout
    refused = run(*url, "kb", "drop", "notes", stdin="n\n")
    assert refused.returncode == 1
    assert run(*url, "kb", "drop", "notes", "--yes").returncode == 0
    assert run_json(*url, "kb", "list") == []
    missing = run(*url, "kb", "query", "notes", "anything")
    assert missing.returncode == 1
    assert "no knowledge collection 'notes'" in missing.stderr
    assert "Traceback" not in missing.stderr
    unreadable = run(*url, "kb", "add", "notes", str(tmp_path / "nope.md"))
    assert unreadable.returncode == 1
    assert "cannot read" in unreadable.stderr
