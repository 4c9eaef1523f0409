"""The README's preference table: each objective trained over LoRA on the bundled Zorvane pairs, as the
studio trains (a run process per objective), then scored on the held-back pairs.

    python -m studio.preference_bench [--model M] [--steps 40] [--objectives dpo,orpo,kto,simpo] [--sft-then-dpo]

For each run: preference accuracy on assets/sample/preference-eval.jsonl before (adapter off) and after,
training tokens per second, peak memory of the training process, and wall time. `--sft-then-dpo` adds
an SFT run on the sample's chat examples and a DPO run started from it (init_from).
"""

from __future__ import annotations

import argparse

from engine.train.config import ASSETS, SAMPLE_TRAIN, RunConfig
from engine.data.dataset import load_examples
from engine.train.methods import suggested_learning_rate
from engine.models import DEFAULT_MODEL
from engine.infer.preference import preference_accuracy
from engine.train.preflight import create_run
from engine.train.runs import launch

PAIRS = ASSETS / "sample" / "preference.jsonl"
HELD_BACK = ASSETS / "sample" / "preference-eval.jsonl"


def _train(cfg: RunConfig):
    run = create_run(cfg)
    launch(run)
    status = run.wait()
    if status != "finished":
        raise SystemExit(f"run {run.id} ({cfg.objective}) ended {status}: {run.summary()['reason']}")
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.preference_bench")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--lr", type=float, default=suggested_learning_rate("lora", "dpo"))
    p.add_argument("--objectives", default="dpo,orpo,kto,simpo")
    p.add_argument("--sft-then-dpo", action="store_true")
    a = p.parse_args(argv)
    held = load_examples(HELD_BACK)
    common = dict(model=a.model, max_steps=a.steps, learning_rate=a.lr, batch_size=4, max_length=256,
                  max_prompt_length=128, save_steps=1000, seed=42)
    plans = [(o, dict(data=[str(PAIRS)], objective=o, kto_from_pairs=o == "kto")) for o in a.objectives.split(",")]
    rows = []
    sft = None
    if a.sft_then_dpo:
        sft = _train(RunConfig(**{**common, "learning_rate": suggested_learning_rate("lora")}, data=[str(SAMPLE_TRAIN)]))
        plans.append(("sft, then dpo", dict(data=[str(PAIRS)], objective="dpo", init_from=sft.id)))
    for name, extra in plans:
        run = _train(RunConfig(**common, **extra))
        acc = preference_accuracy(run, held)
        last = run.logged()[-1]
        peak = run.state().ended.peak_memory_mb
        rows.append((name, acc, last.tokens_per_s, peak, last.elapsed_s, last.rewards_accuracy, run.id))
        print(f"{name}: {acc.sentence()} ({run.id})", flush=True)
    print(f"\n{a.model}, LoRA r16, {a.steps} steps of 4 pairs, lr {a.lr}, {len(held)} held-back pairs")
    print("| objective | preference accuracy, held-back pairs: before -> after | train reward accuracy (last step) "
          "| tokens/s | peak memory MB | time s |")
    print("|---|---|---|---|---|---|")
    for name, acc, tps, peak, seconds, reward_acc, _ in rows:
        reward = f"{reward_acc:.2f}" if reward_acc is not None else "-"
        print(f"| {name} | {acc.before:.0%} -> {acc.after:.0%} | {reward} | {tps or 0:.0f} | {peak:.0f} | "
              f"{seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
