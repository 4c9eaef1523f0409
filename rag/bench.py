"""RAG benchmarks: ingest cost against the bare embedder, and query latency and recall at scale.

    studio rag bench [--sizes 10000,100000]     (or: python -m rag.bench)

1. Ingest: the bundled documents copied 20 times under new names go through the whole
   pipeline (read, chunk by tokens, embed, add to FAISS) with no embedding cache; then the
   embedder alone encodes the very same chunk texts. The ratio is the pipeline's overhead.
2. Query: stores of N chunks of synthetic 384-d vectors shaped like a collection (topics,
   documents, chunks; real embeddings of 100k chunks would take most of an hour on 2 cores);
   the index is the one the store picks for that size (exact below 20k, HNSW above), timed
   per single query over 200 queries, with recall@5 against exact search, for questions
   aimed at one passage and for a near-tie worst case; plus the cost of embedding a question.
Nothing else should be running while it measures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.documents import Chunk
from rag.embeddings import Embedder
from rag.pipeline import SAMPLE_DOCS, RagPipeline
from rag.store import FaissStore


def bench_ingest(embedder: Embedder, copies: int = 20) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(copies):
            for doc in SAMPLE_DOCS.glob("*.md"):
                text = doc.read_text().replace("Tilly", f"Tilly{i}")  # distinct texts: nothing is reused
                (Path(tmp) / f"{doc.stem}-{i}.md").write_text(text)
        pipeline = RagPipeline(embedder)
        start = time.perf_counter()
        report = pipeline.index([tmp])
        pipeline_s = time.perf_counter() - start
    texts = [c.for_embedding() for c in pipeline.store.chunks if c is not None]
    start = time.perf_counter()
    embedder._encode(texts)
    bare_s = time.perf_counter() - start
    return {"chunks": report.chunks, "pipeline_chunks_per_s": report.chunks / pipeline_s,
            "embedder_chunks_per_s": len(texts) / bare_s, "overhead": pipeline_s / bare_s}


def corpus(n: int, dim: int, rng) -> np.ndarray:
    """Topics -> documents (20 chunks each) -> chunks, as real collections are shaped."""
    topics = rng.normal(size=(max(10, n // 200), dim)).astype(np.float32)
    docs = topics[rng.integers(0, len(topics), max(1, n // 20))] + 0.6 * rng.normal(size=(max(1, n // 20), dim))
    return (docs[np.arange(n) // 20 % len(docs)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def bench_query(n: int, dim: int = 384, queries: int = 200, near_ties: bool = False) -> dict:
    """Latency and recall@5 of single queries against a store of n chunks.

    Queries are noisy copies of chunks (a question aimed at one passage). With `near_ties`,
    queries are drawn from the clusters' spread instead, so hundreds of chunks score almost
    alike: a worst case for any approximate index.
    """
    rng = np.random.default_rng(0)
    vectors = corpus(n, dim, rng)
    store = FaissStore(dim)
    start = time.perf_counter()
    store.add([Chunk(f"doc{i // 20}", "", "", 0, 0) for i in range(n)], vectors)
    build_s = time.perf_counter() - start
    qrng = np.random.default_rng(1)
    if near_ties:
        qs = vectors[qrng.integers(0, n, queries)] + 2.0 * qrng.normal(size=(queries, dim)).astype(np.float32)
    else:
        qs = vectors[qrng.integers(0, n, queries)] + 0.5 * qrng.normal(size=(queries, dim)).astype(np.float32)
    times = []
    for q in qs:
        t = time.perf_counter()
        store.search(q, 5)
        times.append((time.perf_counter() - t) * 1000)
    return {"chunks": n, "index": store.kind, "build_s": build_s, "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)), "recall_at_5": store.recall(qs[:100], 5)}


def main(sizes=(10_000, 100_000)) -> int:
    embedder = Embedder()
    ing = bench_ingest(embedder)
    print(f"ingest: {ing['chunks']} chunks; pipeline {ing['pipeline_chunks_per_s']:.0f} chunks/s, bare embedder "
          f"{ing['embedder_chunks_per_s']:.0f} chunks/s on the same texts: the pipeline takes "
          f"{ing['overhead']:.2f}x the embedder's time")
    questions = ["How heavy is the Tilly T2?", "What does error E31 mean?", "When is support open?"] * 10
    t = time.perf_counter()
    for q in questions:
        embedder.embed([q])
    embed_ms = (time.perf_counter() - t) * 1000 / len(questions)
    print(f"query embedding: {embed_ms:.1f} ms per question (added to every search below)")
    print(f"{'queries':>11} {'chunks':>8} {'index':>6} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@5':>9}")
    for near_ties in (False, True):
        for n in sizes:
            r = bench_query(n, near_ties=near_ties)
            print(f"{'near-ties' if near_ties else 'passage':>11} {r['chunks']:>8} {r['index']:>6} {r['build_s']:>8.1f} "
                  f"{r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['recall_at_5']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(tuple(int(x) for x in sys.argv[1].split(",")) if len(sys.argv) > 1 else (10_000, 100_000)))
