"""Retrieval-augmented answers: index documents into FAISS, retrieve passages, prompt with sources.

The pipeline reaches a language model only through a plain callable that takes chat
messages and returns an object with `.text` (and, if it has them, `.seconds`,
`.prompt_tokens`, `.answer_tokens`). It knows nothing about training.

    python -m rag.pipeline FOLDER "question"     # prints the top passages with scores
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rag.documents import Chunk, Skipped, chunk_document, load_documents
from rag.embeddings import Embedder, default_embedder
from rag.store import FaissStore, Hit

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "assets" / "sample" / "docs"
SYSTEM = ("Answer the question using only the numbered sources. Cite the sources you use as [1], [2]. "
          "If the sources do not hold the answer, say so.")


@dataclass
class IngestReport:
    documents: int
    chunks: int
    skipped: list[Skipped] = field(default_factory=list)

    def sentence(self) -> str:
        text = f"Indexed {self.chunks} passages from {self.documents} documents."
        for s in self.skipped:
            text += f" Skipped {s.source}: {s.reason}."
        return text


class RagPipeline:
    def __init__(self, embedder: Embedder | None = None, k: int = 3):
        self.embedder = embedder or default_embedder()
        self.store = FaissStore(self.embedder.dim)
        self.k = k

    def index(self, paths) -> IngestReport:
        docs, skipped = load_documents(paths)
        chunks: list[Chunk] = [c for d in docs for c in chunk_document(d)]
        self.store.add(chunks, self.embedder.embed([c.for_embedding() for c in chunks]))
        return IngestReport(len(docs), len(chunks), skipped)

    def retrieve(self, question: str, k: int | None = None) -> list[Hit]:
        return self.store.search(self.embedder.embed([question])[0], k or self.k)

    @staticmethod
    def messages(question: str, hits: list[Hit]) -> list[dict]:
        sources = "\n".join(
            f"[{i}] ({h.chunk.source}{' > ' + h.chunk.heading if h.chunk.heading else ''}) {h.chunk.text}"
            for i, h in enumerate(hits, start=1)
        )
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: {question}"},
        ]

    def answer(self, question: str, generate: Callable[[list[dict]], object], k: int | None = None):
        hits = self.retrieve(question, k)
        return generate(self.messages(question, hits)), hits


def sample_pipeline(embedder: Embedder | None = None) -> RagPipeline:
    pipeline = RagPipeline(embedder)
    pipeline.index([SAMPLE_DOCS])
    return pipeline


if __name__ == "__main__":
    rag = RagPipeline()
    print(rag.index([sys.argv[1]]).sentence())
    for hit in rag.retrieve(sys.argv[2]):
        print(f"{hit.score:.3f} {hit.chunk.source} > {hit.chunk.heading}: {hit.chunk.text[:80]!r}")
