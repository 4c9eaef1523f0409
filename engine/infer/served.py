"""The contract between the OpenAI-compatible server (engine/infer/serve.py) and what answers for a model id:
the studio's own generation executor (serve.py's `ChatServed`) or vLLM (engine/infer/serve_vllm.py).

The server knows only this Protocol; the engine is chosen where the server is started (`studio serve
--engine`), so neither engine imports the other.

    studio serve RUN_ID [--engine studio|vllm]
"""

from __future__ import annotations

from typing import Iterator, Protocol

from engine.errors import StudioError
from engine.infer.batching import Generation, Request


class ServeError(StudioError):
    """A server that cannot start or answer as asked, in one sentence."""


class Served(Protocol):
    """One model id the server answers for."""
    id: str
    created: int  # seconds since the epoch, for /v1/models
    owned_by: str

    def request(self, messages: list[dict], max_tokens: int, temperature: float, top_p: float,
                stop: list[str]) -> Request:
        """The generation request for these messages and sampling settings, on this id's weights."""

    def prompt_tokens(self, request: Request) -> int:
        """Tokens of the request's prompt under the model's chat template."""

    def window(self) -> int:
        """The model's context window in tokens (prompt and answer together)."""

    def answer(self, request: Request) -> Iterator[str | Generation]:
        """The reply's text as it grows, then its Generation."""
