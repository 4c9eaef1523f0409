"""The contract between the OpenAI-compatible server (engine/infer/serve.py) and what answers for a model id:
the studio's own generation executor (serve.py's `ChatServed`) or vLLM (engine/infer/serve_vllm.py); and
for `/v1/embeddings`, an embedder handed in by whoever starts the server (the RAG embedder, from
studio/cli.py: engine/ does not import rag/).

The server knows only these Protocols; the engine is chosen where the server is started (`studio serve
--engine`), so neither engine imports the other. Embeddings go through the same executor as generations
(`EmbedWorker`), so requests that arrive together are embedded in one batch.

    studio serve RUN_ID [--engine studio|vllm]
"""

from __future__ import annotations

import queue
from typing import Iterator, Protocol

from engine.errors import StudioError
from engine.infer.batching import Generation, Job, Request, drain, submit


class ServeError(StudioError):
    """A server that cannot start or answer as asked, in one sentence."""


class Served(Protocol):
    """One model id the server answers for."""
    id: str
    created: int  # seconds since the epoch, for /v1/models
    owned_by: str

    def request(self, messages: list[dict] | None, max_tokens: int, **options) -> Request:
        """The generation request on this id's weights; `options` are Request's fields (temperature, stop,
        seed, logprobs, ids and raw for a completion prompt...)."""

    def refusal(self, request: Request) -> str | None:
        """One sentence naming the option this engine cannot honour for `request` (None when it can)."""

    def encode(self, text: str) -> list[int]:
        """A completion prompt's tokens (the tokenizer's own special tokens included, as it adds them)."""

    def decode(self, tokens: list[int]) -> str:
        """Tokens as text (one token's text for log-probabilities; a whole prompt for echo)."""

    def template_takes_tools(self) -> bool:
        """Whether the chat template renders `tools`."""

    def prompt_tokens(self, request: Request) -> int:
        """Tokens of the request's prompt (under the chat template, unless it is a raw completion prompt)."""

    def window(self) -> int:
        """The model's context window in tokens (prompt and answer together)."""

    def answer_many(self, requests: list[Request]) -> Iterator[tuple[int, str | Generation]]:
        """(row, text so far) as each answer grows, then (row, Generation); one batch where it can."""


class Embedding(Protocol):
    """A text embedder the server answers `/v1/embeddings` with."""
    id: str
    dimensions: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the embedder reads for these texts (for the usage counts)."""

    # optional: `max_tokens`, the most tokens of one text it reads; a longer input is refused, never cut


class EmbedWorker:
    """An embedder as the executor's worker: every waiting request's texts embedded in one call."""
    device = "cpu"

    def __init__(self, embedding: Embedding):
        self.embedding = embedding

    def answer_jobs(self, jobs: list[Job]) -> None:
        texts = [text for job in jobs for text in job.requests]
        vectors = iter(self.embedding.embed(texts))
        for job in jobs:
            for row, _ in enumerate(job.requests):
                job.out.put((job.tag, row, next(vectors)))
            job.out.put((job.tag, None, None))

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: queue.Queue = queue.Queue()
        submit(self, Job(list(texts), out, left=len(texts)))
        vectors: list = [None] * len(texts)
        for _, row, vector in drain(out, 1):
            vectors[row] = vector
        return vectors
