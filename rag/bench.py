"""RAG benchmarks: ingest cost against the bare embedder, and query latency and recall at scale.

    studio rag bench [--sizes 10000,100000]     (or: python -m rag.bench)

1. Ingest: the bundled documents copied 20 times under new names go through the whole
   pipeline (read, chunk by tokens, embed, add to FAISS) with no embedding cache; then the
   embedder alone encodes the very same chunk texts. The ratio is the pipeline's overhead.
2. Query: stores of N chunks with synthetic clustered 384-d vectors (real embeddings of
   100k chunks would take most of an hour to compute on 2 cores); the index is the one the
   store picks for that size (exact below 20k, HNSW above), timed per single query over 200
   queries, with recall@5 against exact search, plus the cost of embedding a real question.
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


def _clustered(n: int, dim: int, rng) -> np.ndarray:
    centres = rng.normal(size=(max(10, n // 200), dim)).astype(np.float32)
    return centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)


def bench_query(n: int, dim: int = 384, queries: int = 200) -> dict:
    rng = np.random.default_rng(0)
    store = FaissStore(dim)
    start = time.perf_counter()
    store.add([Chunk(f"doc{i // 20}", "", "", 0, 0) for i in range(n)], _clustered(n, dim, rng))
    build_s = time.perf_counter() - start
    qs = _clustered(queries, dim, np.random.default_rng(1))
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
    print(f"{'chunks':>8} {'index':>6} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@5':>9}")
    for n in sizes:
        r = bench_query(n)
        print(f"{r['chunks']:>8} {r['index']:>6} {r['build_s']:>8.1f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
              f"{r['recall_at_5']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(tuple(int(x) for x in sys.argv[1].split(",")) if len(sys.argv) > 1 else (10_000, 100_000)))
