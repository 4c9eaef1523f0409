"""Four answers side by side, and their scores against reference answers.

Columns: base, base + RAG, fine-tuned, fine-tuned + RAG. The caller hands in two plain
generate callables (base and fine-tuned: messages -> object with .text, .seconds,
.prompt_tokens, .answer_tokens); this module adds retrieval for the RAG columns, times
each answer and scores answers with token F1 / exact match (SQuAD-style normalisation).
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def compare(question: str, pipeline: RagPipeline, base: Callable, tuned: Callable | None,
            columns=COLUMNS) -> list[ColumnAnswer]:
    """Answer `question` in each column; fine-tuned columns are left out when `tuned` is None."""
    plain = [{"role": "user", "content": question}]
    hits: list[Hit] | None = None
    answers = []
    for column in columns:
        generate = tuned if column.startswith("fine-tuned") else base
        if generate is None:
            continue
        start = time.perf_counter()
        if column.endswith("RAG"):
            if hits is None:
                hits = pipeline.retrieve(question)
            out, used = generate(pipeline.messages(question, hits)), hits
        else:
            out, used = generate(plain), []
        seconds = time.perf_counter() - start  # retrieval counts toward the RAG columns' latency
        answers.append(ColumnAnswer(column, out.text, seconds, getattr(out, "prompt_tokens", 0),
                                    getattr(out, "answer_tokens", 0), used))
    return answers


def _normalise(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation) or ch in ".,")
    text = re.sub(r"(?<!\d)[.,]|[.,](?!\d)", " ", text)  # keep 6.4 and 1,290 whole
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _normalise(prediction), _normalise(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(_normalise(prediction) == _normalise(reference))


def load_questions(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or "question" not in row or "answer" not in row:
            raise ValueError(f"{Path(path).name} line {n}: needs \"question\" and \"answer\" fields.")
        rows.append(row)
    return rows


def evaluate(questions: list[dict], pipeline: RagPipeline, base: Callable, tuned: Callable | None,
             columns=COLUMNS, progress: Callable[[int, int], None] | None = None) -> dict:
    """Per-question rows and a per-column summary (mean token F1, exact match, latency)."""
    rows = []
    for i, q in enumerate(questions):
        for a in compare(q["question"], pipeline, base, tuned, columns):
            rows.append({"question": q["question"], "reference": q["answer"], "column": a.column,
                         "answer": a.text, "f1": token_f1(a.text, q["answer"]),
                         "em": exact_match(a.text, q["answer"]), "seconds": a.seconds})
        if progress:
            progress(i + 1, len(questions))
    summary = {}
    for column in columns:
        mine = [r for r in rows if r["column"] == column]
        if mine:
            summary[column] = {k: sum(r[k] for r in mine) / len(mine) for k in ("f1", "em", "seconds")}
    return {"summary": summary, "rows": rows}


def format_summary(summary: dict) -> str:
    lines = [f"{'column':<18}{'token F1':>10}{'exact':>8}{'latency s':>11}"]
    for column, s in summary.items():
        lines.append(f"{column:<18}{s['f1']:>10.3f}{s['em']:>8.2f}{s['seconds']:>11.2f}")
    return "\n".join(lines)
