"""The vectors in the backup set: native (rows of the database) and Chroma's folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from arquivo import Arquivo, BackupManager
from arquivo.backup import Backups
from arquivo.backup.manifest import MANIFEST
from arquivo.errors import ConflictError
from arquivo.knowledge.values import Hit
from arquivo.settings import Settings
from conftest import Backend
from test_backup import _drop, _other_target
from test_cli import run_json

_RNG = np.random.default_rng(7)
_VECTORS = _RNG.standard_normal((60, 16)).astype(np.float32)
_QUERIES = _RNG.standard_normal((5, 16)).astype(np.float32)


def _fill_knowledge(store: Arquivo, name: str = "docs") -> None:
    store.knowledge.create_collection(name, dimensions=16)
    store.knowledge.add(
        name,
        [f"text {i}" for i in range(len(_VECTORS))],
        ids=[f"c{i}" for i in range(len(_VECTORS))],
        metadatas=[{"n": i, "even": i % 2 == 0} for i in range(len(_VECTORS))],
        embeddings=_VECTORS.tolist(),
        user_id="u1",
    )


def _answers(store: Arquivo, name: str = "docs") -> list[list[tuple[str, str, float]]]:
    found = []
    for query in _QUERIES:
        hits: list[Hit] = store.knowledge.query(name, query.tolist(), k=5)
        found.append([(h.id, h.text, round(h.distance, 5)) for h in hits])
        filtered = store.knowledge.query(name, query.tolist(), k=3, where={"even": True})
        found.append([(h.id, h.text, round(h.distance, 5)) for h in filtered])
    return found


def test_native_vectors_round_trip_through_a_backup(backend: Backend, tmp_path: Path) -> None:
    with Arquivo.open(backend.url) as store:
        _fill_knowledge(store)
        before = _answers(store)
        chunk = store.knowledge.get("docs", ["c3"])[0]
        info = Backups(store.engine, tmp_path / "b").create()
    assert info.tables["knowledge_chunks"] == len(_VECTORS)
    assert info.component("vectors") is None  # native: the vectors are database rows
    target = _other_target(backend, tmp_path)
    try:
        Backups(None, tmp_path / "b").restore(info.id, to=target)
        with Arquivo.open(target) as copy:
            assert _answers(copy) == before
            again = copy.knowledge.get("docs", ["c3"])[0]
            assert again.metadata == chunk.metadata
            assert np.allclose(again.embedding, chunk.embedding)
    finally:
        _drop(backend, target)


def test_native_vectors_survive_a_restore_across_databases(
    sqlite_backend: Backend, postgres_backend: Backend, tmp_path: Path
) -> None:
    with Arquivo.open(sqlite_backend.url) as store:
        _fill_knowledge(store)
        before = _answers(store)
        info = Backups(store.engine, tmp_path / "b").create()
    Backups(None, tmp_path / "b").restore(info.id, to=postgres_backend.url)
    with Arquivo.open(postgres_backend.url) as copy:
        assert _answers(copy) == before
        back = Backups(copy.engine, tmp_path / "b").create()
    # And back: the PostgreSQL backup into a new SQLite file.
    home = f"sqlite:///{tmp_path / 'back' / 'arquivo.db'}"
    Backups(None, tmp_path / "b").restore(back.id, to=home)
    with Arquivo.open(home) as again:
        assert _answers(again) == before


def _chroma_store(tmp_path: Path) -> Arquivo:
    settings = Settings.load(
        knowledge_backend="chroma",
        chroma_db_path=str(tmp_path / "chroma"),
        backup_dir=str(tmp_path / "backups"),
    )
    return Arquivo.open(f"sqlite:///{tmp_path / 'arquivo.db'}", settings=settings)


def test_the_chroma_folder_is_backed_up_verified_and_restored(tmp_path: Path) -> None:
    with _chroma_store(tmp_path) as store:
        _fill_knowledge(store)
        store.preferences.set("u1", "theme", "dark")
        before = _answers(store)
        info = store.backups.create(label="with vectors")
        vectors = info.component("vectors")
        assert vectors is not None
        assert vectors.kind == "chroma"
        assert vectors.details["collections"] == {"docs": len(_VECTORS)}
        members = vectors.details["members"]
        assert "chroma.sqlite3" in members
        assert all(len(m["sha256"]) == 64 for m in members.values())
        report = store.backups.verify(info.id)
        assert report.ok, report.problems
        assert report.files_checked == 2
        assert report.collections == {"docs": len(_VECTORS)}
        # The seeds' BackupManager backs up the same set.
        whole = asyncio.run(BackupManager(tmp_path / "seed", store=store).backup())
        assert whole.component("vectors") is not None

        # Change both the database and the vectors, then go back.
        store.knowledge.drop_collection("docs")
        _fill_knowledge(store, "other")
        store.preferences.set("u1", "theme", "light")
        with pytest.raises(ConflictError):
            store.backups.restore(info.id)
        restored = store.backups.restore(info.id, force=True)
    assert restored.vectors_restored_to == str((tmp_path / "chroma").resolve())
    assert restored.safety_backup_id is not None

    with _chroma_store(tmp_path) as store:
        assert store.preferences.get("u1", "theme") == "dark"
        assert [c.name for c in store.knowledge.collections()] == ["docs"]
        assert _answers(store) == before
        safety = store.backups.get(restored.safety_backup_id)
        assert safety.component("vectors") is not None
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".chroma")]
    assert leftovers == []


def test_a_tampered_vectors_archive_fails_verify(tmp_path: Path) -> None:
    with _chroma_store(tmp_path) as store:
        _fill_knowledge(store)
        info = store.backups.create()
    vectors = info.component("vectors")
    assert vectors is not None
    packed = info.path / vectors.files[0].path
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    report = Backups(None, tmp_path / "backups").verify(info.id, restore=False)
    assert not report.ok
    assert any("vectors.chroma.tar" in p for p in report.problems)


def test_backup_create_from_the_cli_includes_chroma(tmp_path: Path) -> None:
    with _chroma_store(tmp_path) as store:
        _fill_knowledge(store)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'arquivo.db'}",
        "ARQUIVO_BACKUP_DIR": str(tmp_path / "backups"),
        "ARQUIVO_KNOWLEDGE_BACKEND": "chroma",
        "CHROMA_DB_PATH": str(tmp_path / "chroma"),
    }
    created = run_json("backup", "create", env=env)
    names = [c["name"] for c in created["components"]]
    assert names == ["database", "vectors"]
    manifest = json.loads((Path(created["path"]) / MANIFEST).read_text())
    assert manifest["components"][1]["details"]["collections"] == {"docs": len(_VECTORS)}
    url = sa.make_url(env["DATABASE_URL"])
    assert url.database
