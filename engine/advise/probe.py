"""The probe: a few real training steps of each candidate method on the person's model and data.

    python -m engine.advise.probe [--model M] [--data FILE] [--methods lora,qlora,dora,ia3,full] [--steps 8]
    python -m engine.advise.probe --data assets/sample/preference.jsonl --methods lora+dpo,lora+orpo,lora+kto,lora+simpo

Each method runs as an ordinary run (the same process, events and queue as any training)
in `runs/probes/`, for a few steps, and the probe reads back what the run measured:
tokens per second, peak memory of the training process (resident memory on CPU, allocated
GPU memory on a GPU), trained parameters and the change of the loss. The numbers fill the
Method tab's matrix so the choice rests on this machine, not on a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from engine import owners
from engine.advise.estimate import GB, estimate_memory, flops_per_token
from engine.capability import auto_precision, capability
from engine.models import DEFAULT_MODEL, load_tokenizer, shape_of
from engine.train.config import ConfigError, RunConfig, SAMPLE_TRAIN
from engine.train.methods import suggested_learning_rate
from engine.train.preflight import create_run, refusal
from engine.train.runs import launch, runs_root, stop

CANDIDATES = ("lora", "qlora", "dora", "ia3", "full")


def probe_root() -> Path:
    path = runs_root() / "probes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def measure(run) -> dict:
    """What a finished (or failed) run measured, from its events."""
    st = run.state()
    started, ended = st.first_started, st.ended
    losses = [e.loss for e in st.losses()]
    speeds = [e.tokens_per_s for e in st.logged if e.tokens_per_s]
    trainable, params = (started.trainable_params, started.params) if started else (None, None)
    peak = getattr(ended, "peak_memory_mb", None)
    precision = started.precision if started else None
    return {
        "method": run.config.method + (f"+{run.config.objective}" if run.config.objective != "sft" else ""),
        "status": run.status(), "reason": ended.reason if ended else None,
        "tokens_per_s": speeds[-1] if speeds else None,
        "peak_memory_gb": round(peak / 1024, 3) if peak else None,
        "trainable_params": trainable, "params": params,
        "trainable_share": round(trainable / params, 5) if trainable and params else None,
        "loss_start": losses[0] if losses else None, "loss_end": losses[-1] if losses else None,
        "loss_change": round(losses[-1] - losses[0], 4) if len(losses) > 1 else None,
        "precision": precision,
        "utilisation": _utilisation(run.config, speeds[-1] if speeds else None, params, trainable, precision),
        "run_id": run.id,
    }


def _utilisation(cfg, tokens_per_s, params, trainable, precision) -> float | None:
    """Achieved FLOP/s over the matrix-product peak measured here (engine/capability.py), as `studio bench` does."""
    if not tokens_per_s or not params or precision not in ("fp32", "bf16", "fp16"):
        return None

    peak = capability(cfg.model).peak(precision)
    frozen = params if cfg.method in ("full", "freeze") else params - (trainable or 0)
    return round(tokens_per_s * flops_per_token(frozen, cfg.method, cfg.objective) / (peak * 1e9), 3) if peak else None


# lora+grpo in a probe: the data's answers are the references; answers in tags, checked against them
GRPO_PROBE = {"rewards": [{"kind": "format", "preset": "answer_tags", "weight": 0.5}, {"kind": "exact"}],
              "max_completion_length": 32}


def probe(model: str = DEFAULT_MODEL, data: str = str(SAMPLE_TRAIN), methods=CANDIDATES, steps: int = 8,
          batch_size: int = 2, max_length: int = 256, progress: Callable[[float, str], None] | None = None,
          timeout_s: float = 900, owner: str = owners.LOCAL, **fields) -> list[dict]:
    """Run `steps` steps of each method, one after another; a refused method gets its sentence. A method
    written `lora+dpo` trains with that preference objective (the data must then be pairs). The runs are
    `owner`'s: they take the training slot in that person's turn (engine/train/runs.py `queue_order`)."""
    rows = []
    for i, entry in enumerate(methods):
        method, _, objective = entry.partition("+")
        extra = dict(GRPO_PROBE) if objective == "grpo" else {}
        if progress:
            progress(i / len(methods), f"probing {entry} ({i + 1}/{len(methods)})")
        try:
            cfg = RunConfig(model=model, data=data, method=method, max_steps=steps, batch_size=batch_size,
                            max_length=max_length, learning_rate=suggested_learning_rate(method, objective or "sft"),
                            save_steps=10**6, warmup_ratio=0.0, report_to="none", objective=objective or "sft",
                            max_prompt_length=min(128, max_length // 2), kto_from_pairs=objective == "kto",
                            **{**extra, "num_generations": batch_size, **fields} if extra else fields)
        except ConfigError as err:
            rows.append({"method": entry, "status": "refused", "reason": str(err)})
            continue
        refused = refusal(cfg)
        if refused:
            rows.append({"method": entry, "status": "refused", "reason": refused})
            continue
        try:
            run = create_run(cfg, probe_root(), owner=owner)
        except ConfigError as err:  # data of the wrong shape for the objective
            rows.append({"method": entry, "status": "refused", "reason": str(err)})
            continue
        launch(run, lock=runs_root() / ".training.lock")  # waits for a training in progress, like any run
        deadline = time.time() + timeout_s
        while run.status() in ("running", "queued"):
            if time.time() > deadline:
                stop(run)
                break
            time.sleep(0.5)
        rows.append(measure(run))
    if progress:
        progress(1.0, "probe done")
    return rows


def fixed_length_text(path: Path, tokenizer, tokens: int, examples: int = 16) -> Path:
    """A text file of `examples` paragraphs each longer than `tokens`, so every sequence is exactly
    `tokens` long after truncation (the estimate and the measurement then see the same shapes)."""
    words = (SAMPLE_TRAIN.parent / "docs").glob("*.md")
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(words)).split()
    paragraphs, start = [], 0
    while len(paragraphs) < examples:
        piece = []
        while len(tokenizer(" ".join(piece))["input_ids"]) <= tokens + 8:
            piece.extend(text[start % len(text): start % len(text) + 64])
            start += 64
        paragraphs.append(" ".join(piece))
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return path


def check_estimates(model: str = DEFAULT_MODEL, methods=("lora", "dora", "ia3", "qlora", "full"),
                    batch_size: int = 2, seq_len: int = 128, steps: int = 3,
                    progress: Callable[[float, str], None] | None = None) -> list[dict]:
    """The memory estimate against the measured peak of real runs, per method, with the error.

    On a GPU the peak is the allocated GPU memory; without one, the process's resident memory; in the precision
    `auto` trains in here.
    """
    import tempfile

    import torch

    on_gpu = torch.cuda.is_available()
    device = "gpu" if on_gpu else "cpu"

    precision = auto_precision(model)[0]
    shape = shape_of(model)
    data = fixed_length_text(Path(tempfile.mkdtemp(prefix="studio-check-")) / "text.txt",
                             load_tokenizer(model), seq_len)
    rows = []
    for r in probe(model, str(data), methods, steps, batch_size, seq_len, progress=progress, train_on="all"):
        if r["status"] == "refused" or not r.get("peak_memory_gb"):
            rows.append({**r, "estimate_gb": None, "error": None})
            continue
        e = estimate_memory(shape, r["method"], precision, batch_size=batch_size, seq_len=seq_len, device=device)
        est = e.total / GB
        rows.append({**r, "estimate_gb": round(est, 3), "estimated_trainable": e.trainable,
                     "error": round((est - r["peak_memory_gb"]) / r["peak_memory_gb"], 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.advise.probe", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", default=str(SAMPLE_TRAIN))
    p.add_argument("--methods", default=",".join(CANDIDATES))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--max-length", type=int, default=256)
    a = p.parse_args(argv)
    rows = probe(a.model, a.data, [m.strip() for m in a.methods.split(",")], a.steps, a.batch_size, a.max_length,
                 progress=lambda f, t: print(f"[{f:4.0%}] {t}", flush=True))

    print(auto_precision(a.model)[1])
    print(f"{'method':<14}{'precision':>10}{'tokens/s':>10}{'MFU':>7}{'peak GiB':>10}{'trained':>14}{'share':>9}"
          f"{'loss change':>13}")
    for r in rows:
        if r["status"] == "refused":
            print(f"{r['method']:<14}refused: {r['reason']}")
            continue
        share = f"{r['trainable_share']:.2%}" if r.get("trainable_share") else "-"
        mfu = f"{r['utilisation']:.0%}" if r.get("utilisation") else "-"
        print(f"{r['method']:<14}{r['precision'] or '-':>10}{r['tokens_per_s'] or 0:>10.0f}{mfu:>7}"
              f"{r['peak_memory_gb'] or 0:>10.2f}"
              f"{r['trainable_params'] or 0:>14,}{share:>9}{r['loss_change'] if r['loss_change'] is not None else '-':>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
