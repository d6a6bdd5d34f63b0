"""The knowledge store: retrieval quality, search latency at 100k vectors, ingest speed.

::

    .venv/bin/python benchmarks/knowledge.py                     # SQLite + Chroma, full size
    .venv/bin/python benchmarks/knowledge.py --postgres auto     # + pgvector (embedded server)
    .venv/bin/python benchmarks/knowledge.py --quick --json      # tiny sizes (CI smoke test)

K1 recall@5 on the shipped corpus (``benchmarks/data/knowledge_corpus.json``: 16 topics x
   12 sentences, 32 queries; a hit is relevant when it is from the query's topic), per
   backend, all embedded with the default model. Exact backends must agree exactly.
K2 top-10 query latency (p50/p95) over N x 384 vectors (N = 100,000), beside numpy brute
   force (``X @ q`` + ``argpartition``) in the same run: native exact search <= 2x numpy;
   ANN (pgvector HNSW, Chroma) p50 <= 5 ms with recall@10 >= 0.95 against exact.
   Each timed pass follows an untimed pass over the same queries (steady state).
   Vectors: embedding 100,000 texts would take 7 minutes on an idle machine and over an
   hour on this busy one, so the default model embeds ``--base`` real sentences (the
   corpus, then sentences from the standard library's docstrings, read with ``ast``),
   and the rest are mixtures of two random base vectors (random weights) plus 2%
   Gaussian noise, renormalised: they stay on the manifold of real sentence embeddings
   (clustered, anisotropic), unlike uniform random vectors, which make ANN look better
   or worse than it is. Queries are held-out real sentences, embedded and never stored.
   pgvector is loaded inside ``store.knowledge.bulk_load()`` (the HNSW index is built
   once, after the rows), and its ``ef_search`` is swept to show the trade-off.
K3 ingest throughput: chunks/s through ``add_document`` with the default embedder,
   beside the embedder alone on the same chunks (the store's share is the difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from embedded import postgres_url

from arquivo import Arquivo, Settings
from arquivo.knowledge import MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "data" / "knowledge_corpus.json"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_corpus() -> tuple[list[str], list[str], list[str], list[str]]:
    """Sentences with their topics, and queries with theirs."""
    topics = json.loads(CORPUS.read_text())["topics"]
    sentences, sentence_topics, queries, query_topics = [], [], [], []
    for topic, body in topics.items():
        for sentence in body["sentences"]:
            sentences.append(sentence)
            sentence_topics.append(topic)
        for query in body["queries"]:
            queries.append(query)
            query_topics.append(topic)
    return sentences, sentence_topics, queries, query_topics


@contextmanager
def stores(folder: Path, pg_url: str | None, backends: list[str]) -> Iterator[dict[str, Arquivo]]:
    """One open store per backend name."""
    opened: dict[str, Arquivo] = {}
    try:
        for name in backends:
            if name == "native-postgresql":
                if pg_url is None:
                    continue
                opened[name] = Arquivo.open(pg_url)
            elif name == "chroma":
                settings = Settings.load(
                    knowledge_backend="chroma", chroma_db_path=str(folder / "chroma")
                )
                opened[name] = Arquivo.open(
                    f"sqlite:///{folder / 'chroma-rows.db'}", settings=settings
                )
            else:
                opened[name] = Arquivo.open(f"sqlite:///{folder / 'native.db'}")
        yield opened
    finally:
        for store in opened.values():
            store.close()


def k1_recall(stores_: dict[str, Arquivo], embedder: MiniLMEmbedder) -> dict[str, Any]:
    sentences, topics, queries, query_topics = load_corpus()
    vectors = np.asarray(embedder(sentences))
    query_vectors = np.asarray(embedder(queries))
    ids = [f"s{i}" for i in range(len(sentences))]
    topic_of = dict(zip(ids, topics, strict=True))
    result: dict[str, Any] = {}
    # The exact answer, straight from numpy, as the reference.
    reference = []
    for q, topic in zip(query_vectors, query_topics, strict=True):
        top = np.argsort(-(vectors @ q), kind="stable")[:5]
        reference.append(sum(topics[i] == topic for i in top) / 5)
    result["numpy"] = {"recall@5": float(np.mean(reference))}
    for name, store in stores_.items():
        store.knowledge.create_collection("corpus", dimensions=384)
        store.knowledge.add("corpus", sentences, ids=ids, embeddings=vectors)
        scores, tops = [], []
        for q, topic in zip(query_vectors, query_topics, strict=True):
            hits = store.knowledge.query("corpus", q, k=5)
            tops.append([h.id for h in hits])
            scores.append(sum(topic_of[h.id] == topic for h in hits) / 5)
        result[name] = {"recall@5": float(np.mean(scores)), "top5": tops}
    return result


def real_sentences(limit: int, seed: int) -> list[str]:
    """English sentences from the docstrings of Python's standard library (read with
    ``ast``, nothing imported): thousands of real, varied texts, offline."""
    import ast
    import random
    import sysconfig

    folder = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, None] = {}
    for path in sorted(folder.glob("*.py")) + sorted(folder.glob("*/*.py")):
        if "test" in path.parts[-2:][0] or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            for sentence in " ".join(doc.split()).split(". "):
                sentence = sentence.strip()
                if 40 <= len(sentence) <= 240 and sentence[0].isalpha() and ">>>" not in sentence:
                    found[sentence] = None
        if len(found) >= limit * 2:
            break
    sentences = list(found)
    random.Random(seed).shuffle(sentences)
    return sentences[:limit]


def synthesize(
    embedder: MiniLMEmbedder, n: int, base: int, queries: int, seed: int
) -> tuple[Any, Any]:
    """``n`` vectors and ``queries`` query vectors on the manifold of real embeddings.

    ``base`` real sentences (the corpus and standard-library docstrings) are embedded;
    the remaining ``n - base`` vectors are mixtures of two of them (random weight) plus
    2% noise, renormalised. The queries are held-out real sentences, embedded and never
    stored, so each query's neighbours are found, not planted.
    """
    sentences, _, _, _ = load_corpus()
    rng = np.random.default_rng(seed)
    pool = real_sentences(base + queries, seed)
    held_out, extra = pool[:queries], pool[queries:]
    texts = (list(sentences) + extra)[:base]
    started = time.perf_counter()
    real = np.asarray(embedder(texts), dtype=np.float32)
    query_set = np.asarray(embedder(held_out), dtype=np.float32)
    log(
        f"K2: embedded {len(texts)} base texts and {len(held_out)} query texts in "
        f"{time.perf_counter() - started:.1f} s"
    )
    count = n - len(real)
    if count <= 0:
        return real[:n], query_set
    i = rng.integers(0, len(real), count)
    j = rng.integers(0, len(real), count)
    w = rng.uniform(0.0, 1.0, (count, 1)).astype(np.float32)
    mixed = w * real[i] + (1 - w) * real[j]
    mixed += rng.normal(0, 0.02, mixed.shape).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.concatenate([real, mixed.astype(np.float32)]), query_set


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
    }


def timed(
    call: Callable[[Any], Any], queries: Any, warmup: int | None = None
) -> tuple[list[Any], dict[str, float]]:
    # One untimed pass over the queries first (or over ``warmup`` of them): the figure
    # is the steady state, not the first reads of an index just built (pgvector's
    # HNSW graph at 100k x 384 is larger than PostgreSQL's default shared_buffers).
    for q in queries[: len(queries) if warmup is None else warmup]:
        call(q)
    results, samples = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(call(q))
        samples.append(time.perf_counter() - started)
    return results, percentiles(samples)


def k2_latency(stores_: dict[str, Arquivo], data: Any, queries: Any) -> dict[str, Any]:
    n = len(data)
    result: dict[str, Any] = {"n": n, "dimensions": int(data.shape[1])}

    def numpy_top10(q: Any) -> list[int]:
        scores = data @ q
        part = np.argpartition(-scores, 9)[:10]
        return [int(i) for i in part[np.argsort(-scores[part])]]

    exact, stats = timed(numpy_top10, queries)
    result["numpy"] = stats
    truth = [set(r) for r in exact]
    ids = [str(i) for i in range(n)]
    for name, store in stores_.items():
        knowledge = store.knowledge
        knowledge.create_collection("bench", dimensions=int(data.shape[1]))
        started = time.perf_counter()
        step = 5000
        # bulk_load: pgvector builds its HNSW index once at the end (no-op elsewhere).
        with knowledge.bulk_load("bench"):
            for start in range(0, n, step):
                knowledge.add(
                    "bench",
                    ids[start : start + step],
                    ids=ids[start : start + step],
                    embeddings=data[start : start + step],
                )
            loaded = time.perf_counter()
        total_s = time.perf_counter() - started
        log(f"K2: loaded {n} vectors into {name} in {total_s:.1f} s")
        if store.dialect == "postgresql":
            # What autovacuum would do after 100k inserts, done now rather than in
            # the middle of the timed queries (it takes a core for seconds).
            with store.engine.connect() as connection:
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                autocommit.exec_driver_sql("VACUUM (ANALYZE) knowledge_chunks")
                # And the load's dirty pages written now: a checkpoint spreading ~400MB
                # of writes over the next minutes would run under the timed queries.
                autocommit.exec_driver_sql("CHECKPOINT")
                row_extra = {
                    "shared_buffers": autocommit.exec_driver_sql("SHOW shared_buffers").scalar(),
                    "index_size": autocommit.exec_driver_sql(
                        "SELECT pg_size_pretty(sum(pg_relation_size(indexrelid))) FROM pg_index "
                        "WHERE starts_with(indexrelid::regclass::text, 'ix_knowledge_ann_')"
                    ).scalar(),
                }
        else:
            row_extra = {}
        row: dict[str, Any] = {
            "load_vectors_per_s": n / (loaded - started),
            "index_build_s": total_s - (loaded - started),
            **row_extra,
        }
        backend = knowledge.backend
        approximate = backend.approximate

        def search(q: Any, exact_: bool = False, store_: Arquivo = store) -> list[int]:
            hits = store_.knowledge.query("bench", q, k=10, exact=exact_)
            return [int(h.id) for h in hits]

        def recall(found: list[list[int]]) -> float:
            return float(np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth, strict=True)]))

        found, stats = timed(search, queries)
        row.update(stats)
        row["recall@10"] = recall(found)
        row["ratio_p50_vs_numpy"] = stats["p50_ms"] / result["numpy"]["p50_ms"]
        if approximate and backend.exact_search:
            _, exact_stats = timed(lambda q: search(q, True), queries[:20], warmup=1)
            row["exact_p50_ms"] = exact_stats["p50_ms"]
        if hasattr(backend, "ef_search"):
            # The evidence for the default: recall and latency per candidate-list size.
            default = backend.ef_search
            sweep = {}
            for ef in (40, 64, 100, 128, 160, 240):
                backend.ef_search = ef
                found_ef, stats_ef = timed(search, queries)
                sweep[str(ef)] = {**stats_ef, "recall@10": recall(found_ef)}
                log(f"K2: {name} ef_search {ef}: {json.dumps(sweep[str(ef)], default=float)}")
            backend.ef_search = default
            row["ef_search"] = {"default": default, "sweep": sweep}
        if not approximate:
            row["target"] = "p50 <= 2x numpy"
            row["pass"] = row["ratio_p50_vs_numpy"] <= 2.0
        else:
            row["target"] = "p50 <= 5 ms, recall@10 >= 0.95"
            row["pass"] = stats["p50_ms"] <= 5.0 and row["recall@10"] >= 0.95
        result[name] = row
        log(f"K2: {name}: {json.dumps(row, default=float)}")
    return result


def k3_ingest(store: Arquivo, embedder: MiniLMEmbedder, documents: int) -> dict[str, Any]:
    sentences, _, _, _ = load_corpus()
    texts = [" ".join(sentences[i : i + 12]) * 2 for i in range(0, len(sentences), 12)]
    texts = (texts * (documents // len(texts) + 1))[:documents]
    store.knowledge.create_collection("ingest", embedder=embedder)
    from arquivo.knowledge.chunking import split_text

    chunks = [c for t in texts for c in split_text(t, chunk_size=300, overlap=50)]
    embedder(chunks[:8])  # load the model before timing either side
    started = time.perf_counter()
    embedder(chunks)
    alone = time.perf_counter() - started
    started = time.perf_counter()
    total = 0
    for i, text in enumerate(texts):
        total += len(
            store.knowledge.add_document(
                "ingest", text, document_id=f"d{i}", chunk_size=300, overlap=50
            ).chunk_ids
        )
    through = time.perf_counter() - started
    assert total == len(chunks)
    return {
        "chunks": total,
        "embedder_alone_chunks_per_s": total / alone,
        "add_document_chunks_per_s": total / through,
        "ratio": (total / through) / (total / alone),
    }


#: ``shared_buffers`` of the embedded PostgreSQL (``--postgres auto``).
PG_SHARED_BUFFERS = "512MB"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL URL, or 'auto' for an embedded one"
    )
    parser.add_argument("--vectors", type=int, default=100_000, help="K2 collection size")
    parser.add_argument("--base", type=int, default=3000, help="K2 really embedded texts")
    parser.add_argument("--no-chroma", action="store_true", help="skip the Chroma backend")
    args = parser.parse_args(argv)
    n = 2000 if args.quick else args.vectors
    base = 300 if args.quick else min(args.base, n)
    queries = 20 if args.quick else 100
    documents = 8 if args.quick else 64
    backends = ["native-sqlite", "native-postgresql"] + ([] if args.no_chroma else ["chroma"])
    embedder = MiniLMEmbedder()
    report: dict[str, Any] = {}
    # An HNSW index is read at random: PostgreSQL's default shared_buffers (128MB)
    # holds less than the 100k x 384 index (~195MB), and pages copied in from the OS
    # cache on every query made p50 swing 4.5-6.8 ms from run to run. A server is
    # given memory for its data; the embedded one gets enough for this index.
    with postgres_url(
        args.postgres, "arquivo_bench_knowledge", {"shared_buffers": PG_SHARED_BUFFERS}
    ) as pg_url:
        with tempfile.TemporaryDirectory() as tmp, stores(Path(tmp), pg_url, backends) as opened:
            log("K1: recall@5 on the corpus")
            report["K1"] = k1_recall(opened, embedder)
        with tempfile.TemporaryDirectory() as tmp, stores(Path(tmp), pg_url, backends) as opened:
            data, query_set = synthesize(embedder, n, base, queries, seed=7)
            report["K2"] = k2_latency(opened, data, query_set)
        with (
            tempfile.TemporaryDirectory() as tmp,
            stores(Path(tmp), None, ["native-sqlite"]) as opened,
        ):
            report["K3"] = k3_ingest(opened["native-sqlite"], embedder, documents)

    k1 = report["K1"]
    print("K1 recall@5 on the shipped corpus (16 topics x 12 sentences, 32 queries)")
    for name, row in k1.items():
        print(f"  {name:20s} {row['recall@5']:.3f}")
    exact_names = [n for n in ("native-sqlite",) if n in k1]
    same = all(k1[name]["recall@5"] == k1["numpy"]["recall@5"] for name in exact_names)
    print(f"  exact backends equal to numpy: {'PASS' if same else 'FAIL'}")
    k2 = report["K2"]
    print(
        f"K2 top-10 latency over {k2['n']:,} x {k2['dimensions']} vectors "
        "(baseline: numpy in this run)"
    )
    print(
        f"  {'numpy X @ q':20s} p50 {k2['numpy']['p50_ms']:7.2f} ms  "
        f"p95 {k2['numpy']['p95_ms']:7.2f} ms"
    )
    for name, row in k2.items():
        if not isinstance(row, dict) or name == "numpy":
            continue
        extra = f"  exact p50 {row['exact_p50_ms']:.2f} ms" if "exact_p50_ms" in row else ""
        if row["index_build_s"] >= 0.05:
            extra += f"  index built in {row['index_build_s']:.1f} s"
        if "shared_buffers" in row:
            extra += f" ({row['index_size']}; shared_buffers {row['shared_buffers']})"
        print(
            f"  {name:20s} p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms  "
            f"x{row['ratio_p50_vs_numpy']:.2f} numpy  recall@10 {row['recall@10']:.3f}  "
            f"load {row['load_vectors_per_s']:,.0f}/s{extra}  [{row['target']}: "
            f"{'PASS' if row['pass'] else 'FAIL'}]"
        )
        for ef, point in row.get("ef_search", {}).get("sweep", {}).items():
            mark = " (default)" if int(ef) == row["ef_search"]["default"] else ""
            print(
                f"    ef_search {ef:>4s}: p50 {point['p50_ms']:7.2f} ms  "
                f"p95 {point['p95_ms']:7.2f} ms  recall@10 {point['recall@10']:.3f}{mark}"
            )
    k3 = report["K3"]
    print(
        f"K3 ingest: add_document {k3['add_document_chunks_per_s']:.0f} chunks/s vs the embedder "
        f"alone {k3['embedder_alone_chunks_per_s']:.0f} chunks/s (ratio {k3['ratio']:.2f}, "
        f"{k3['chunks']} chunks)"
    )
    if args.json:
        print()
        print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
