"""How much of a set of documents the question writer covers, measured on sets nobody tuned it to.

Each set is a folder with `docs/` (the documents) and `questions.jsonl` (questions written by hand from them,
each with its reference answer; assets/heldout/ holds six: prose history, a timetable with lists, an FAQ, a
manual with a specification table, membership terms, an HTML page). The writer (rag/generate.py, offline rules
unless a teacher is given) writes pairs from the documents, nothing held out; then, per set:

- coverage: the share of hand-written questions whose reference fact some generated answer holds
  (rag/evaluate.py `correct(generated answer, reference)`: numbers with units, names, most other words);
- supported: the share of kept answers whose fact their own evidence quote holds (`correct(quote, answer)`);
- gives away: the share of kept questions that already hold their answer: the answer adds no number and at
  most one word (a name or content word) to what its question says.

The hand-written questions are the measure only: the writer never reads them.

    python -m rag.coverage assets/heldout [--show SET] [--json OUT] [--teacher URL --teacher-model NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rag.evaluate import _facts, _stem, correct, load_questions, normalise
from rag.generate import Options, generate
from rag.pipeline import RagPipeline


def measure(folder: Path, options: Options | None = None) -> dict:
    """The writer's pairs from `folder`/docs and its coverage of `folder`/questions.jsonl."""
    options = options or Options(held_out=0.0, hold_phrasings=False)
    questions = load_questions(folder / "questions.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        report = generate([str(folder / "docs")], Path(tmp) / "pairs.jsonl", options, pipeline=RagPipeline())
        pairs = [json.loads(line) for name in ("pairs.jsonl", "pairs.heldout.jsonl")
                 for line in (Path(tmp) / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [_pair(p) for p in pairs]
    covered = [q for q in questions if any(correct(r["answer"], str(q["answer"])) for r in rows)]
    return {"set": folder.name, "questions": len(questions), "pairs": len(rows), "covered": len(covered),
            "coverage": len(covered) / len(questions),
            "supported": sum(correct(r["quote"], r["answer"]) for r in rows) / max(1, len(rows)),
            "gives_away": sum(adds_nothing(r["question"], r["answer"]) for r in rows) / max(1, len(rows)),
            "missed": [q["question"] for q in questions if q not in covered], "sample": rows[:10],
            "writer": report.writer}


def adds_nothing(question: str, answer: str) -> bool:
    """Whether `answer` tells nothing its question did not already say: no number, at most one word more."""
    numbers = {n for n, _ in _facts(question)[0]}
    said = {_stem(w) for w in normalise(question)}
    new_numbers = [n for n, _ in _facts(answer)[0] if n not in numbers]
    _, names, content = _facts(answer)
    return not new_numbers and len([w for w in names | content if w not in said]) <= 1


def _pair(row: dict) -> dict:
    """question, answer and quote of a written pair, as a chat row (train) or a held-out row."""
    if "messages" in row:
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        answer = next(m["content"] for m in row["messages"] if m["role"] == "assistant")
        return {"question": user, "answer": answer, "quote": (row.get("metadata") or {}).get("quote") or answer}
    return {"question": row["question"], "answer": row["answer"], "quote": row.get("evidence", row["answer"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.coverage", description=__doc__.splitlines()[0])
    p.add_argument("root", help="a folder of sets (each with docs/ and questions.jsonl), or one set")
    p.add_argument("--show", help="print this set's first 10 pairs and the questions it missed")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--teacher", default="", help="an OpenAI-compatible endpoint to write with instead of the rules")
    p.add_argument("--teacher-model", default="")
    a = p.parse_args(argv)
    root = Path(a.root)
    sets = [root] if (root / "questions.jsonl").exists() else sorted(d for d in root.iterdir()
                                                                     if (d / "questions.jsonl").exists())
    options = Options(held_out=0.0, hold_phrasings=False, teacher=a.teacher, teacher_model=a.teacher_model)
    results = []
    print(f"{'set':<12}{'pairs':>6}{'coverage':>10}{'supported':>11}{'gives away':>12}")
    for folder in sets:
        r = measure(folder, options)
        results.append(r)
        print(f"{r['set']:<12}{r['pairs']:>6}{r['covered']:>4}/{r['questions']:<2} {r['coverage']:>4.0%}"
              f"{r['supported']:>10.0%}{r['gives_away']:>12.0%}", flush=True)
    mean = sum(r["coverage"] for r in results) / max(1, len(results))
    worst = min(results, key=lambda r: r["coverage"]) if results else None
    print(f"mean coverage {mean:.0%}; worst {worst['set']} {worst['coverage']:.0%}" if worst else "no sets found")
    for r in results:
        if a.show == r["set"]:
            print(f"\n{r['set']}: the first {len(r['sample'])} pairs")
            for s in r["sample"]:
                print(f"  Q: {s['question']}\n  A: {s['answer']}")
            print("missed:\n" + "\n".join(f"  {q}" for q in r["missed"]))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
