"""The shipped embedders: the offline MiniLM model, and an OpenAI-compatible HTTP client
talking to a real (tiny) HTTP server that speaks the ``/v1/embeddings`` shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from arquivo import Arquivo, ArquivoError
from arquivo.knowledge import MiniLMEmbedder, OpenAIEmbedder
from arquivo.knowledge.embedders import embed_texts


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The default model, loaded once per test session."""
    return MiniLMEmbedder()


def test_minilm_embeds_meaning_offline(minilm: MiniLMEmbedder) -> None:
    vectors = np.asarray(
        minilm(
            [
                "A man is eating food.",
                "A man is eating a piece of bread.",
                "The girl is carrying a baby.",
                "",
            ]
        )
    )
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar = float(vectors[0] @ vectors[1])
    unrelated = float(vectors[0] @ vectors[2])
    # all-MiniLM-L6-v2 at full precision gives about 0.75 and -0.1 for these pairs.
    assert 0.65 < similar < 0.85
    assert unrelated < 0.1
    # Batching and padding do not change a text's vector.
    alone = np.asarray(minilm(["A man is eating food."]))[0]
    assert float(alone @ vectors[0]) > 0.9999


def test_long_texts_are_truncated_not_rejected(minilm: MiniLMEmbedder) -> None:
    vector = np.asarray(minilm(["word " * 5000]))
    assert vector.shape == (1, 384)
    assert np.isfinite(vector).all()


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if body["model"] == "broken":
            self._send(500, {"error": {"message": "model exploded"}})
            return
        # A deterministic "model": vector = [len(text), count of 'a', 1.0], in shuffled order.
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [float(len(t)), float(t.count("a")), 1.0],
            }
            for i, t in enumerate(body["input"])
        ]
        self._send(200, {"object": "list", "data": list(reversed(data)), "model": body["model"]})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_openai_embedder_over_real_http(embeddings_server: str, tmp_path: Any) -> None:
    embedder = OpenAIEmbedder(embeddings_server, "tiny", api_key="sk-test", batch_size=2)
    assert embedder(["a", "banana", "xyz"]) == [[1.0, 1.0, 1.0], [6.0, 3.0, 1.0], [3.0, 0.0, 1.0]]
    assert [len(r["body"]["input"]) for r in _Handler.requests] == [2, 1]
    assert _Handler.requests[0]["path"] == "/v1/embeddings"
    assert _Handler.requests[0]["auth"] == "Bearer sk-test"
    with Arquivo.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        store.knowledge.create_collection("http", embedder=embedder, metric="l2")
        store.knowledge.add("http", ["banana", "a", "xyz"], ids=["b", "a", "x"])
        assert store.knowledge.collection("http").embedder == "openai:tiny"
        assert [h.id for h in store.knowledge.query("http", "bananas", k=2)] == ["b", "x"]


def test_openai_embedder_errors_are_arquivo_errors(embeddings_server: str) -> None:
    with pytest.raises(ArquivoError, match="500"):
        OpenAIEmbedder(embeddings_server, "broken")(["x"])
    with pytest.raises(ArquivoError, match="cannot reach"):
        OpenAIEmbedder("http://127.0.0.1:9/v1", "tiny", timeout=2)(["x"])


def test_async_embedders_work_from_sync_code(tmp_path: Any) -> None:
    async def embed(texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0] for t in texts]

    assert embed_texts(embed, ["ab", "c"]) == [[2.0, 1.0], [1.0, 1.0]]
    with Arquivo.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        store.knowledge.create_collection("async", embedder=embed, metric="l2")
        store.knowledge.add("async", ["four", "x"], ids=["4", "1"])
        assert store.knowledge.query("async", "fiv", k=1)[0].id == "4"
