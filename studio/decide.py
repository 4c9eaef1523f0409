"""Fine-tune, RAG, or both? Measured on a person's own documents, within a time budget.

    studio decide DOCS... [--budget-minutes 20] [--questions FILE] [--train FILE] [--model M] [--epochs N]
                          [--judge URL --judge-model NAME] [--json OUT]

Stages, each timed (progress, log and report in `<runs>/decisions/<id>/`, engine/advise/decisions.py):

1. data: question-answer pairs with evidence from the documents (rag/generate.py, the offline writer), with
   questions held out by chunk (unseen) and by phrasing (seen), and the same training questions in the
   "+ RAG" prompt among hard distractors (RAFT). `--train FILE` trains on your examples instead and
   `--questions FILE` scores on your questions (no seen / unseen split then).
2. train plain: LoRA on the pairs with the machine's defaults (precision auto, the faster CPU step).
3. train RAFT: LoRA on the RAFT prompts, the same number of epochs where the budget allows.
4. evaluate: base, fine-tuned and RAFT-fine-tuned, each closed-book and with retrieval (the Compare tab's
   pipeline, the same prompt the RAFT rows were written in), on the held-out questions. The primary score is
   whether each answer is correct (rag/evaluate.py `correct`: the reference's numbers with their units, its
   names and most of its words in the answer), or a judge's verdict where `--judge` names an endpoint
   (rag/judge.py); per cell its mean with a 95% bootstrap interval on all, seen and unseen questions, with
   the mean answer latency and tokens; token F1 is kept as a secondary grid. Retrieval recall@1 and @k,
   and the index's build time and size.
5. forgetting: general questions outside the documents (assets/tasks/general_mc), before and after each
   fine-tune, through the evaluation harness.
6. verdict: the best of RAG (base + retrieval), fine-tuning (the better fine-tune, closed-book) and both
   (the better fine-tune with retrieval), compared with the other two by paired bootstrap differences; it
   names one only when its interval clears both, else it says "cannot tell" and which are tied.

The budget: training gets what is left after the data and a share kept for evaluating, half of it for each
fine-tune; the epochs (at most 5) come from the tokens of the data and the training speed measured here (an
earlier run of the model, else the matrix-product peak). A run still training at the end of its half is
stopped there (its adapter kept), and the RAFT run is re-planned from the plain run's measured speed, for
the plain run's epochs within what is left; the report gives each run's epochs, steps and minutes and says
when the budget cut one short. A budget that
cannot buy one epoch of each is refused before anything trains, in one sentence. Stop (the page's button,
a `stop` file, Ctrl-C) ends at the next check: the runs keep their checkpoints and the report says what was
measured so far.

    python -m studio.decide DOCS... --out FOLDER     # what the page starts in the background
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from engine import owners
from engine.advise.decisions import Decision, Progress, new_folder
from engine.advise.estimate import throughput_from_peak
from engine.capability import auto_precision, capability
from engine.data.dataset import load_examples
from engine.errors import StudioError
from engine.infer import benchmarks
from engine.infer.chat import run_answerers
from engine.models import DEFAULT_MODEL, load_tokenizer, shape_of
from engine.train.config import RunConfig
from engine.train.preflight import create_run
from engine.train.runs import Run, launch, measured_throughput, stop as stop_run
from rag.compare import COLUMNS
from rag.evaluate import NAMES, bootstrap_interval, contains_reference, evaluate, load_questions, primary
from rag.judge import Judge
from rag.generate import Options, generate, raft_rows_for_examples
from rag.pipeline import RagPipeline

MAX_EPOCHS = 5
EVAL_SHARE = 0.35        # of the budget, kept for evaluating and the forgetting check
DEFAULT_BUDGET = 20.0    # minutes; what it buys on the 2-core CPU is in the README
ROWS = ("base", "fine-tuned", "RAFT")
OPTIONS = {"RAG": ("base + RAG",), "fine-tuning": ("fine-tuned", "RAFT"), "both": ("fine-tuned + RAG", "RAFT + RAG")}


class DecideError(StudioError):
    """A decision that cannot be measured as asked (a budget too small, no pairs), in one sentence."""


class StopAsked(Exception):
    pass


def cell_name(row: str, retrieval: bool) -> str:
    return f"{row} + RAG" if retrieval else row


# ---- the budget -------------------------------------------------------------------------------------------

def chat_tokens(rows: list[dict], tokenizer) -> int:
    """Tokens of the rows as the model is trained on them, chat template included."""
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def speed_here(model: str) -> tuple[float, str]:
    measured = measured_throughput(model)
    if measured:
        return measured, "measured by an earlier run of this model"
    precision = auto_precision(model)[0]
    peak = capability(model).peak(precision)
    return throughput_from_peak(shape_of(model), "lora", peak), f"estimated from {peak:.0f} GFLOP/s in {precision}"


def epochs_for(budget_s: float, tokens: int, speed: float) -> float:
    """Epochs (at most MAX_EPOCHS, in halves) that `tokens` per epoch fit in `budget_s` at `speed` tokens/s."""
    return min(MAX_EPOCHS, math.floor(budget_s * speed / max(tokens, 1) * 2) / 2)


# ---- training ---------------------------------------------------------------------------------------------

def train(data: Path, model: str, epochs: float, max_length: int, owner: str, progress: Progress,
          decision: Decision, runs: dict, name: str, deadline: float = math.inf, trained: dict | None = None) -> Run:
    """Train `epochs` of `data`; a run still training at `deadline` (time.monotonic) is stopped there and keeps its
    adapter. `trained[name]` gets its epochs planned and trained, steps, minutes and whether it was cut short."""
    n = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip())
    batch = 4
    cfg = RunConfig(model=model, data=[str(data)], method="lora", max_steps=max(1, math.ceil(epochs * n / batch)),
                    learning_rate=1e-3, batch_size=batch, max_length=max_length, lora_rank=16, lora_alpha=32,
                    save_steps=10_000, report_to=[], seed=0)
    run = create_run(cfg, owner=owner)
    runs[name] = run.id  # in the report however the run ends
    launch(run)
    started = time.monotonic()
    progress.step(0, cfg.max_steps, f"run {run.id}: {epochs:g} epochs of {n} examples")
    try:
        cut = _follow(run, cfg.max_steps, progress, decision, deadline)
    except KeyboardInterrupt:
        stop_run(run, wait=True)
        raise StopAsked(f"run {run.id}") from None
    logged = run.logged()
    steps = logged[-1].step if logged else 0
    if trained is not None:
        trained[name] = {"run": run.id, "epochs_planned": epochs, "steps_planned": cfg.max_steps, "steps": steps,
                         "epochs": round(steps * batch / n, 2), "minutes": round((time.monotonic() - started) / 60, 2),
                         "cut_short": cut}
    if run.adapter is None:
        st = run.state()
        reason = st.ended.reason if st.ended is not None else run.status()
        raise DecideError(f"training run {run.id} ended {run.status()} without an adapter: {reason}")
    return run


def _follow(run: Run, total: int, progress: Progress, decision: Decision, deadline: float = math.inf) -> bool:
    """Follow the run to its end; True when it was stopped at `deadline`, its share of the budget."""
    last = -1
    while True:
        status = run.status()
        if decision.stop_asked():
            stop_run(run, wait=True)
            raise StopAsked(f"run {run.id}")
        if time.monotonic() > deadline and status in ("running", "queued"):
            progress.step(last, total, f"run {run.id}: its share of the budget is spent; stopping it at step {last}")
            stop_run(run, wait=True)
            return True
        logged = run.logged()
        step = logged[-1].step if logged else 0
        if step != last:
            last = step
            speed = f", {logged[-1].tokens_per_s:.0f} tokens/s" if logged and logged[-1].tokens_per_s else ""
            progress.step(step, total, f"run {run.id}{speed}" + (" (waiting for the training slot)"
                                                                   if status == "queued" else ""))
        if status in ("finished", "stopped", "failed", "interrupted"):
            return False
        time.sleep(1.0)


def run_speed(run: Run) -> float | None:
    logged = [entry for entry in run.logged() if entry.tokens_per_s]
    return logged[-1].tokens_per_s if logged else None


# ---- scoring ----------------------------------------------------------------------------------------------

def grid(rows: list[dict], seen: dict[str, bool | None], metric: str = "correct") -> dict:
    """column -> split (all, seen, unseen) -> {mean, low, high, n, latency_s, tokens} of `metric` (the primary
    score, or token F1 for the secondary grid), with the cell's mean answer latency and answer tokens."""
    out = {}
    for row in ROWS:
        for retrieval in (False, True):
            column = cell_name(row, retrieval)
            mine = [r for r in rows if r["column"] == column]
            if not mine:
                continue
            out[column] = {}
            for split, keep in (("all", lambda q: True), ("seen", lambda q: seen.get(q) is True),
                                ("unseen", lambda q: seen.get(q) is False)):
                kept = [r for r in mine if keep(r["question"]) and r.get(metric) is not None]
                if kept:
                    values = [r[metric] for r in kept]
                    ci = bootstrap_interval(values)
                    out[column][split] = {"mean": float(np.mean(values)), "low": ci[0] if ci else None,
                                          "high": ci[1] if ci else None, "n": len(values),
                                          "latency_s": float(np.mean([r["seconds"] for r in kept])),
                                          "tokens": float(np.mean([r["answer_tokens"] for r in kept]))}
    return out


def paired(rows: list[dict], a: str, b: str, metric: str = "correct") -> dict | None:
    va = {r["question"]: r[metric] for r in rows if r["column"] == a and r.get(metric) is not None}
    vb = {r["question"]: r[metric] for r in rows if r["column"] == b and r.get(metric) is not None}
    both = [q for q in va if q in vb]
    if not both:
        return None
    diff = np.array([va[q] - vb[q] for q in both])
    ci = bootstrap_interval(diff)
    return {"a": a, "b": b, "difference": float(diff.mean()), "low": ci[0] if ci else None,
            "high": ci[1] if ci else None, "questions": len(both)}


def verdict(rows: list[dict], table: dict, metric: str = "correct", costs: dict | None = None) -> dict:
    """RAG, fine-tuning or both, when its paired interval clears the other two on `metric`; else "cannot tell".
    `costs`: option -> a phrase of what it costs, said with the option recommended."""
    best_of = {}
    for option, columns in OPTIONS.items():
        present = [c for c in columns if c in table]
        if present:
            best_of[option] = max(present, key=lambda c: table[c]["all"]["mean"])
    if len(best_of) < 3 or "base" not in table:
        return {"choice": "cannot tell", "sentence": "Not every part was measured (stopped early), so no verdict.",
                "differences": []}
    ranked = sorted(best_of, key=lambda o: table[best_of[o]]["all"]["mean"], reverse=True)
    top = ranked[0]
    diffs = [paired(rows, best_of[top], best_of[o], metric) for o in ranked[1:]]
    against_base = paired(rows, best_of[top], "base", metric)
    tied = [o for o, d in zip(ranked[1:], diffs) if d is None or d["low"] is None or d["low"] <= 0]
    cell = table[best_of[top]]["all"]
    measured = (f"{best_of[top]} answers {cell['mean']:.0%} correctly" if metric in ("correct", "judged")
                else f"{best_of[top]} scores {cell['mean']:.2f} {metric}")
    if against_base is None or against_base["low"] is None or against_base["low"] <= 0:
        choice, sentence = "cannot tell", (f"Cannot tell: the best cell, {measured}, is not clearly above the base "
                                           f"model alone on these {cell['n']} questions.")
    elif not tied:
        choice = top
        others = "; ".join(f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] over {d['b']}" for d in diffs)
        cost = f" It costs {costs[top]}." if costs and costs.get(top) else ""
        sentence = f"{top.capitalize() if top != 'RAG' else 'RAG'}: {measured}, {others}.{cost}"
    else:
        choice = "cannot tell"
        ties = "; ".join(f"{best_of[o]} ({d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}])"
                         if d and d["low"] is not None else best_of[o] for o, d in zip(ranked[1:], diffs) if o in tied)
        simplest = next(o for o in ("RAG", "fine-tuning", "both") if o in [top] + tied)
        sentence = (f"Cannot tell {top} from {' or '.join(tied)} on these {cell['n']} questions: {measured}, and the "
                    f"intervals of its differences from {ties} include no difference. The simplest of them, "
                    f"{simplest}, is the cheaper bet; more questions would tell them apart.")
    return {"choice": choice, "best": best_of, "sentence": sentence,
            "differences": [d for d in diffs if d] + ([against_base] if against_base else [])}


def recall(questions: list[dict], pipeline: RagPipeline, k: int) -> dict:
    """Share of the questions whose own chunk (generated) or reference (given) the top 1 and top k hold."""
    out = {}
    for depth in (1, k):
        hits = []
        for q in questions:
            top = pipeline.retrieve(q["question"], k=depth)
            if q.get("chunk"):
                hits.append(any(f"{Path(h.chunk.source).name}" == q["source"] and q["evidence"] in h.chunk.text
                                for h in top))
            else:
                hits.append(contains_reference(" ".join(h.chunk.text for h in top), str(q["answer"])))
        out[f"recall@{depth}"] = float(np.mean(hits)) if hits else None
    return out


def fairness(trained: dict) -> str:
    """Whether the two fine-tunes had equal training, said plainly."""
    runs = [(name, t) for name, t in trained.items()]
    parts = [f"{name} {t['epochs']:g} of {t['epochs_planned']:g} epochs ({t['steps']} of {t['steps_planned']} "
             f"steps) in {t['minutes']:.1f} min" + (", cut short by its share of the budget" if t["cut_short"] else "")
             for name, t in runs]
    cut = [name for name, t in runs if t["cut_short"]]
    head = ("The budget cut " + " and ".join(cut) + " short: the training here was slower than planned. "
            if cut else "Both fine-tunes trained as planned. ")
    return head + "; ".join(parts) + "."


def costs(report: dict) -> dict:
    """option -> what it costs to run and to make: mean answer latency, training minutes, the index."""
    grid_all = {c: v.get("all") for c, v in report.get("grid", {}).items()}
    index = report.get("index") or {}
    trained = report.get("training") or {}
    built = (f"an index of {index.get('passages', 0)} passages ({index.get('mb', 0):.1f} MB) built in "
             f"{index.get('seconds', 0):.0f} s") if index else "an index"

    def latency(column):
        cell = grid_all.get(column)
        return f"{cell['latency_s']:.1f} s and {cell['tokens']:.0f} tokens an answer" if cell else "?"

    def minutes(column):
        name = "RAFT" if column.startswith("RAFT") else "fine-tuned"
        return f"{trained[name]['minutes']:.1f} min of training" if name in trained else "a training run"

    best = {option: max(present, key=lambda c: grid_all[c]["mean"]) for option, columns in OPTIONS.items()
            if (present := [c for c in columns if grid_all.get(c)])}
    out = {"RAG": f"{latency('base + RAG')}, {built}"} if "RAG" in best else {}
    if "fine-tuning" in best:
        out["fine-tuning"] = f"{latency(best['fine-tuning'])}, {minutes(best['fine-tuning'])}"
    if "both" in best:
        out["both"] = f"{latency(best['both'])}, {minutes(best['both'])} and {built}"
    return out


# ---- the report -------------------------------------------------------------------------------------------

def _cell(c: dict | None, cost: bool = True) -> str:
    if not c:
        return "-"
    ci = f" [{c['low']:.2f}, {c['high']:.2f}]" if c.get("low") is not None else ""
    spent = f", {c['latency_s']:.1f} s, {c['tokens']:.0f} tok" if cost and "latency_s" in c else ""
    return f"{c['mean']:.2f}{ci} (n={c['n']}{spent})"


def grid_lines(table: dict, split: str = "all", cost: bool = True) -> list[str]:
    """The grid as a table: each cell's mean [95% interval] (n, and where `cost`, its mean answer latency and
    answer tokens)."""
    w = 42 if cost else 27
    lines = [f"| {'model':<11}| {'closed-book':<{w}}| {'with retrieval':<{w}}|", f"|{'-' * 12}|{'-' * (w + 1)}|"
             f"{'-' * (w + 1)}|"]
    for row in ROWS:
        if row in table or f"{row} + RAG" in table:
            closed = table.get(row, {}).get(split)
            rag = table.get(f"{row} + RAG", {}).get(split)
            lines.append(f"| {row:<11}| {_cell(closed, cost):<{w}}| {_cell(rag, cost):<{w}}|")
    return lines


def markdown(report: dict) -> str:
    out = [f"# Fine-tune, RAG, or both? ({report['id']})", "",
           f"**{report['verdict']['sentence']}**", "",
           f"Documents: {', '.join(report['documents'])}. Model: {report['model']}. Status: {report['status']}.", ""]
    score = report.get("score") or {"name": NAMES["correct"], "by": "the offline check"}
    out += [f"The primary score, which decides, is {score['name']}, by {score['by']}; token F1 is secondary.", ""]
    for split, title in (("all", "All held-out questions"), ("seen", "Facts trained on, asked in other words"),
                         ("unseen", "Chunks never trained on")):
        if any(split in v for v in report["grid"].values()):
            out += [f"## {title}: {score['name']}, mean [95% interval] (n, mean answer latency and tokens)", ""] + \
                grid_lines(report["grid"], split) + [""]
    if report.get("grid_f1"):
        out += ["## Secondary: token F1 on all held-out questions", ""] + grid_lines(report["grid_f1"], cost=False) + [""]
    if report.get("retrieval"):
        out += ["Retrieval: " + ", ".join(f"{k} {v:.2f}" for k, v in report["retrieval"].items() if v is not None), ""]
    if report.get("index"):
        i = report["index"]
        out += [f"Index: {i['passages']} passages, {i['mb']:.2f} MB, built in {i['seconds']:.1f} s.", ""]
    if report["budget"].get("fairness") if report.get("budget") else False:
        out += ["## Training", "", report["budget"]["fairness"], ""]
    if report["verdict"].get("differences"):
        out += [f"## Paired differences ({score['name']})", ""] + [
            f"- {d['a']} - {d['b']}: {d['difference']:+.3f}" + (f" [{d['low']:+.3f}, {d['high']:+.3f}]"
                                                                  if d["low"] is not None else "")
            + f" over {d['questions']} questions" for d in report["verdict"]["differences"]] + [""]
    if report.get("forgetting"):
        out += ["## Forgetting (general questions outside the documents)", ""] + [
            f"- {name}: {line}" for name, line in report["forgetting"].items()] + [""]
    out += ["## Time", ""] + [f"- {stage}: {s:.0f} s" for stage, s in report["times"].items()] + [
        f"- total: {report['seconds']:.0f} s of a {report['budget_minutes']:g}-minute budget", ""]
    if report.get("data"):
        out += ["## Data", ""] + [f"- {line.strip()}" for line in report["data"]] + [""]
    out += ["## Runs", ""] + [f"- {k}: {v}" for k, v in report["runs"].items()] + [""]
    return "\n".join(out)


# ---- the whole measurement --------------------------------------------------------------------------------

def decide(docs: list[str], folder: Path, budget_minutes: float = DEFAULT_BUDGET, model: str = DEFAULT_MODEL,
           train_file: str = "", questions_file: str = "", owner: str = owners.LOCAL, echo=print,
           epochs: float = 0.0, judge: Judge | None = None) -> dict:
    budget_s = budget_minutes * 60
    progress = Progress(folder, budget_s, echo)
    decision = Decision(folder)
    report = {"id": folder.name, "documents": [Path(d).name for d in docs], "model": model,
              "budget_minutes": budget_minutes, "status": "running", "grid": {}, "runs": {}, "times": {},
              "verdict": {"choice": "cannot tell", "sentence": "Not measured yet.", "differences": []}}
    try:
        _measure(docs, folder, budget_s, model, train_file, questions_file, owner, progress, decision, report,
                 epochs, judge)
        report["status"] = "finished"
    except (StopAsked, KeyboardInterrupt) as stopped:
        report["status"] = "stopped"
        report["verdict"]["sentence"] = f"Stopped during {progress.stage} ({stopped}); what was measured is kept."
    except StudioError as exc:
        report["status"] = "failed"
        report["verdict"]["sentence"] = f"Failed during {progress.stage}: {exc}"
        report["error"] = str(exc)
    finally:
        progress.finish()
        report["times"] = progress.times
        report["seconds"] = round(progress.elapsed(), 1)
        (folder / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (folder / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def _measure(docs, folder, budget_s, model, train_file, questions_file, owner, progress, decision, report,
             fixed_epochs, judge=None):
    def check_stop():
        if decision.stop_asked():
            raise StopAsked("before the next stage")

    progress.enter("data", "reading the documents and writing question-answer pairs")
    pipeline = RagPipeline()
    data = folder / "data"
    tokenizer = load_tokenizer(model)
    if train_file:
        index_seconds = pipeline.index(docs).seconds
        if not len(pipeline.store):
            raise DecideError("none of the documents could be read; see `studio rag index` for the reason.")
        examples = load_examples(train_file)
        plain = [e.to_chat() for e in examples]
        data.mkdir(exist_ok=True)
        _write(data / "pairs.jsonl", plain)
        _write(data / "pairs.raft.jsonl", raft_rows_for_examples(plain, pipeline, Options()))
        held = load_questions(questions_file) if questions_file else []
        if not held:
            raise DecideError("--train needs --questions: the held-out questions to score on.")
        report["data"] = [f"{len(plain)} training examples from {Path(train_file).name}, "
                          f"{len(held)} questions from {Path(questions_file).name}"]
    else:
        # with your own questions to score on, every chunk and every phrasing is trained on
        options = Options(raft=True, held_out=0.0, hold_phrasings=False) if questions_file else Options(raft=True)
        made = generate(docs, data / "pairs.jsonl", options, pipeline=pipeline,
                        progress=lambda i, n, w: progress.step(i, n, w))
        report["data"] = made.lines()
        index_seconds = made.index_seconds
        if made.train < 4:
            raise DecideError(f"only {made.train} question-answer pairs could be written from these documents, too "
                              "few to fine-tune on; give more text, a teacher (studio data generate --teacher), or "
                              "your own examples (--train).")
        held = load_questions(questions_file) if questions_file else \
            [json.loads(line) for line in (data / "pairs.heldout.jsonl").read_text().splitlines() if line.strip()]
        plain = [json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines() if line.strip()]
    raft = [json.loads(line) for line in (data / "pairs.raft.jsonl").read_text().splitlines() if line.strip()]
    store = pipeline.store
    report["index"] = {"seconds": round(index_seconds, 2), "passages": len(store),
                       "mb": round((store.vectors.nbytes + sum(len(c.text.encode()) for c in store.chunks
                                                               if c is not None)) / 2**20, 3)}

    speed, source = speed_here(model)
    spent = progress.elapsed()
    training_s = (budget_s - spent) * (1 - EVAL_SHARE)
    share_s = training_s / 2  # each fine-tune's equal share
    plain_tokens, raft_tokens = chat_tokens(plain, tokenizer), chat_tokens(raft, tokenizer)
    epochs = fixed_epochs or epochs_for(share_s, plain_tokens, speed)
    report["budget"] = {"speed_tokens_per_s": round(speed, 1), "speed_source": source,
                        "tokens_per_epoch": {"plain": plain_tokens, "RAFT": raft_tokens}, "epochs": epochs,
                        "training_minutes": round(training_s / 60, 2), "share_minutes": round(share_s / 60, 2)}
    if epochs_for(training_s, plain_tokens + raft_tokens, speed) < 1:
        need = (plain_tokens + raft_tokens) / speed / (1 - EVAL_SHARE) / 60 + spent / 60
        raise DecideError(f"a budget of {budget_s / 60:g} minutes is too small to train: one epoch of both runs is "
                          f"{plain_tokens + raft_tokens} tokens, at about {speed:.0f} tokens/s here ({source}) it "
                          f"needs about {math.ceil(need)} minutes; raise --budget-minutes.")
    check_stop()
    progress.enter("train plain", f"{epochs:g} epochs at about {speed:.0f} tokens/s ({source}), within "
                                  f"{share_s / 60:.1f} of the {training_s / 60:.1f} training minutes")
    started = time.monotonic()
    trained = report["training"] = {}
    plain_run = train(data / "pairs.jsonl", model, epochs, 256, owner, progress, decision, report["runs"],
                      "fine-tuned", deadline=started + share_s if not fixed_epochs else math.inf, trained=trained)
    measured = run_speed(plain_run) or speed
    check_stop()
    left = training_s - (time.monotonic() - started)  # its half, and what the plain run left unused
    done = trained["fine-tuned"]["epochs"] if trained["fine-tuned"]["cut_short"] else epochs
    raft_epochs = fixed_epochs or max(0.5, min(done, epochs_for(left, raft_tokens, measured)))
    report["budget"]["raft_epochs"] = raft_epochs
    progress.enter("train RAFT", f"{raft_epochs:g} epochs at the plain run's {measured:.0f} tokens/s, within "
                                 f"{left / 60:.1f} minutes" + (" (fewer than the plain run: the budget)"
                                                                if raft_epochs < epochs else ""))
    raft_run = train(data / "pairs.raft.jsonl", model, raft_epochs, 512, owner, progress, decision, report["runs"],
                     "RAFT", deadline=time.monotonic() + left if not fixed_epochs else math.inf, trained=trained)
    report["budget"]["fairness"] = fairness(trained)
    check_stop()

    progress.enter("evaluate", f"{len(held)} questions x 6 cells")
    seen = {q["question"]: q.get("seen") for q in held}
    rows = []
    for run, rename, columns in ((plain_run, {}, COLUMNS),
                                 (raft_run, {"fine-tuned": "RAFT", "fine-tuned + RAG": "RAFT + RAG"},
                                  ("fine-tuned", "fine-tuned + RAG"))):
        answer = run_answerers(run)
        result = evaluate(held, pipeline, answer, columns=columns, fit=(answer.chat.tokenizer,
                                                                        answer.chat.max_prompt_tokens()),
                          progress=lambda i, n, r=run: progress.step(i, n, f"answers of {r.id}"), judge=judge)
        for r in result["rows"]:
            r["column"] = rename.get(r["column"], r["column"])
            rows.append(r)
        metric = primary(rows)
        report["score"] = {"primary": metric, "name": NAMES[metric],
                           "by": f"the judge {judge.name}" if judge else "the offline check (rag/evaluate.py correct)"}
        report["grid"], report["grid_f1"] = grid(rows, seen, metric), grid(rows, seen, "f1")
        check_stop()
    if judge and judge.failures:
        report["score"]["judge_failures"] = judge.failures
    report["retrieval"] = recall(held, pipeline, pipeline.k)
    _write(folder / "answers.jsonl", rows)

    progress.enter("forgetting", "general questions before and after, through the evaluation harness")
    report["forgetting"] = {}
    if progress.elapsed() > budget_s:
        report["forgetting"]["skipped"] = "the budget was spent before this check"
    else:
        check_stop()  # one endpoint for the base and both runs, the base scored once
        compared = benchmarks.compare_many([plain_run, raft_run], ["general_mc"])
        for name, scored in zip(("fine-tuned", "RAFT"), compared):
            report["forgetting"][name] = scored.forgetting[0].sentence() if scored.forgetting else "not measured"
            progress.step(0, 0, f"{name}: {report['forgetting'][name]}")
    progress.enter("verdict")
    report["verdict"] = verdict(rows, report["grid"], report["score"]["primary"], costs(report))
    progress.step(0, 0, report["verdict"]["sentence"])


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studio decide", description=__doc__.splitlines()[0])
    p.add_argument("docs", nargs="+", help="documents or folders (.txt .md .html .pdf .docx, .jsonl / .csv text)")
    p.add_argument("--budget-minutes", type=float, default=DEFAULT_BUDGET, help="time for the whole measurement")
    p.add_argument("--questions", default="", help="your held-out questions with answers (JSONL or CSV) to score on")
    p.add_argument("--train", default="", help="your training examples instead of the generated pairs")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the model to fine-tune (default: the embedded default)")
    p.add_argument("--epochs", type=float, default=0.0,
                   help="train both runs exactly this many epochs (default 0: as many as the budget buys, at most 5)")
    p.add_argument("--out", default="", help="the decision's folder (default: a new one under <runs>/decisions)")
    p.add_argument("--judge", metavar="URL", default="",
                   help="an OpenAI-compatible endpoint (.../v1) that judges each answer against its reference; "
                        "its verdict is then the primary score (key: JUDGE_API_KEY)")
    p.add_argument("--judge-model", metavar="NAME", default="", help="with --judge: the model it serves")
    p.add_argument("--owner", default=owners.LOCAL, help=argparse.SUPPRESS)
    p.add_argument("--json", default="", help="also write the report here")
    a = p.parse_args(argv)
    if a.budget_minutes <= 0:
        raise DecideError("--budget-minutes must be above 0.")
    for path in a.docs + [x for x in (a.questions, a.train) if x]:
        if not Path(path).exists():
            raise DecideError(f"{path}: no such file or folder.")
    folder = Path(a.out) if a.out else new_folder(a.owner)
    folder.mkdir(parents=True, exist_ok=True)
    if a.epochs < 0:
        raise DecideError("--epochs must be 0 (from the budget) or more.")
    judge = Judge(a.judge, a.judge_model) if a.judge else None
    report = decide(a.docs, folder, a.budget_minutes, a.model, a.train, a.questions, a.owner, epochs=a.epochs,
                    judge=judge)
    if report["status"] == "failed":  # what the person can change, in one sentence; the report is kept
        raise DecideError(report["error"])
    print()
    print("\n".join(grid_lines(report["grid"])))
    print(report["verdict"]["sentence"])
    print(f"report: {folder / 'report.md'} and report.json")
    if a.json:
        shutil.copyfile(folder / "report.json", a.json)
    return {"finished": 0, "stopped": 130}.get(report["status"], 1)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StudioError as exc:  # what the person can change; a bug keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
