"""Retrieval-augmented answers: ingest documents into a FAISS collection, retrieve, prompt with sources.

The pipeline reaches a language model only through plain callables; it knows nothing about
training. Collections live under `collections_root()` (`$STUDIO_INDEXES`, else
`/data/indexes` when writable, else `./indexes`) and are saved after each change and
reloaded at start; embeddings are cached there by content hash, so re-ingesting unchanged
files costs nothing. Retrieval: top-k, a score threshold, optional MMR diversity and an
optional cross-encoder reranker. The prompt numbers its sources [1], [2] and is trimmed
by the answering model's tokenizer to fit its context window.

    python -m rag.pipeline FOLDER "question"     # prints the top passages with scores
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rag.documents import Chunk, Skipped, chunk_document, load_documents
from rag.embeddings import EmbeddingCache, Embedder, default_embedder
from rag.store import FaissStore, Hit
from rag.errors import RagError

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "assets" / "sample" / "docs"
SYSTEM = ("Answer the question using only the numbered sources. Cite the sources you use as [1], [2]. "
          "If the sources do not hold the answer, say so.")


def collections_root() -> Path:
    if os.environ.get("STUDIO_INDEXES"):
        root = Path(os.environ["STUDIO_INDEXES"])
    elif os.path.isdir("/data") and os.access("/data", os.W_OK):
        root = Path("/data/indexes")
    else:
        root = Path("indexes")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class IngestReport:
    documents: int
    chunks: int
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0  # chunks that were not in the embedding cache
    seconds: float = 0.0

    def sentence(self) -> str:
        text = (f"Indexed {self.chunks} passages from {self.documents} documents in {self.seconds:.1f} s "
                f"({self.embedded} newly embedded, {self.chunks - self.embedded} from the cache).")
        for s in self.skipped:
            text += f" Skipped {s.source}: {s.reason}."
        return text


class Reranker:
    """A sentence-transformers CrossEncoder that re-scores (question, passage) pairs."""

    def __init__(self, name: str):
        from sentence_transformers import CrossEncoder

        self.name = name
        self.model = CrossEncoder(name, device="cpu")

    def rerank(self, question: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self.model.predict([(question, h.chunk.text) for h in hits], show_progress_bar=False)
        order = np.argsort(-np.asarray(scores, dtype=np.float32).reshape(len(hits), -1)[:, 0])
        return [Hit(hits[i].chunk, float(np.asarray(scores).reshape(len(hits), -1)[i, 0]), hits[i].id) for i in order]


class RagPipeline:
    def __init__(self, embedder: Embedder | None = None, k: int = 3, min_score: float = 0.0,
                 mmr: float = 0.0, reranker: Reranker | None = None, name: str | None = None):
        self.embedder = embedder or default_embedder()
        self.store = FaissStore(self.embedder.dim)
        self.k, self.min_score, self.mmr, self.reranker = k, min_score, mmr, reranker
        self.name = name
        if name and self.embedder.cache is None:
            self.embedder.cache = EmbeddingCache(collections_root() / "embeddings.sqlite")

    # ---- collections ----------------------------------------------------------------

    @property
    def folder(self) -> Path | None:
        return collections_root() / self.name if self.name else None

    @classmethod
    def open(cls, name: str, embedder: Embedder | str | None = None, **settings) -> "RagPipeline":
        """The saved collection `name` with the embedder it was built with, or a new empty one.

        `embedder` may be an Embedder, a sentence-transformers model id or folder, or None
        (the collection's own embedder, else the embedded default).
        """
        meta_file = collections_root() / name / "meta.json"
        saved = json.loads(meta_file.read_text()).get("embedder") if meta_file.exists() else None
        if isinstance(embedder, str) and saved and embedder != saved:
            raise RagError(f"collection {name!r} was built with {saved}; it cannot be searched with {embedder}")
        if not isinstance(embedder, Embedder):
            wanted = embedder or saved
            embedder = default_embedder() if wanted in (None, default_embedder().name) else Embedder(wanted)
        pipeline = cls(embedder, name=name, **settings)
        if meta_file.exists():
            pipeline.store = FaissStore.load(pipeline.folder)
        return pipeline

    def save(self) -> None:
        if self.folder:
            self.store.save(self.folder, embedder=self.embedder.name)

    # ---- documents ------------------------------------------------------------------

    def index(self, paths, column: str | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> IngestReport:
        """Add documents; a document already in the collection is replaced, not duplicated."""
        start, embedded0 = time.perf_counter(), self.embedder.embedded
        docs, skipped = load_documents(paths, column, progress)
        chunks: list[Chunk] = []
        for doc in docs:
            self.store.remove(doc.source)
            chunks += chunk_document(doc, max_tokens=min(128, self.embedder.max_tokens - 16), overlap_tokens=24,
                                     count=self.embedder.count_tokens)
        vectors = self.embedder.embed([c.for_embedding() for c in chunks])
        self.store.add(chunks, vectors)
        self.save()
        return IngestReport(len(docs), len(chunks), skipped, self.embedder.embedded - embedded0,
                            time.perf_counter() - start)

    def remove(self, source: str) -> int:
        n = self.store.remove(source)
        self.save()
        return n

    # ---- retrieval ------------------------------------------------------------------

    def retrieve(self, question: str, k: int | None = None, min_score: float | None = None,
                 mmr: float | None = None) -> list[Hit]:
        k = k or self.k
        mmr = self.mmr if mmr is None else mmr
        min_score = self.min_score if min_score is None else min_score
        query = self.embedder.embed([question])[0]
        wide = k * 4 if (mmr or self.reranker) else k
        hits = [h for h in self.store.search(query, wide) if h.score >= min_score]
        if self.reranker:
            hits = self.reranker.rerank(question, hits)
        elif mmr:
            hits = self._mmr(query, hits, k, mmr)
        return hits[:k]

    def _mmr(self, query: np.ndarray, hits: list[Hit], k: int, diversity: float) -> list[Hit]:
        """Maximal marginal relevance: trade similarity to the question against similarity to picks."""
        chosen: list[Hit] = []
        vectors = {h.id: self.store.vectors[h.id] for h in hits}
        pool = list(hits)
        while pool and len(chosen) < k:
            def value(h):
                redundancy = max((float(vectors[h.id] @ vectors[c.id]) for c in chosen), default=0.0)
                return (1 - diversity) * h.score - diversity * redundancy
            best = max(pool, key=value)
            chosen.append(best)
            pool.remove(best)
        return chosen

    @staticmethod
    def messages(question: str, hits: list[Hit], tokenizer=None, max_prompt_tokens: int | None = None) -> list[dict]:
        """The chat prompt with numbered sources; trimmed by `tokenizer` to `max_prompt_tokens` if given."""
        passages = [h.chunk.text for h in hits]

        def build(texts):
            sources = "\n".join(
                f"[{i}] ({h.chunk.source}{' > ' + h.chunk.location() if h.chunk.location() else ''}) {t}"
                for i, (h, t) in enumerate(zip(hits, texts), start=1))
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"}]

        msgs = build(passages)
        if tokenizer is None or not max_prompt_tokens:
            return msgs

        def size(m):
            text = tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        over = size(msgs) - max_prompt_tokens
        for i in reversed(range(len(passages))):  # the least relevant passage gives way first
            if over <= 0:
                break
            ids = tokenizer(passages[i], add_special_tokens=False)["input_ids"]
            keep = max(0, len(ids) - over - 2)
            passages[i] = tokenizer.decode(ids[:keep]) + (" ..." if keep else "")
            msgs = build(passages)
            over = size(msgs) - max_prompt_tokens
        return msgs

    def answer(self, question: str, generate: Callable[[list[dict]], object], k: int | None = None):
        hits = self.retrieve(question, k)
        return generate(self.messages(question, hits)), hits


def chat_prompt(turns: list[dict], question: str, system: str = "", hits: list[Hit] | None = None) -> list[dict]:
    """The messages of a multi-turn chat: the system prompt, the earlier turns, the question (with numbered
    sources when retrieval found any; the retrieval system prompt stands in when none was typed)."""
    if hits:
        rag_system, last = RagPipeline.messages(question, hits)
        system = system or rag_system["content"]
    else:
        last = {"role": "user", "content": question}
    return ([{"role": "system", "content": system}] if system.strip() else []) + list(turns) + [last]


def sample_pipeline(embedder: Embedder | None = None) -> RagPipeline:
    """The bundled Zorvane documents as a saved collection; re-indexing them hits the embedding cache."""
    pipeline = RagPipeline.open("zorvane-sample", embedder)
    pipeline.index([SAMPLE_DOCS])
    return pipeline


if __name__ == "__main__":
    rag = RagPipeline()
    print(rag.index([sys.argv[1]]).sentence())
    for hit in rag.retrieve(sys.argv[2]):
        print(f"{hit.score:.3f} {hit.chunk.source} > {hit.chunk.location()}: {hit.chunk.text[:80]!r}")
