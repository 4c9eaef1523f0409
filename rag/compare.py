"""Four answers side by side: base, base + RAG, fine-tuned, fine-tuned + RAG, in one batch.

The model comes in as a batch answer callable (`BatchAnswer`): handed a list of jobs
(side, messages), side "base" or "fine-tuned", it yields (job index, text so far) as answers
grow and (job index, result) when one is done, where a result has .text and may have
.seconds, .prompt_tokens and .answer_tokens. engine/infer/chat.py's `Answerers` is one, answering
all four columns in one batched generate; `one_by_one(base, tuned)` makes one from two plain
callables (messages -> result, or messages -> an iterator of growing texts ending with a result),
answering one job after another. This module adds retrieval for the RAG columns and times each
answer; retrieval time counts toward the RAG columns' latency. Scores live in rag/evaluate.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Protocol

from rag.pipeline import RagPipeline
from rag.store import Hit

COLUMNS = ("base", "base + RAG", "fine-tuned", "fine-tuned + RAG")


class BatchAnswer(Protocol):
    sides: tuple[str, ...]  # "base", and "fine-tuned" when there is a tuned model

    def __call__(self, jobs: list[tuple[str, list[dict]]]) -> Iterator[tuple[int, object]]: ...


@dataclass
class one_by_one:
    """A BatchAnswer over plain callables, answering one job after another."""
    base: Callable
    tuned: Callable | None = None

    @property
    def sides(self) -> tuple[str, ...]:
        return ("base", "fine-tuned") if self.tuned else ("base",)

    def __call__(self, jobs):
        for i, (side, messages) in enumerate(jobs):
            out = (self.tuned if side == "fine-tuned" else self.base)(messages)
            for piece in ([out] if hasattr(out, "text") else out):
                yield i, piece


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


@dataclass
class _Planned:
    question: int
    column: str
    messages: list[dict]
    hits: list[Hit]
    retrieval_s: float


def plan(questions: list[str], pipeline: RagPipeline, sides, columns=COLUMNS, fit: tuple | None = None) -> list[_Planned]:
    """One job per question and answerable column; each question is retrieved for once.

    `fit` = (tokenizer, max_prompt_tokens) trims the RAG prompt to the model's context window."""
    jobs = []
    for qi, question in enumerate(questions):
        hits, retrieval_s = None, 0.0
        for column in columns:
            if ("fine-tuned" if column.startswith("fine-tuned") else "base") not in sides:
                continue
            if column.endswith("RAG"):
                if hits is None:
                    start = time.perf_counter()
                    hits = pipeline.retrieve(question)
                    retrieval_s = time.perf_counter() - start
                jobs.append(_Planned(qi, column, pipeline.messages(question, hits, *(fit or ())), hits, retrieval_s))
            else:
                jobs.append(_Planned(qi, column, [{"role": "user", "content": question}], [], 0.0))
    return jobs


def stream_planned(jobs: list[_Planned], answer: BatchAnswer) -> Iterator[tuple[int, ColumnAnswer, bool]]:
    """(job index, answer so far, finished?) as the batch answers grow. A result without its own .seconds
    (one_by_one's plain callables) is timed from the previous job's end."""
    start = time.perf_counter()
    answers = [ColumnAnswer(j.column, "", 0.0, hits=j.hits) for j in jobs]
    sides = [("fine-tuned" if j.column.startswith("fine-tuned") else "base", j.messages) for j in jobs]
    for i, piece in answer(sides):
        a, job = answers[i], jobs[i]
        if isinstance(piece, str):
            a.text, a.seconds = piece, time.perf_counter() - start + job.retrieval_s
            yield i, replace(a), False
            continue
        a.text = piece.text
        a.seconds = (getattr(piece, "seconds", None) or time.perf_counter() - start) + job.retrieval_s
        if not hasattr(piece, "seconds"):
            start = time.perf_counter()
        a.prompt_tokens, a.answer_tokens = getattr(piece, "prompt_tokens", 0), getattr(piece, "answer_tokens", 0)
        yield i, a, True


def stream_compare(question: str, pipeline: RagPipeline, answer: BatchAnswer, columns=COLUMNS,
                   fit: tuple | None = None) -> Iterator[tuple[ColumnAnswer, bool]]:
    """Answer `question` in each column at once; yields (answer so far, finished?) as each column's text grows.
    Fine-tuned columns are left out when `answer` has no fine-tuned side."""
    for _, a, done in stream_planned(plan([question], pipeline, answer.sides, columns, fit), answer):
        yield a, done


def compare(question: str, pipeline: RagPipeline, answer: BatchAnswer, columns=COLUMNS,
            fit: tuple | None = None) -> list[ColumnAnswer]:
    """The four (or two) finished answers, in column order."""
    done = {a.column: a for a, finished in stream_compare(question, pipeline, answer, columns, fit) if finished}
    return [done[c] for c in columns if c in done]
