"""Four answers side by side: base, base + RAG, fine-tuned, fine-tuned + RAG.

The caller hands in plain callables for the base and fine-tuned model (messages -> an
object with .text, .seconds, .prompt_tokens, .answer_tokens; or, for streaming, messages
-> an iterator of growing texts that ends with such an object). This module adds
retrieval for the RAG columns and times each answer; retrieval time counts toward the
RAG columns' latency. Scores against references live in rag/evaluate.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from rag.pipeline import RagPipeline
from rag.store import Hit

COLUMNS = ("base", "base + RAG", "fine-tuned", "fine-tuned + RAG")


@dataclass
class ColumnAnswer:
    column: str
    text: str
    seconds: float
    prompt_tokens: int = 0
    answer_tokens: int = 0
    hits: list[Hit] = field(default_factory=list)

    def cited(self) -> set[int]:
        """Source numbers the answer cites as [n]."""
        return {int(n) for n in re.findall(r"\[(\d+)\]", self.text) if 0 < int(n) <= len(self.hits)}


def _plan(question, pipeline, base, tuned, columns, fit):
    """(column, generate, messages, hits) for each column that can be answered."""
    plain = [{"role": "user", "content": question}]
    hits = None
    for column in columns:
        generate = tuned if column.startswith("fine-tuned") else base
        if generate is None:
            continue
        if column.endswith("RAG"):
            start = time.perf_counter()
            if hits is None:
                hits = pipeline.retrieve(question)
            messages = pipeline.messages(question, hits, *(fit or ()))
            yield column, generate, messages, hits, time.perf_counter() - start
        else:
            yield column, generate, plain, [], 0.0


def compare(question: str, pipeline: RagPipeline, base: Callable, tuned: Callable | None,
            columns=COLUMNS, fit: tuple | None = None) -> list[ColumnAnswer]:
    """Answer `question` in each column; fine-tuned columns are left out when `tuned` is None.

    `fit` = (tokenizer, max_prompt_tokens) trims the RAG prompt to the model's context window.
    """
    answers = []
    for column, generate, messages, hits, retrieval_s in _plan(question, pipeline, base, tuned, columns, fit):
        start = time.perf_counter()
        out = generate(messages)
        answers.append(ColumnAnswer(column, out.text, time.perf_counter() - start + retrieval_s,
                                    getattr(out, "prompt_tokens", 0), getattr(out, "answer_tokens", 0), hits))
    return answers


def stream_compare(question: str, pipeline: RagPipeline, base: Callable, tuned: Callable | None,
                   columns=COLUMNS, fit: tuple | None = None) -> Iterator[tuple[ColumnAnswer, bool]]:
    """Like `compare`, streamed: yields (answer so far, finished?) as each column's text grows."""
    for column, generate, messages, hits, retrieval_s in _plan(question, pipeline, base, tuned, columns, fit):
        start = time.perf_counter()
        answer = ColumnAnswer(column, "", 0.0, hits=hits)
        for piece in generate(messages):
            answer.seconds = time.perf_counter() - start + retrieval_s
            if isinstance(piece, str):
                answer.text = piece
                yield replace(answer), False
            else:
                answer.text = piece.text
                answer.prompt_tokens, answer.answer_tokens = piece.prompt_tokens, piece.answer_tokens
        yield answer, True
