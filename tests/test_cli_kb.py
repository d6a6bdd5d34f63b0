"""``arquivo kb`` through the real entry point, with the default offline model."""

from __future__ import annotations

from pathlib import Path

import pytest

from arquivo import Arquivo, Settings
from knowledge_support import chroma_server
from test_cli import run, run_json

__all__ = ["chroma_server"]  # the session's Chroma server, for the seeds' CHROMA_HOST


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


@pytest.mark.parametrize("where", ["CHROMA_DB_PATH", "CHROMA_HOST"])
def test_the_seeds_chroma_setup(tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    # The seeds' .env names only CHROMA_DB_PATH or CHROMA_HOST: that alone selects Chroma,
    # and "forget this user" reaches its vectors.
    if where == "CHROMA_HOST":
        value = request.getfixturevalue("chroma_server")
    else:
        value = str(tmp_path / "chroma")
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///./rows.db\n{where}={value}\n")
    note = tmp_path / "note.md"
    note.write_text("Ana keeps her bicycle in the garage next to the garden tools.\n")
    added = run_json("kb", "add", "seeded", str(note), "--user", "ana", cwd=tmp_path)
    assert added["documents"][0]["chunks"] == 1
    settings = Settings.load(**{where.lower(): value})
    with Arquivo.open(f"sqlite:///{tmp_path / 'rows.db'}", settings=settings) as store:
        assert store.knowledge.backend.name == "chroma"
        (hit,) = store.knowledge.query("seeded", "where is the bike?", k=1)
        assert hit.user_id == "ana"
        assert "bicycle" in hit.text
        report = run_json("forget-user", "ana", "--yes", cwd=tmp_path)
        assert report["rows"]["knowledge (vector store)"] == 1
        assert store.knowledge.count("seeded") == 0
        store.knowledge.drop_collection("seeded")  # the session's server is shared
    if where == "CHROMA_DB_PATH":
        assert (tmp_path / "chroma" / "chroma.sqlite3").exists()
    # The rows database holds no chunks: they live in Chroma.
    with Arquivo.open(f"sqlite:///{tmp_path / 'rows.db'}") as native:
        assert native.knowledge.collections() == []
