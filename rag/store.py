"""A FAISS vector store behind four methods: add, search, save, load.

Vectors are L2-normalised, so inner product is cosine similarity; the index is an exact
`IndexFlatIP`. Chunks are kept beside the index in `chunks.jsonl`. A saved store is
written to a temporary folder and renamed, so a half-written index never looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.documents import Chunk


@dataclass
class Hit:
    chunk: Chunk
    score: float


class FaissStore:
    def __init__(self, dim: int):
        self.index = faiss.IndexFlatIP(dim)
        self.chunks: list[Chunk] = []

    def __len__(self) -> int:
        return len(self.chunks)

    def add(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        faiss.normalize_L2(vectors)
        self.index.add(vectors)
        self.chunks.extend(chunks)

    def search(self, vector: np.ndarray, k: int = 4) -> list[Hit]:
        if not self.chunks:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        faiss.normalize_L2(query)
        scores, ids = self.index.search(query, min(k, len(self.chunks)))
        return [Hit(self.chunks[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in self.chunks:
                fh.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)

    @classmethod
    def load(cls, folder: str | Path) -> "FaissStore":
        folder = Path(folder)
        index = faiss.read_index(str(folder / "index.faiss"))
        store = cls(index.d)
        store.index = index
        with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
            store.chunks = [Chunk(**json.loads(line)) for line in fh if line.strip()]
        return store
