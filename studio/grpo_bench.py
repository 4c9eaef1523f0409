"""The README's GRPO figures: the bundled sample config trained as the studio trains it, its reward from the
first 5 logged steps to the last 5, the step's split between generating and training, the reward on the
held-back prompts before and after; and how fast the studio's own batched generation samples a GRPO batch
against transformers' `generate`, which trl's GRPOTrainer calls.

    python -m studio.grpo_bench [--config assets/configs/grpo-sample.yaml] [--steps N] [--generation-only]
                                [--both-samplers]

--both-samplers trains the config twice, its rollouts sampled by the executor (engine/infer/rollouts.py) and by
transformers' generate (STUDIO_GRPO_EXECUTOR=0), one after the other, and prints the time of a step in each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from engine.data.dataset import load_examples
from engine.data.pairs import text_messages
from engine.infer.batching import Request
from engine.infer.chat import ChatModel
from engine.infer.reward_scores import reward_scores
from engine.models import load_causal_lm, load_tokenizer
from engine.train.config import ASSETS, SAMPLE_PROMPTS_EVAL, RunConfig
from engine.train.preflight import create_run
from engine.train.runs import launch

CONFIG = ASSETS / "configs" / "grpo-sample.yaml"


def generation_speed(cfg: RunConfig, rounds: int = 3) -> dict:
    """Completion tokens per second sampling one prompt's num_generations answers: transformers' generate (what
    trl calls) against the studio's executor (engine/infer/chat.py), the same prompts, model and budget."""
    import torch  # deferred: torch is heavy

    prompts = [text_messages(ex.prompt) for ex in load_examples(cfg.data_files(), objective="grpo")[:rounds]]
    n, budget = cfg.num_generations, cfg.max_completion_length
    tokenizer, model = load_tokenizer(cfg.model), load_causal_lm(cfg.model, dtype=torch.float32).eval()
    hf_tokens, hf_s = 0, 0.0
    for p in prompts:
        ids = tokenizer.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**ids, do_sample=True, temperature=cfg.temperature, max_new_tokens=budget,
                                 num_return_sequences=n, pad_token_id=tokenizer.eos_token_id)
        hf_s += time.perf_counter() - start
        new = out[:, ids["input_ids"].shape[1]:]
        hf_tokens += int((new != tokenizer.eos_token_id).sum())
    del model
    chat = ChatModel(cfg.model, precision="fp32")
    own_tokens, own_s = 0, 0.0
    for p in prompts:
        start = time.perf_counter()
        answers = chat.generate_many([Request(p, temperature=cfg.temperature, max_new_tokens=budget,
                                              repetition_penalty=1.0) for _ in range(n)])
        own_s += time.perf_counter() - start
        own_tokens += sum(len(a.token_ids or []) for a in answers)
    return {"transformers_tokens_per_s": hf_tokens / hf_s, "studio_tokens_per_s": own_tokens / own_s}


def train_once(cfg: RunConfig):
    """Train `cfg` as the studio does; print its reward from the first logged steps to the last and the share of a
    step spent generating. (run, seconds) or (None, 0) when it did not finish."""
    run = create_run(cfg)
    start = time.time()
    launch(run)
    status = run.wait()
    seconds = time.time() - start
    logged = [e for e in run.logged() if isinstance(e.reward, (int, float))]
    if status != "finished" or len(logged) < 10:
        print(f"run {run.id} ended {status} after {len(logged)} logged steps; see its train.log")
        return None, 0.0
    first, last = [e.reward for e in logged[:5]], [e.reward for e in logged[-5:]]
    share = statistics.mean(e.generate_share for e in logged if e.generate_share is not None)
    print(f"run {run.id} (completions sampled by {run.state().started.rollouts}): {logged[-1].step} steps in "
          f"{seconds / 60:.1f} min; mean total reward of the first 5 logged steps {statistics.mean(first):.3f} "
          f"(spread {statistics.stdev(first):.3f}), of the last 5 {statistics.mean(last):.3f} "
          f"(spread {statistics.stdev(last):.3f}); generation {share:.0%} of a step")
    for name in logged[0].reward_functions or {}:
        a_, b_ = ([e.reward_functions[name][0] for e in part] for part in (logged[:5], logged[-5:]))
        print(f"  {name}: {statistics.mean(a_):.3f} -> {statistics.mean(b_):.3f}")
    return run, seconds


def step_seconds(run) -> float:
    """Mean seconds of a step from the first logged step to the last (start-up and saving left out)."""
    logged = run.logged()
    return (logged[-1].time - logged[0].time) / (logged[-1].step - logged[0].step)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.grpo_bench")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--steps", type=int, default=0, help="override max_steps")
    p.add_argument("--generation-only", action="store_true", help="only the generation speed comparison")
    p.add_argument("--both-samplers", action="store_true",
                   help="train twice, sampled by the executor and by transformers' generate")
    a = p.parse_args(argv)
    cfg = RunConfig.from_yaml(a.config, {"max_steps": a.steps} if a.steps else None)
    speed = generation_speed(cfg)
    print(f"sampling {cfg.num_generations} answers of up to {cfg.max_completion_length} tokens: transformers' "
          f"generate {speed['transformers_tokens_per_s']:.1f} tokens/s, the studio's executor "
          f"{speed['studio_tokens_per_s']:.1f} tokens/s "
          f"({speed['studio_tokens_per_s'] / speed['transformers_tokens_per_s']:.2f}x)")
    if a.generation_only:
        return 0
    runs = []
    for executor in ((True, False) if a.both_samplers else (None,)):
        if executor is not None:
            os.environ["STUDIO_GRPO_EXECUTOR"] = "1" if executor else "0"
        run, seconds = train_once(cfg)
        if run is None:
            return 1
        runs.append((run, seconds))
    if a.both_samplers:
        per = [step_seconds(r) for r, _ in runs]
        print(f"a step (first logged step to last): {per[0]:.2f} s with the executor sampling, {per[1]:.2f} s "
              f"with transformers' generate: {per[1] / per[0]:.2f}x")
    run = runs[0][0]
    scored = reward_scores(run, load_examples(SAMPLE_PROMPTS_EVAL, objective="grpo"))
    for row in scored.rows():
        print("  " + "  ".join(f"{k}: {v}" for k, v in row.items()))
    print(scored.sentence())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
