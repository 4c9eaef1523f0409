"""A FAISS vector store: add, remove, search, save, load; exact when small, HNSW when large.

Vectors are L2-normalised, so inner product is cosine similarity. Up to `hnsw_threshold`
live chunks the index is exact (`IndexFlatIP`); above it the store rebuilds itself as an
HNSW graph (M=32, efConstruction 200, efSearch 512), whose recall against exact search `recall()` measures (the benchmark
prints it). Documents are added and removed without a full rebuild: the exact index
removes ids in place; HNSW keeps tombstones that searches skip, and compacts itself once a
quarter of it is removed. A saved store is written to a temporary folder and renamed, so
a half-written index never looks finished.
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

HNSW_THRESHOLD = 20_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 512


@dataclass
class Hit:
    chunk: Chunk
    score: float
    id: int = -1


STORE_FILES = ("index.faiss", "vectors.npy", "chunks.jsonl", "meta.json")


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, vectors.shape[-1])
    faiss.normalize_L2(vectors)
    return vectors


class FaissStore:
    def __init__(self, dim: int, hnsw_threshold: int = HNSW_THRESHOLD):
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.vectors = np.zeros((0, dim), dtype=np.float32)  # row i is id i
        self.chunks: list[Chunk | None] = []  # None: removed
        self.live = 0  # chunks not removed, kept as a count so a search costs no scan
        self.kind = "flat"
        self.index = self._new_index("flat")

    # ---- the four operations --------------------------------------------------------

    def add(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        vectors = _normalised(vectors)
        ids = np.arange(len(self.chunks), len(self.chunks) + len(chunks), dtype=np.int64)
        self.vectors = np.concatenate([self.vectors, vectors])
        self.chunks.extend(chunks)
        self.live += len(chunks)
        if self.kind == "flat" and len(self) > self.hnsw_threshold:
            self.rebuild()
        else:
            self.index.add_with_ids(vectors, ids)

    def remove(self, source: str) -> int:
        """Remove every chunk of one source document; returns how many were removed."""
        ids = np.array([i for i, c in enumerate(self.chunks) if c is not None and c.source == source], dtype=np.int64)
        for i in ids:
            self.chunks[i] = None
        self.live -= len(ids)
        if self.kind == "flat" and len(ids):
            self.index.remove_ids(ids)
        elif self.kind == "hnsw" and self.removed() > 0.25 * len(self.chunks):
            self.rebuild()
        return len(ids)

    def search(self, vector: np.ndarray, k: int = 4) -> list[Hit]:
        live = len(self)
        if not live:
            return []
        query = _normalised(np.asarray(vector)[None, :] if np.asarray(vector).ndim == 1 else vector)[:1]
        want = min(k + (self.removed() if self.kind == "hnsw" else 0), len(self.chunks))
        scores, ids = self.index.search(query, want)
        hits = [Hit(self.chunks[i], float(s), int(i)) for s, i in zip(scores[0], ids[0])
                if i >= 0 and self.chunks[i] is not None]
        return hits[:k]

    def save(self, folder: str | Path, **meta) -> None:
        if self.removed():
            self.rebuild()  # saved stores hold no tombstones
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        np.save(tmp / "vectors.npy", self.vectors)
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in self.chunks:
                fh.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        (tmp / "meta.json").write_text(json.dumps({"kind": self.kind, "dim": self.dim,
                                                   "hnsw_threshold": self.hnsw_threshold, **meta}))
        for kept in (folder.iterdir() if folder.is_dir() else ()):  # files the store does not write (the owner)
            if kept.is_file() and kept.name not in STORE_FILES:
                shutil.copy2(kept, tmp / kept.name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)

    @classmethod
    def load(cls, folder: str | Path) -> "FaissStore":
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        store = cls(meta["dim"], meta["hnsw_threshold"])
        store.kind = meta["kind"]
        store.index = faiss.read_index(str(folder / "index.faiss"))
        store.vectors = np.load(folder / "vectors.npy")
        with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
            store.chunks = [Chunk(**json.loads(line)) for line in fh if line.strip()]
        store.live = len(store.chunks)
        if store.kind == "hnsw":
            faiss.downcast_index(store.index.index).hnsw.efSearch = HNSW_EF_SEARCH
        return store

    # ---- upkeep and measurement -----------------------------------------------------

    def __len__(self) -> int:
        return self.live

    def removed(self) -> int:
        return len(self.chunks) - len(self)

    def sources(self) -> list[str]:
        return sorted({c.source for c in self.chunks if c is not None})

    def _new_index(self, kind: str):
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        graph = faiss.IndexHNSWFlat(self.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap(graph)

    def rebuild(self) -> None:
        """Drop removed chunks and build the index that fits the size: exact, or HNSW above the threshold."""
        keep = [i for i, c in enumerate(self.chunks) if c is not None]
        self.vectors = np.ascontiguousarray(self.vectors[keep]) if keep else np.zeros((0, self.dim), np.float32)
        self.chunks = [self.chunks[i] for i in keep]
        self.live = len(self.chunks)
        self.kind = "hnsw" if len(self.chunks) > self.hnsw_threshold else "flat"
        self.index = self._new_index(self.kind)
        if len(self.chunks):
            self.index.add_with_ids(self.vectors, np.arange(len(self.chunks), dtype=np.int64))

    def exact_ids(self, queries: np.ndarray, k: int) -> np.ndarray:
        live = np.array([c is not None for c in self.chunks])
        scores = _normalised(queries) @ self.vectors.T
        scores[:, ~live] = -np.inf
        return np.argsort(-scores, axis=1)[:, :k]

    def recall(self, queries: np.ndarray, k: int = 5) -> float:
        """Share of the exact top-k that this index's search returns (1.0 for the exact index)."""
        truth = self.exact_ids(queries, k)
        got = [{h.id for h in self.search(q, k)} for q in queries]
        return float(np.mean([len(set(t) & g) / k for t, g in zip(truth, got)]))
