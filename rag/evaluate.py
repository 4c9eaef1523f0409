"""Batch evaluation of the four columns on questions with reference answers.

Per answer, first whether it is correct: `correct` checks offline that the answer holds the reference's
fact (each number of the reference, with the unit after it; each name; most of its other content words; a
short reference inside a long answer counts), and where a judge endpoint is given (rag/judge.py) a judge's
verdict with the reference in its prompt is the primary score instead. Then, as secondary columns, token F1 and exact match (SQuAD-style normalisation), ROUGE-L (longest common
subsequence F1), semantic similarity (cosine of the embedder's vectors for answer and
reference), and for the RAG columns groundedness (the share of the answer's content words
found in the passages it was given). Per question: whether the top-`hit_k` retrieved
passages contain the reference (at least 60% of its content words, every number among
them) — the retrieval hit rate. A summary per column, per-question rows, CSV and JSON.

How sure: every score's mean per column comes with a 95% percentile bootstrap interval over
the questions (scipy.stats.bootstrap, 2000 resamples, a fixed seed so the same answers give the
same interval), and columns are compared pairwise on the questions both answered (a bootstrap of
the per-question differences): "fine-tuned + RAG beats base + RAG on token F1 by 0.27 [0.19, 0.35]",
or, when the interval includes zero or there are fewer than 5 questions, a sentence saying the
questions cannot tell the two apart. Questions are answered several at a time (see `evaluate`).

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

from rag.compare import COLUMNS, BatchAnswer, ColumnAnswer, plan, stream_planned
from rag.pipeline import RagPipeline

from rag.errors import RagError

METRICS = ("correct", "judged", "f1", "em", "rouge_l", "semantic", "grounded", "hit", "seconds", "answer_tokens")
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


# Units a number's meaning depends on ("6.4 kg" is not "6.4 km"), each with the spellings that mean the same.
UNITS = [{"kg", "kilogram", "kilograms", "kilo", "kilos"}, {"g", "gram", "grams"}, {"t", "tonne", "tonnes", "ton",
         "tons"}, {"km", "kilometre", "kilometres", "kilometer", "kilometers"}, {"m", "metre", "metres", "meter",
         "meters"}, {"cm", "centimetre", "centimetres"}, {"mm", "millimetre", "millimetres"}, {"mi", "mile",
         "miles"}, {"h", "hr", "hrs", "hour", "hours"}, {"min", "mins", "minute", "minutes"}, {"s", "sec", "second",
         "seconds"}, {"ms", "millisecond", "milliseconds"}, {"day", "days"}, {"week", "weeks"}, {"month", "months"},
         {"year", "years"}, {"%", "percent", "per cent"}, {"eur", "euro", "euros", "€"}, {"usd", "dollar",
         "dollars", "$"}, {"chf", "franc", "francs"}, {"gbp", "pound", "pounds", "£"}, {"w", "watt", "watts"},
         {"kw", "kilowatt", "kilowatts"}, {"kwh"}, {"wh"}, {"v", "volt", "volts"}, {"a", "amp", "amps", "ampere"},
         {"mah"}, {"l", "litre", "litres", "liter", "liters"}, {"ml"}, {"db", "decibel", "decibels"}, {"°c", "c",
         "celsius"}, {"°f", "fahrenheit"}, {"kmh", "km/h"}, {"mph"}, {"gb"}, {"mb"}, {"tb"}, {"ghz"}, {"mhz"}]
UNIT_OF = {spelling: i for i, group in enumerate(UNITS) for spelling in group}
NAME_SHARE = 1.0   # every name of the reference
WORD_SHARE = 0.6   # of the reference's other content words, as contains_reference asks of passages


def _number(token: str) -> str | None:
    """A token's number in one spelling ("412,000" and "412000" alike; "6.40" as "6.4"), or None."""
    raw = token.replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return f"{value:g}" if abs(value) < 1e15 else raw


def _stem(word: str) -> str:
    """A light plural stem: "passengers" and "passenger" alike (the reference and the answer may differ)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _facts(text: str) -> tuple[list[tuple[str, int | None]], set[str], set[str]]:
    """(numbers each with the unit after it, names, other content words) of `text`."""
    tokens = re.findall(r"[\w.,%€$£°/'-]+", text)
    words = normalise(text)
    numbers = []
    for i, w in enumerate(words):
        n = _number(w)
        if n is not None:
            unit = UNIT_OF.get(words[i + 1]) if i + 1 < len(words) else None
            numbers.append((n, unit))
        else:  # "6.4kg", "15%", "£25": the number and its unit in one token
            m = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?)([a-z%€$£°/]+)", w)
            pre = re.fullmatch(r"([€$£])(\d[\d,]*(?:\.\d+)?)", w)
            if m and _number(m.group(1)) is not None and m.group(2) in UNIT_OF:
                numbers.append((_number(m.group(1)), UNIT_OF[m.group(2)]))
            elif pre and _number(pre.group(2)) is not None:
                numbers.append((_number(pre.group(2)), UNIT_OF[pre.group(1)]))
    # a capitalised word is a name, unless it opens a sentence (there it counts as one of the other words)
    first = {i for i, t in enumerate(tokens) if i == 0 or tokens[i - 1].endswith((".", "?", "!", ":"))}
    names = {_stem(w) for i, t in enumerate(tokens) if t[:1].isupper() and i not in first
             for w in normalise(t) if w not in STOPWORDS}
    content = {_stem(w) for w in content_words(text) if _number(w) is None and not re.fullmatch(r"[€$£]\d[\d,.]*", w)}
    content -= names
    return numbers, names, content


def correct(answer: str, reference: str) -> float:
    """1.0 when `answer` holds the reference's fact, else 0.0: every number of the reference (with the unit
    after it, where it has one), every name (a capitalised word not opening a sentence) and at least WORD_SHARE
    of its other content words, all normalised (case, punctuation, articles, plurals). A short reference inside
    a long answer counts; extra words do not lower it, as they lower token F1."""
    ref_numbers, ref_names, ref_content = _facts(reference)
    if not (ref_numbers or ref_names or ref_content):
        return float(normalise(answer) == normalise(reference))
    numbers, _, _ = _facts(answer)
    words = {_stem(w) for w in normalise(answer)}
    have = {n for n, _ in numbers}
    for n, unit in ref_numbers:
        if n not in have or (unit is not None and (n, unit) not in numbers):
            return 0.0
    if ref_names and sum(n in words for n in ref_names) / len(ref_names) < NAME_SHARE:
        return 0.0
    if not ref_content:
        return 1.0
    share = sum(w in words for w in ref_content) / len(ref_content)
    if ref_numbers or ref_names:  # the numbers and names carry the fact; its other words may be said otherwise
        return float(len(ref_content) <= 2 or share >= WORD_SHARE / 2)
    return float(share >= WORD_SHARE)


def contains_reference(passages: str, reference: str, share: float = 0.6) -> bool:
    """Whether the passages hold the reference: every number of it and `share` of its content words."""
    words, have = content_words(reference), set(normalise(passages))
    if not words:
        return False
    numbers = [w for w in words if any(ch.isdigit() for ch in w)]
    return all(n in have for n in numbers) and sum(w in have for w in words) / len(words) >= share


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


def evaluate(questions: list[dict], pipeline: RagPipeline, answer: BatchAnswer, columns=COLUMNS, hit_k: int = 5,
             fit: tuple | None = None, progress: Callable[[int, int], None] | None = None,
             batch_questions: int | None = None, judge=None) -> dict:
    """Answer every question in every column, several questions per batch, and score the answers.

    `judge`: a callable (question, reference, answer) -> 1.0 / 0.0 (rag/judge.py); its verdict becomes the
    primary score ("judged") beside the offline check ("correct").

    `batch_questions`: questions answered together; by default as many as `answer.batch_rows()` (the rows
    its model takes at once, from its memory estimate) allows, one at a time for a plain callable."""
    per_question = sum(1 for c in columns if ("fine-tuned" if c.startswith("fine-tuned") else "base") in answer.sides)
    if batch_questions is None:
        rows_at_once = answer.batch_rows() if hasattr(answer, "batch_rows") else per_question
        batch_questions = max(1, rows_at_once // max(1, per_question))
    texts = [str(q["question"]) for q in questions]
    finished: dict[tuple[int, str], ColumnAnswer] = {}
    complete = 0
    for first in range(0, len(questions), batch_questions):
        jobs = plan(texts[first:first + batch_questions], pipeline, answer.sides, columns, fit)
        left = Counter(j.question for j in jobs)
        for i, a, done in stream_planned(jobs, answer):
            if done:
                finished[(first + jobs[i].question, a.column)] = a
                left[jobs[i].question] -= 1
                if left[jobs[i].question] == 0:
                    complete += 1
                    if progress:
                        progress(complete, len(questions))
    rows = []
    for qi, q in enumerate(questions):
        top = pipeline.retrieve(q["question"], k=hit_k)
        hit = float(contains_reference(" ".join(h.chunk.text for h in top), str(q["answer"])))
        for column in columns:
            a = finished.get((qi, column))
            if a is None:
                continue
            rag = a.column.endswith("RAG")
            passages = " ".join(h.chunk.text for h in a.hits)
            rows.append({
                "question": q["question"], "reference": str(q["answer"]), "column": a.column, "answer": a.text,
                "correct": correct(a.text, str(q["answer"])),
                "judged": judge(q["question"], str(q["answer"]), a.text) if judge else None,
                "f1": token_f1(a.text, str(q["answer"])), "em": exact_match(a.text, str(q["answer"])),
                "rouge_l": rouge_l(a.text, str(q["answer"])), "semantic": None,
                "grounded": groundedness(a.text, passages) if rag else None, "hit": hit if rag else None,
                "seconds": a.seconds, "answer_tokens": a.answer_tokens,
                "sources": [f"{h.chunk.source}:{h.chunk.start}-{h.chunk.end}" for h in a.hits],
            })
    if rows:
        vec_a = pipeline.embedder.embed([r["answer"] or " " for r in rows])
        vec_r = pipeline.embedder.embed([r["reference"] for r in rows])
        for r, s in zip(rows, np.sum(vec_a * vec_r, axis=1)):
            r["semantic"] = float(s)
    return {"summary": summarise(rows, columns), "intervals": intervals(rows, columns),
            "differences": differences(rows, columns), "questions": len(questions), "rows": rows, "hit_k": hit_k,
            "primary": primary(rows), "judge": getattr(judge, "name", None) if judge else None}


def primary(rows: list[dict]) -> str:
    """The score that decides: the judge's verdict where a judge scored the answers, else the offline check."""
    return "judged" if any(r.get("judged") is not None for r in rows) else "correct"


def summarise(rows: list[dict], columns=COLUMNS) -> dict:
    summary = {}
    for column in columns:
        mine = [r for r in rows if r["column"] == column]
        if mine:
            summary[column] = {m: (sum(r[m] for r in mine) / len(mine) if mine[0].get(m) is not None else None)
                               for m in METRICS}
    return summary


# ---- how sure: bootstrap intervals over questions ----------------------------------------------------------

SCORES = ("correct", "judged", "f1", "em", "rouge_l", "semantic", "grounded", "hit")  # metrics with an interval
COMPARED = ("correct", "judged", "f1", "rouge_l", "semantic", "em")  # metrics two columns are compared on
PAIRS = (("fine-tuned", "base"), ("base + RAG", "base"), ("fine-tuned + RAG", "base + RAG"),
         ("fine-tuned + RAG", "fine-tuned"), ("fine-tuned + RAG", "base"))
MIN_QUESTIONS = 5  # fewer than this and no interval is worth giving
RESAMPLES = 2000
NAMES = {"correct": "correct (holds the reference fact)", "judged": "correct (judge's verdict)", "f1": "token F1", "em": "exact match", "rouge_l": "ROUGE-L", "semantic": "semantic similarity",
         "grounded": "groundedness", "hit": "retrieval hit rate"}


def bootstrap_interval(values, level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean over `values` (one per question); None when too few."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if len(values) < MIN_QUESTIONS:
        return None
    if np.all(values == values[0]):  # every resample has the same mean
        return float(values[0]), float(values[0])
    res = bootstrap((values,), np.mean, n_resamples=RESAMPLES, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _by_question(rows: list[dict], column: str, metric: str) -> dict[str, float]:
    return {r["question"]: r[metric] for r in rows if r["column"] == column and r.get(metric) is not None}


def intervals(rows: list[dict], columns=COLUMNS) -> dict:
    """column -> metric -> [low, high], the 95% bootstrap interval over questions (None: too few questions)."""
    out = {}
    for column in columns:
        mine = {m: list(_by_question(rows, column, m).values()) for m in SCORES}
        if any(mine.values()):
            out[column] = {m: (list(ci) if (ci := bootstrap_interval(v)) else None) for m, v in mine.items() if v}
    return out


def differences(rows: list[dict], columns=COLUMNS) -> list[dict]:
    """Paired bootstrap of column a minus column b over the questions both answered, with a plain verdict."""
    out = []
    for a, b in PAIRS:
        if a not in columns or b not in columns:
            continue
        for metric in COMPARED:
            va, vb = _by_question(rows, a, metric), _by_question(rows, b, metric)
            both = [q for q in va if q in vb]
            if not both:
                continue
            diff = np.array([va[q] - vb[q] for q in both])
            mean, ci = float(diff.mean()), bootstrap_interval(diff)
            out.append({"a": a, "b": b, "metric": metric, "difference": mean, "low": ci[0] if ci else None,
                        "high": ci[1] if ci else None, "questions": len(both),
                        "verdict": verdict(a, b, metric, mean, ci, len(both))})
    return out


def verdict(a: str, b: str, metric: str, mean: float, ci, n: int) -> str:
    name = NAMES[metric]
    if ci is None:
        return f"{a} vs {b} on {name}: {n} questions are too few to tell them apart (at least {MIN_QUESTIONS})."
    low, high = ci
    if low > 0:
        return f"{a} beats {b} on {name} by {mean:.2f} [{low:.2f}, {high:.2f}]."
    if high < 0:
        return f"{b} beats {a} on {name} by {-mean:.2f} [{-high:.2f}, {-low:.2f}]."
    return (f"{a} and {b} cannot be told apart on {name} with {n} questions: {mean:+.2f} "
            f"[{low:+.2f}, {high:+.2f}] includes no difference.")


def format_summary(summary: dict, hit_k: int = 5) -> str:
    head = f"{'column':<18}{'correct':>8}{'judged':>8}{'token F1':>9}{'exact':>7}{'ROUGE-L':>9}{'semantic':>10}{'grounded':>10}" \
           f"{f'hit@{hit_k}':>7}{'latency s':>11}"
    lines = [head]
    for column, s in summary.items():
        def f(key, width, digits=3):
            return f"{s[key]:>{width}.{digits}f}" if s[key] is not None else f"{'-':>{width}}"
        lines.append(f"{column:<18}{f('correct', 8, 2)}{f('judged', 8, 2)}{f('f1', 9)}{f('em', 7, 2)}{f('rouge_l', 9)}{f('semantic', 10)}"
                     f"{f('grounded', 10)}{f('hit', 7, 2)}{f('seconds', 11, 2)}")
    return "\n".join(lines)


def format_confidence(result: dict, metrics=None) -> str:
    """The 95% intervals of `metrics` (the primary score and token F1) per column, then the paired differences
    on them, one sentence each."""
    n = result.get("questions", 0)
    first = result.get("primary", "correct")
    metrics = metrics or (first, "f1")
    lines = [f"The primary score is {NAMES[first]}" + (f", by the judge {result['judge']}" if result.get("judge")
                                                       else ", checked offline") + "; token F1 is secondary.",
             f"95% bootstrap intervals over {n} questions:"]
    for column, ci in result["intervals"].items():
        parts = []
        for m in metrics:
            mean, box = result["summary"][column].get(m), ci.get(m)
            if mean is not None:
                parts.append(f"{NAMES[m]} {mean:.3f} " + (f"[{box[0]:.3f}, {box[1]:.3f}]" if box else "(too few)"))
        lines.append(f"  {column:<18}" + "   ".join(parts))
    lines.append("Paired differences:")
    lines += [f"  {d['verdict']}" for d in result["differences"] if d["metric"] in metrics]
    return "\n".join(lines)


def write_summary_csv(result: dict, path: str | Path) -> None:
    """Each column's mean and interval per metric, then each paired difference with its verdict."""
    fields = ["kind", "column", "versus", "metric", "value", "low", "high", "questions", "verdict"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for column, ci in result["intervals"].items():
            for m, box in ci.items():
                writer.writerow({"kind": "mean", "column": column, "metric": m, "value": result["summary"][column][m],
                                 "low": box[0] if box else "", "high": box[1] if box else "",
                                 "questions": result.get("questions", "")})
        for d in result["differences"]:
            writer.writerow({"kind": "difference", "column": d["a"], "versus": d["b"], "metric": d["metric"],
                             "value": d["difference"], "low": "" if d["low"] is None else d["low"],
                             "high": "" if d["high"] is None else d["high"], "questions": d["questions"],
                             "verdict": d["verdict"]})


def write_csv(rows: list[dict], path: str | Path) -> None:
    fields = ["question", "reference", "column", "answer", *METRICS, "sources"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "sources": " ".join(r["sources"])})


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
