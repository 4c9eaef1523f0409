"""Batch evaluation of the four columns on questions with reference answers.

Per answer: token F1 and exact match (SQuAD-style normalisation), ROUGE-L (longest common
subsequence F1), semantic similarity (cosine of the embedder's vectors for answer and
reference), and for the RAG columns groundedness (the share of the answer's content words
found in the passages it was given). Per question: whether the top-`hit_k` retrieved
passages contain the reference (at least 60% of its content words, every number among
them) — the retrieval hit rate. A summary per column, per-question rows, CSV and JSON.

    studio eval [RUN_ID] [--questions FILE] [--csv OUT.csv] [--json OUT.json]
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from rag.compare import COLUMNS, compare
from rag.pipeline import RagPipeline

from rag.errors import RagError

METRICS = ("f1", "em", "rouge_l", "semantic", "grounded", "hit", "seconds", "answer_tokens")
STOPWORDS = set("a an the of to in on at for and or is are was were be been it its this that with by as from "
                "do does did can you your i we they he she what which who how when where why there their".split())


def normalise(text: str) -> list[str]:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation) or ch in ".,")
    text = re.sub(r"(?<!\d)[.,]|[.,](?!\d)", " ", text)  # keep 6.4 and 1,290 whole
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def content_words(text: str) -> list[str]:
    return [w for w in normalise(text) if w not in STOPWORDS]


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalise(prediction), normalise(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def rouge_l(prediction: str, reference: str) -> float:
    pred, ref = normalise(prediction), normalise(reference)
    if not pred or not ref:
        return 0.0
    prev = [0] * (len(ref) + 1)
    for p in pred:
        cur = [0]
        for j, r in enumerate(ref, start=1):
            cur.append(prev[j - 1] + 1 if p == r else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_reference(passages: str, reference: str) -> bool:
    words, have = content_words(reference), set(normalise(passages))
    if not words:
        return False
    numbers = [w for w in words if any(ch.isdigit() for ch in w)]
    return all(n in have for n in numbers) and sum(w in have for w in words) / len(words) >= 0.6


def groundedness(answer: str, passages: str) -> float:
    words, have = content_words(answer), set(normalise(passages))
    return sum(w in have for w in words) / len(words) if words else 0.0


def load_questions(path: str | Path) -> list[dict]:
    """Questions with references: JSONL or CSV with `question` and `answer` fields."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
        where = [f"row {i}" for i in range(2, len(rows) + 2)]
    else:
        rows, where = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RagError(f"{path.name} line {n}: not valid JSON ({exc.msg}).") from None
                where.append(f"line {n}")
    for row, w in zip(rows, where):
        if not isinstance(row, dict) or not str(row.get("question", "")).strip() or "answer" not in row:
            raise RagError(f"{path.name} {w}: needs \"question\" and \"answer\" fields.")
    if not rows:
        raise RagError(f"{path.name}: no questions found.")
    return rows


def evaluate(questions: list[dict], pipeline: RagPipeline, base: Callable, tuned: Callable | None,
             columns=COLUMNS, hit_k: int = 5, fit: tuple | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    rows = []
    for i, q in enumerate(questions):
        top = pipeline.retrieve(q["question"], k=hit_k)
        hit = float(contains_reference(" ".join(h.chunk.text for h in top), str(q["answer"])))
        for a in compare(q["question"], pipeline, base, tuned, columns, fit):
            rag = a.column.endswith("RAG")
            passages = " ".join(h.chunk.text for h in a.hits)
            rows.append({
                "question": q["question"], "reference": str(q["answer"]), "column": a.column, "answer": a.text,
                "f1": token_f1(a.text, str(q["answer"])), "em": exact_match(a.text, str(q["answer"])),
                "rouge_l": rouge_l(a.text, str(q["answer"])), "semantic": None,
                "grounded": groundedness(a.text, passages) if rag else None, "hit": hit if rag else None,
                "seconds": a.seconds, "answer_tokens": a.answer_tokens,
                "sources": [f"{h.chunk.source}:{h.chunk.start}-{h.chunk.end}" for h in a.hits],
            })
        if progress:
            progress(i + 1, len(questions))
    if rows:
        vec_a = pipeline.embedder.embed([r["answer"] or " " for r in rows])
        vec_r = pipeline.embedder.embed([r["reference"] for r in rows])
        for r, s in zip(rows, np.sum(vec_a * vec_r, axis=1)):
            r["semantic"] = float(s)
    return {"summary": summarise(rows, columns), "rows": rows, "hit_k": hit_k}


def summarise(rows: list[dict], columns=COLUMNS) -> dict:
    summary = {}
    for column in columns:
        mine = [r for r in rows if r["column"] == column]
        if mine:
            summary[column] = {m: (sum(r[m] for r in mine) / len(mine) if mine[0][m] is not None else None)
                               for m in METRICS}
    return summary


def format_summary(summary: dict, hit_k: int = 5) -> str:
    head = f"{'column':<18}{'token F1':>9}{'exact':>7}{'ROUGE-L':>9}{'semantic':>10}{'grounded':>10}" \
           f"{f'hit@{hit_k}':>7}{'latency s':>11}"
    lines = [head]
    for column, s in summary.items():
        def f(key, width, digits=3):
            return f"{s[key]:>{width}.{digits}f}" if s[key] is not None else f"{'-':>{width}}"
        lines.append(f"{column:<18}{f('f1', 9)}{f('em', 7, 2)}{f('rouge_l', 9)}{f('semantic', 10)}"
                     f"{f('grounded', 10)}{f('hit', 7, 2)}{f('seconds', 11, 2)}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> None:
    fields = ["question", "reference", "column", "answer", *METRICS, "sources"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "sources": " ".join(r["sources"])})


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
