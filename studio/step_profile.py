"""Where a training step's time goes: a few steps of a studio run under torch's profiler, grouped by what
the operations do.

    python -m studio.step_profile [--data FILE] [--train-on all|assistant] [--precision fp32|bf16]
                                  [--fast-step on|off] [--batch 8] [--max-length 512] [--steps 4]

    python -m studio.step_profile --data ../shared/peer-data/alpaca_en_demo.json --train-on assistant \\
        --fast-step off        # trl's own step on instructions of varying lengths, the loss on the answers

The run is trained in this process (engine/train/trainer.py's `train`, the very step a run takes), with the
default model unless --model says otherwise. Self CPU time of every operation, summed over the steps
after the first (which warms up), in these groups: matrix products, attention, trl's chunked LM head
(its forward and backward, inclusive of their matrix products, which are then left out of the first
group), LoRA's dropout masks, softmax and cross-entropy, other element-wise work, and the rest.
Nothing else should run while it measures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from engine.models import DEFAULT_MODEL
from engine.train import trainer
from engine.train.config import SAMPLE_TRAIN, RunConfig
from engine.train.events import EventLog
from engine.train.preflight import create_run

GROUPS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmm_",
                         "mkldnn::_linear_pointwise")),
    ("attention", ("scaled_dot_product", "aten::_flash_attention", "aten::_efficient_attention")),
    ("dropout masks", ("aten::bernoulli", "aten::native_dropout", "aten::random_")),  # torch's, or the studio's draws
    ("softmax and cross-entropy", ("softmax", "nll_loss", "cross_entropy", "aten::argmax")),
    ("element-wise", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::exp", "aten::silu", "aten::pow",
                      "aten::rsqrt", "aten::mean", "aten::neg", "aten::cat", "aten::copy_", "aten::fill_",
                      "aten::where", "aten::masked", "aten::lt", "aten::eq", "aten::sum", "aten::amax",
                      "aten::maximum", "aten::clamp", "aten::bitwise", "aten::to", "aten::_to_copy", "aten::cos",
                      "aten::sin", "aten::tanh", "aten::sqrt", "aten::zero_", "aten::gather", "aten::index")),
)
CHUNKED_HEAD = "ChunkedLogProbFunction"  # trl's fused LM head, its forward and (with "Backward") its backward


def profile_step(cfg: RunConfig, steps_measured: int) -> dict[str, float]:
    """Seconds per step in each group, from the steps after the first."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    run = create_run(cfg, Path(tempfile.mkdtemp(prefix="step-profile-")))
    totals: dict[str, float] = {}
    with profile(activities=[ProfilerActivity.CPU],
                 schedule=schedule(wait=0, warmup=1, active=steps_measured, repeat=1)) as prof:
        trainer.train(cfg, run.dir, EventLog(run.dir / "events.jsonl"), trainer._StopRequest(),
                      callbacks=[_stepper(prof)])
    events = prof.events()
    head_inclusive = sum(e.cpu_time_total for e in events if e.name.startswith(CHUNKED_HEAD)) / 1e6
    inside_head = _inside(events, CHUNKED_HEAD)
    for e in events:
        if e.device_type != torch.autograd.DeviceType.CPU:
            continue
        if e.name.startswith(CHUNKED_HEAD) or e.id in inside_head:
            continue
        group = next((g for g, keys in GROUPS if any(k in e.name for k in keys)), "the rest")
        totals[group] = totals.get(group, 0.0) + e.self_cpu_time_total / 1e6
    if head_inclusive:
        totals["trl's chunked LM head (inclusive)"] = head_inclusive
    return {g: s / steps_measured for g, s in totals.items()}


def _inside(events, prefix: str) -> set[int]:
    """Ids of the events nested in an event whose name starts with `prefix`."""
    found: set[int] = set()
    for e in events:
        if e.name.startswith(prefix):
            stack = list(e.cpu_children)
            while stack:
                child = stack.pop()
                found.add(child.id)
                stack.extend(child.cpu_children)
    return found


def _stepper(prof):
    """A trainer callback that moves the profiler's schedule on at each step's end."""
    from transformers import TrainerCallback

    class Stepper(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            prof.step()

    return Stepper()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.step_profile", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", default=str(SAMPLE_TRAIN))
    p.add_argument("--train-on", choices=("all", "assistant"), default="all")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--fast-step", choices=("on", "off"), default="on")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--steps", type=int, default=4, help="steps measured, after one that warms up")
    a = p.parse_args(argv)
    cfg = RunConfig(model=a.model, data=a.data, train_on=a.train_on, precision=a.precision, force_precision=True,
                    fast_step=a.fast_step == "on", batch_size=a.batch, max_length=a.max_length,
                    max_steps=a.steps + 1, warmup_ratio=0.0, save_steps=10**6, report_to="none")
    per_step = profile_step(cfg, a.steps)
    total = sum(per_step.values())
    print(f"{a.precision}, {'the studio' if a.fast_step == 'on' else 'trl'}'s step, {Path(a.data).name}, loss on "
          f"{'every token' if a.train_on == 'all' else 'the answers'}, batch {a.batch}, max length {a.max_length}: "
          f"{total:.2f} s of operator time a step")
    for group, seconds in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<36}{seconds:>8.2f} s  {seconds / total:>6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
