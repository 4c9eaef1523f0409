"""Performance benchmark: the studio's training against a bare TRL script, MFU, Compare and app start.

    studio bench [--model M] [--methods lora,full] [--steps 30] [--batch 4] [--max-length 256]
                 [--data FILE --train-on assistant] [--repeats 2] [--variants studio,bf16]
                 [--skip train,compare,app,tick]
                 [--run RUN_ID] [--questions 20] [--json bench.json]

    studio bench --skip compare,app,tick                       the sample: 61-token chats, loss on every token
    studio bench --data ../shared/peer-data/alpaca_en_demo.json --train-on assistant --batch 8 \
                 --max-length 512 --steps 12 --skip compare,app,tick
                                                               instructions of widely varying lengths, the loss
                                                               on the answers only

Training, for each method, on the same model, data, seed, batch, length, learning rate and schedule, one
process at a time:
  baseline     a bare TRL `SFTTrainer` script in fp32, as a person would write it with trl's defaults (run
               as `python -m studio.bench --baseline ARGS`; gradient checkpointing off, as in the studio).
               With --data, it reads the examples as trl's conversational prompt / completion rows, so trl
               computes the loss on the completions (trl's default for such rows) as the studio does
               with --train-on assistant.
  studio       a studio run with its defaults, in fp32 as the baseline (`auto` may pick bf16; see that
               row): on a CPU, the faster step of engine/train/fast_step.py
  trl's step   the studio with `fast_step: false`: trl's own step, what the studio ran before
  packed       the studio with `packing: true` and batch 1: rows of max_length holding several
               examples each (about as many as `batch` padded rows when max_length is about
               batch x the typical example); the examples grouped differently, so only the
               final loss is compared
  bf16         the studio with `precision: bf16` (adapters and optimizer stay fp32)
Each variant runs --repeats times, in turn with the others, and its fastest run counts (the same
work varies by 20% from minute to minute here). Tokens per second: input tokens (a padded batch's attention
mask, every token of a padding-free one) over the wall time from the end of step 2 to the end of the last step (the first steps warm up). Peak memory: the
process's maximum resident set (GPU: allocated). Loss: mean of the last 5 logged losses, its gap to the
baseline's, and the largest step-by-step gap to the baseline; the curves are printed side by side. (LoRA's
dropout draws its masks over the batch's tensor, which has no padding in the studio's step, so the curves
agree within dropout's noise rather than to the last digit; tests/test_fast_step.py holds the step to
trl's own at dropout 0.)
MFU: achieved FLOP/s, counted on the FLOPs the step needs (4 per parameter of the layers per token with
adapters, whose frozen weights get no weight gradients, 6 for full fine-tuning; the LM head's only at the
tokens the loss is on), over the matrix-multiply peak measured here at the precision used, at the model's layer shapes (engine/capability.py: the figures `precision: auto`
reads). The bf16 variant is left out, with the measured ratio, where bf16 runs slower than fp32.
Compare (on the run trained here, or --run): the studio's batched Compare against a plain
sequential transformers + peft loop in fp32 doing the same generations (same prompts, greedy, same
maximum tokens and decoding settings): one question's four columns in one batch against one column
alone (goal: at most 1.5x), and the batch evaluation of --questions sample questions against the
loop answering them one by one (goal: at least 2.5x faster); each column's first-token and done
times, and how many answers are word for word the loop's. App: seconds from `studio` to a page that answers. Tick: milliseconds an open Train tab
spends each second on a 10,000-step run. RAG: see `studio rag bench`.
Nothing else should run while it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from engine.advise.estimate import flops_per_token
from engine.capability import capability, cpu_features, cpu_model
from engine.infer.chat import run_answerers, run_here
from engine.data.dataset import load_examples, tokenize_example
from engine.models import DEFAULT_MODEL, load_causal_lm, load_tokenizer, resolve_model, shape_of
from engine.train.config import ConfigError, RunConfig, SAMPLE_EVAL, SAMPLE_TRAIN
from engine.train.preflight import create_run
from engine.train.runs import Run, launch, runs_root
from engine.train.trainer import peak_memory_mb
from rag.compare import plan, stream_planned
from rag.evaluate import evaluate, load_questions
from rag.pipeline import sample_pipeline
from studio.app import running_app
from ui.train_tab import run_view

ROOT = Path(__file__).resolve().parent.parent
WARM = 2  # steps left out of the throughput


def _throughput(records: list[dict]) -> float | None:
    """Tokens per second between the end of step WARM and the last step, from (step, tokens, seconds)."""
    rows = [r for r in records if r.get("tokens") is not None]
    first = next((r for r in rows if r["step"] >= WARM), None)
    last = rows[-1] if rows else None
    if not first or last is first or last["elapsed_s"] <= first["elapsed_s"]:
        return None
    return (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])


def _summary(name: str, losses: list[float], records: list[dict], peak_mb: float, params: int, method: str,
             precision: str) -> dict:
    return {"variant": name, "precision": precision, "tokens_per_s": _throughput(records), "peak_mb": peak_mb,
            "final_loss": sum(losses[-5:]) / len(losses[-5:]) if losses else None, "losses": losses,
            "params": params}


# ---- the baseline: a bare TRL script ---------------------------------------------------------

def baseline(model: str, steps: int, batch: int, max_length: int, lr: float, method: str, seed: int,
             data: str = str(SAMPLE_TRAIN)) -> dict:
    """What a person would write with TRL alone: the chat file (or prompt / completion rows), SFTTrainer, a
    LoRA config (or none)."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    records: list[dict] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                records.append({"step": state.global_step, "loss": float(logs["loss"]),
                                "tokens": int(state.num_input_tokens_seen),
                                "elapsed_s": time.monotonic() - self.t0})

    path = resolve_model(model)
    rows = load_dataset("json", data_files=data, split="train")
    rows = rows.select_columns(["messages"] if "messages" in rows.column_names else ["prompt", "completion"])
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        processing_class=AutoTokenizer.from_pretrained(path),
        train_dataset=rows,
        args=SFTConfig(output_dir=tempfile.mkdtemp(prefix="bench-trl-"), max_steps=steps,
                       per_device_train_batch_size=batch, max_length=max_length, learning_rate=lr,
                       lr_scheduler_type="cosine", warmup_steps=0, logging_steps=1, save_strategy="no",
                       report_to="none", seed=seed, gradient_checkpointing=False, disable_tqdm=True, bf16=False,
                       include_num_input_tokens_seen="non_padding", dataloader_num_workers=0),
        peft_config=None if method == "full" else LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[Clock()],
    )
    trainer.train()
    params = _base_params(trainer.model)

    peak = peak_memory_mb()  # measured as the studio's runs measure it
    return _summary("baseline", [r["loss"] for r in records], records, round(peak), params, method,
                    "fp32")


def _base_params(model) -> int:
    """Parameters of the base model (adapters left out), tied weights counted once."""
    seen = {id(p): p.numel() for n, p in model.named_parameters(remove_duplicate=True)
            if "lora_" not in n and "modules_to_save" not in n}
    return sum(seen.values())


def _run_baseline(model, steps, batch, max_length, lr, method, seed, data) -> dict:
    args = json.dumps([model, steps, batch, max_length, lr, method, seed, data])
    out = subprocess.run([sys.executable, "-m", "studio.bench", "--baseline", args], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError("the TRL baseline failed:\n" + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the studio's runs ---------------------------------------------------------------------------

def _run_studio(name: str, cfg: RunConfig, root: Path) -> tuple[dict, object]:
    run = create_run(cfg, root)
    launch(run)
    if run.wait(timeout=3600) != "finished":
        raise RuntimeError(f"the studio run {name} ended {run.status()}: {run.summary().get('reason')}")
    st = run.state()
    started, finished = st.first_started, st.ended
    records = [{"step": e.step, "tokens": e.tokens, "elapsed_s": e.elapsed_s} for e in st.losses()]
    params = started.params - started.trainable_params if cfg.method not in ("full", "freeze") else started.params
    return _summary(name, [e.loss for e in st.losses()], records, finished.peak_memory_mb, params,
                    cfg.method, started.precision), run


# What the studio runs beside the baseline, and the settings each changes (bf16 last: left out where slower)
VARIANTS = (("studio", {"precision": "fp32"}), ("trl's step", {"fast_step": False, "precision": "fp32"}),
            ("packed", {"packing": True, "batch_size": 1, "precision": "fp32"}), ("bf16", {"precision": "bf16"}))


def completion_rows(source: str, folder: Path) -> Path:
    """`source` (any file the studio reads) as trl's conversational prompt / completion rows, one answer each:
    the file both the baseline and the studio read when the loss is on the answers only."""
    path = folder / "prompt-completion.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for ex in load_examples([source]):
            if ex.messages and ex.messages[-1]["role"] == "assistant":
                chat = [{"role": m["role"], "content": m["content"]} for m in ex.messages]
                out.write(json.dumps({"prompt": chat[:-1], "completion": chat[-1:]}, ensure_ascii=False) + "\n")
    return path


def needed_flops_per_token(model: str, params: int, method: str, data: str, train_on: str,
                           max_length: int) -> float:
    """Training FLOPs a token of `data` needs: the layers' (4 or 6 per parameter, engine/advise/estimate.py)
    for every token, the LM head's only for the share of tokens the loss is on (the studio's step projects
    nothing else; the embedding lookup is no product)."""
    shape = shape_of(model)
    head = shape.vocab * shape.hidden
    layers = params - head - (0 if shape.tied else head)
    tok = load_tokenizer(model)
    trained = total = 0
    for ex in load_examples([data])[:2000]:
        mask = tokenize_example(ex, tok, train_on)["assistant_masks"][:max_length]
        trained, total = trained + sum(mask[1:]), total + len(mask)  # the first token is never predicted
    return flops_per_token(layers, method) + flops_per_token(head, method) * trained / max(total, 1)


def train_bench(model: str, method: str, steps: int, batch: int, max_length: int, lr: float = 2e-4,
                seed: int = 42, root: Path | None = None, repeats: int = 1, data: str | None = None,
                train_on: str = "all", only: tuple[str, ...] | None = None) -> tuple[list[dict], object]:
    """The variants of one method; returns their summaries (baseline first) and the studio run. `data`: the
    sample's chats when None; `train_on: assistant`: the loss on the answers only (prompt / completion rows);
    `only`: these variants besides the baseline (default: all)."""
    root = root or Path(tempfile.mkdtemp(prefix="bench-runs-"))
    if data is None:
        data = str(SAMPLE_TRAIN)
    if train_on == "assistant":
        data = str(completion_rows(data, root))

    cap = capability(model)  # the same measured figures `precision: auto` and the Method tab read
    peaks = dict(cap.gflops)
    cfg = dict(model=model, data=data, method=method, max_steps=steps, batch_size=batch,
               max_length=max_length, learning_rate=lr, seed=seed, train_on=train_on, warmup_ratio=0.0,
               save_steps=10 * steps, report_to="none", logging_steps=1)
    # Packed: rows of max_length holding several examples; one row per step holds about as many examples as
    # `batch` padded rows when max_length is about batch x the typical example (the sample: ~61 tokens).
    # In fp32, as the baseline: the studio and the bare script must train the very same thing. (`auto` may pick
    # bf16 here; the bf16 row shows what that gives.)
    variants = [v for v in VARIANTS if v[0] != "bf16"]
    skipped = []
    if method not in ("full", "freeze") and (only is None or "bf16" in only):
        if cap.faster("bf16"):
            variants.append(VARIANTS[-1])
        else:  # the studio refuses it here, and a 180x slower run would take the benchmark hours
            skipped.append(f"bf16 left out: {cap.describe('bf16')}")
    variants = [v for v in variants if only is None or v[0] in only]
    best: dict[str, dict] = {}
    run = None
    # The same work can run 20% faster or slower from one minute to the next on a shared machine: each
    # variant runs `repeats` times, in turn with the others, and keeps its fastest run.
    for _ in range(repeats):
        rows = [_run_baseline(model, steps, batch, max_length, lr, method, seed, data)]
        for name, extra in variants:
            summary, studio_run = _run_studio(name, RunConfig(**{**cfg, **extra}), root)
            rows.append(summary)
            run = run or studio_run
        for row in rows:
            old = best.get(row["variant"])
            if old is None or (row["tokens_per_s"] or 0) > (old["tokens_per_s"] or 0):
                best[row["variant"]] = row
    rows = list(best.values())
    base = rows[0]
    needed = needed_flops_per_token(model, base["params"], method, data, train_on, max_length)
    for row in rows:
        p = row["precision"] if peaks.get(row["precision"]) else "fp32"
        row["peak_gflops"] = round(peaks[p])
        rate = row["tokens_per_s"]
        row["flops_per_token"] = needed
        row["mfu"] = rate * needed / (peaks[p] * 1e9) if rate else None
        row["speedup"] = rate / base["tokens_per_s"] if rate and base["tokens_per_s"] else None
        # Step by step only where a step holds the same examples as the baseline's (not when packed).
        gaps = [abs(a - b) / abs(b) for a, b in zip(row["losses"], base["losses"]) if b]
        row["max_loss_gap"] = max(gaps) if gaps and row["variant"] != "packed" else None
        row["final_loss_gap"] = (abs(row["final_loss"] - base["final_loss"]) / abs(base["final_loss"])
                                 if row["final_loss"] is not None and base["final_loss"] else None)
        row["method"] = method
    if rows:
        rows[0]["notes"] = skipped
    return rows, run


# ---- Compare and the app ---------------------------------------------------------------------------

def _sequential_loop(model: str, adapter, full_model, jobs, max_new_tokens: int) -> tuple[list[str], list[float]]:
    """The baseline: plain transformers + peft, fp32, one greedy generate per job, the same prompts,
    maximum tokens and decoding settings as Compare (repetition penalty, suppressed special tokens)."""
    import torch
    from peft import PeftModel


    tok = load_tokenizer(model)
    base = load_causal_lm(model).eval()
    tuned = None
    if full_model:
        tuned = load_causal_lm(str(full_model)).eval()
    elif adapter:
        base = PeftModel.from_pretrained(base, str(adapter)).eval()
    ends = base.generation_config.eos_token_id
    ends = set(ends if isinstance(ends, list) else [ends]) | {tok.eos_token_id}
    suppress = [i for i in tok.all_special_ids if i not in ends] or None
    texts, seconds = [], []
    for side, messages in jobs:
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        model_ = tuned if (side == "fine-tuned" and tuned is not None) else base
        switch = base.disable_adapter() if (side == "base" and adapter and not full_model) else nullcontext()
        start = time.perf_counter()
        with torch.inference_mode(), switch:
            out = model_.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
                                  pad_token_id=tok.pad_token_id, suppress_tokens=suppress)
        seconds.append(time.perf_counter() - start)
        texts.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return texts, seconds


def compare_bench(run, questions: int = 20, question: str = "How heavy is the Tilly T2?") -> dict:
    """Compare against a plain sequential transformers + peft loop doing the same generations: one question's
    four columns, then `questions` sample questions' four columns each (the batch evaluation's work)."""
    answer = run_answerers(run)
    pipe = sample_pipeline()
    fit = (answer.chat.tokenizer, answer.chat.max_prompt_tokens())
    asked = load_questions(SAMPLE_EVAL)[:questions]
    one = plan([question], pipe, answer.sides, fit=fit)
    many = plan([q["question"] for q in asked], pipe, answer.sides, fit=fit)
    sides = lambda jobs: [("fine-tuned" if j.column.startswith("fine-tuned") else "base", j.messages) for j in jobs]
    def studio():  # on a helper thread, as a page's handler; the generates run on this main thread, as in the app
        list(answer([("base", one[0].messages)]))  # warm up on one short answer
        start = time.perf_counter()
        first: dict[int, float] = {}
        finals = {}
        for i, a, done in stream_planned(one, answer):
            first.setdefault(i, time.perf_counter() - start)
            if done:
                finals[i] = a
        four_s = time.perf_counter() - start
        start = time.perf_counter()
        result = evaluate(asked, pipe, answer, fit=fit)
        return first, finals, four_s, result, time.perf_counter() - start

    first, finals, four_s, result, eval_s = run_here(studio)

    max_new = answer.max_new_tokens
    base_one, base_one_s = _sequential_loop(run.config.model, run.adapter, run.model_dir, sides(one), max_new)
    base_many, base_many_s = _sequential_loop(run.config.model, run.adapter, run.model_dir, sides(many), max_new)
    studio_many = {(r["question"], r["column"]): r["answer"] for r in result["rows"]}
    same = sum(studio_many.get((asked[j.question]["question"], j.column)) == t for j, t in zip(many, base_many))
    columns = [{"column": j.column, "prompt_tokens": finals[i].prompt_tokens, "answer_tokens": finals[i].answer_tokens,
                "first_token_s": first[i], "studio_s": finals[i].seconds, "loop_s": base_one_s[i],
                "same_answer": finals[i].text == base_one[i]} for i, j in enumerate(one)]
    mean_column = sum(base_one_s) / len(base_one_s)
    return {
        "precision": answer.precision(), "kernels": answer.chat.kernels, "columns": columns,
        "four_columns_s": four_s, "loop_one_column_mean_s": mean_column, "loop_one_column_max_s": max(base_one_s),
        "loop_four_columns_s": sum(base_one_s),
        "four_vs_one_column": four_s / mean_column,
        "eval_questions": len(asked), "eval_s": eval_s, "loop_eval_s": sum(base_many_s),
        "eval_speedup": sum(base_many_s) / eval_s, "eval_same_answers": same, "eval_answers": len(many),
    }


def compare_table(c: dict) -> str:
    out = ["| column | prompt tokens | answer tokens | first token s | done s (batched) | alone s (loop) | "
           "same answer |", "|---|---|---|---|---|---|---|"]
    for r in c["columns"]:
        out.append(f"| {r['column']} | {r['prompt_tokens']} | {r['answer_tokens']} | {r['first_token_s']:.2f} | "
                   f"{r['studio_s']:.2f} | {r['loop_s']:.2f} | {'yes' if r['same_answer'] else 'no'} |")
    out.append(f"\nFour columns in one batch: {c['four_columns_s']:.2f} s; one column alone in the loop: "
               f"{c['loop_one_column_mean_s']:.2f} s on average ({c['loop_one_column_max_s']:.2f} s the longest), "
               f"four in the loop {c['loop_four_columns_s']:.2f} s. Four columns = "
               f"{c['four_vs_one_column']:.2f}x one column (goal: at most 1.5x).")
    out.append(f"Evaluation, {c['eval_questions']} questions x {len(c['columns'])} columns: {c['eval_s']:.1f} s "
               f"batched against {c['loop_eval_s']:.1f} s in the loop, {c['eval_speedup']:.2f}x faster (goal: 2.5x); "
               f"{c['eval_same_answers']} of {c['eval_answers']} answers word for word the loop's.")
    out.append(f"Generation: {c['precision']}; {c['kernels']}.")
    return "\n".join(out)


def app_start_bench(model: str) -> float:
    """Seconds from starting `studio` to the page answering."""
    with running_app({"STUDIO_MODEL": model}, timeout_s=300) as app:
        return app.start_s


def tick_bench(steps: int = 10_000, ticks: int = 20) -> dict:
    """Milliseconds one tick of an open Train tab takes (its status line and plots) on a run of `steps` logged
    steps that is still training, and a tick right after one more step was logged."""
    import json as _json


    home = Path(tempfile.mkdtemp(prefix="bench-tick-"))
    os.environ["STUDIO_RUNS"] = str(home / "runs")

    run = create_run(RunConfig(), home / "runs")
    t = time.time()
    lines = [{"event": "launched", "time": t}, {"event": "started", "time": t, "pid": os.getpid(), "total_steps": steps}]
    for i in range(1, steps + 1):
        lines.append({"event": "logged", "time": t + i, "step": i, "total_steps": steps, "loss": 2.0 - i * 1e-4,
                      "learning_rate": 1e-3, "epoch": i / 100, "tokens": i * 250, "tokens_per_s": 120.0,
                      "elapsed_s": float(i), "eta_s": float(steps - i), "memory_mb": 2400.0})
        if i % 20 == 0:
            lines.append({"event": "evaluated", "time": t + i, "step": i, "total_steps": steps, "eval_loss": 1.9})
    (run.dir / "events.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in lines))
    (run.dir / "pid").write_text(str(os.getpid()))  # a live process: the run reads as running
    first = time.perf_counter()
    run_view(run.id)
    first = time.perf_counter() - first
    t0 = time.perf_counter()
    for _ in range(ticks):
        run_view(run.id)
    per = (time.perf_counter() - t0) / ticks
    with open(run.dir / "events.jsonl", "a") as fh:
        fh.write(_json.dumps({"event": "logged", "time": t, "step": steps + 1, "total_steps": steps + 1,
                              "loss": 1.0, "elapsed_s": float(steps + 1)}) + "\n")
    t0 = time.perf_counter()
    run_view(run.id)
    after = time.perf_counter() - t0
    return {"lines": len(lines), "mb": round((run.dir / "events.jsonl").stat().st_size / 1e6, 1),
            "first_tick_ms": round(first * 1000, 1), "tick_ms": round(per * 1000, 1),
            "tick_after_new_line_ms": round(after * 1000, 1)}


# ---- the command --------------------------------------------------------------------------------------

def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    out = ["| method | variant | precision | tokens/s | x baseline | peak MB | final loss | final loss gap "
           "| max step loss gap | MFU | peak GFLOP/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['variant']} | {r['precision']} | {_fmt(r['tokens_per_s'], '.1f')} | "
                   f"{_fmt(r['speedup'], '.2f')} | {_fmt(r['peak_mb'], '.0f')} | {_fmt(r['final_loss'], '.3f')} | "
                   f"{_fmt(r.get('final_loss_gap') and 100 * r['final_loss_gap'], '.1f')}% | "
                   f"{_fmt(r['max_loss_gap'] and 100 * r['max_loss_gap'], '.1f')}% | "
                   f"{_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}% | {r['peak_gflops']} |")
    return "\n".join(out)


def curves(rows: list[dict]) -> str:
    """The loss at each logged step, the variants side by side (the packed rows hold other examples)."""
    longest = max((len(r["losses"]) for r in rows), default=0)
    out = ["| step | " + " | ".join(f"{r['method']} {r['variant']}" for r in rows) + " |",
           "|---|" + "---|" * len(rows)]
    for i in range(longest):
        out.append(f"| {i + 1} | " + " | ".join(_fmt(r["losses"][i] if i < len(r["losses"]) else None, ".4f")
                                               for r in rows) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="studio bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.environ.get("STUDIO_MODEL", DEFAULT_MODEL))
    p.add_argument("--methods", default="lora")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--data", default=None, help="train on this file instead of the bundled sample")
    p.add_argument("--train-on", choices=("all", "assistant"), default="all",
                   help="the loss on every token (default), or on the answers only")
    p.add_argument("--repeats", type=int, default=2, help="runs of each variant, in turn; the fastest counts")
    p.add_argument("--variants", default="", help="comma list of the variants to run beside the baseline "
                                                  "(studio, trl's step, packed, bf16; default: all)")
    p.add_argument("--skip", default="", help="comma list of parts to leave out: train, compare, app, tick")
    p.add_argument("--run", default=None, help="the finished run Compare is measured on (default: the one trained here)")
    p.add_argument("--questions", type=int, default=20, help="sample questions of the Compare evaluation part")
    p.add_argument("--json", default=None)
    p.add_argument("--baseline", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.baseline:
        print(json.dumps(baseline(*json.loads(a.baseline))))
        return 0
    import torch

    machine = (torch.cuda.get_device_name() if torch.cuda.is_available() else
               f"{cpu_model()} ({', '.join(cpu_features()) or 'no AVX-512'}), {torch.get_num_threads()} threads")
    result = {"machine": machine, "model": a.model, "steps": a.steps, "batch": a.batch,
              "max_length": a.max_length, "data": a.data, "train_on": a.train_on, "train": []}
    run = None
    skip = set(a.skip.split(","))
    only = tuple(v.strip() for v in a.variants.split(",") if v.strip()) or None
    names = [name for name, _ in VARIANTS]
    unknown = set(only or ()) - set(names)
    if unknown:
        raise ConfigError(f"--variants: {', '.join(sorted(unknown))} is not one of {', '.join(names)}.")
    if "train" not in skip:
        for method in a.methods.split(","):
            rows, method_run = train_bench(a.model, method.strip(), a.steps, a.batch, a.max_length,
                                           repeats=a.repeats, data=a.data, train_on=a.train_on, only=only)
            result["train"] += rows
            run = run or method_run
        print(f"Training, {a.model} on {machine}: {a.data or 'the bundled sample'}, loss on "
              f"{'every token' if a.train_on == 'all' else 'the answers'}, {a.steps} steps, batch {a.batch}, "
              f"max length {a.max_length}")
        print(table(result["train"]))
        print("\nLoss at each step:\n" + curves(result["train"]))
        for row in result["train"]:
            for note in row.get("notes", []):
                print(f"note: {note}.")
    if a.run:

        run = Run(runs_root() / a.run)
    if "compare" not in skip and run is not None:
        result["compare"] = compare_bench(run, a.questions)
        print(f"\nCompare, run {run.id} ({run.config.method} on {run.config.model}) on {machine}, against a plain "
              "sequential transformers + peft loop (fp32, the same prompts, greedy, the same maximum tokens):")
        print(compare_table(result["compare"]))
    if "app" not in skip:
        result["app_start_s"] = app_start_bench(a.model)
        print(f"\nApp: {result['app_start_s']:.1f} s from `studio` to a page that answers.")
    if "tick" not in skip:
        result["tick"] = t = tick_bench()
        print(f"\nTrain tab tick on a run of 10,000 steps ({t['lines']:,} event lines, {t['mb']} MB): first "
              f"{t['first_tick_ms']:.0f} ms, then {t['tick_ms']:.1f} ms a tick, {t['tick_after_new_line_ms']:.1f} ms "
              "after one new step.")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
