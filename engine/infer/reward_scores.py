"""The reward of a GRPO run on held-out prompts: the base (adapter off) and the fine-tuned model each answer every
prompt once (greedy, up to the run's max_completion_length), the run's own reward functions score the answers,
and each mean comes with its 95% bootstrap interval over the prompts, the change with a paired one.

    python -m engine.infer.reward_scores RUN_ID PROMPTS.jsonl     # e.g. assets/sample/grpo-eval.jsonl
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from engine.data.dataset import load_examples
from engine.data.pairs import text_messages
from engine.data.prompts import reference_of
from engine.errors import StudioError
from engine.infer.benchmarks import bootstrap, paired_change
from engine.models import load_causal_lm, load_tokenizer
from engine.train.rewards import rewards_from
from engine.train.runs import Run, runs_root

BATCH = 8


class RewardScoreError(StudioError, ValueError):
    """A run or prompt file that cannot be scored, in one sentence."""


@dataclass
class RewardReport:
    run_id: str
    prompts: int
    columns: dict[str, dict] = field(default_factory=dict)  # base / fine-tuned -> {total, low, high, functions}
    change: tuple[float, float, float, float] | None = None  # before, after, low, high of the paired difference
    answers: dict[str, list[str]] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One row per model: the total reward with its interval, then each function's mean."""
        return [{"model": name, "total reward": round(c["total"], 3),
                 "95% interval": f"[{c['low']:.3f}, {c['high']:.3f}]",
                 **{fn: round(v, 3) for fn, v in c["functions"].items()}} for name, c in self.columns.items()]

    def sentence(self) -> str:
        before, after, low, high = self.change
        sure = "a gain" if low > 0 else "a loss" if high < 0 else "no change we can be sure of"
        return (f"Total reward on {self.prompts} held-out prompts: {before:.3f} before (adapter off), {after:.3f} "
                f"after; the change {after - before:+.3f} has a 95% paired interval of [{low:+.3f}, {high:+.3f}]: "
                f"{sure}.")


def _answers(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    import torch  # deferred: torch is heavy, and the CLI imports this module at start

    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = []
    for i in range(0, len(prompts), BATCH):
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + BATCH]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            ids = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def reward_scores(run: Run, examples, max_prompts: int = 200) -> RewardReport:
    """Base and fine-tuned answers to the prompts of `examples`, scored by the run's rewards."""
    import torch

    if run.config.objective != "grpo":
        raise RewardScoreError(f"run {run.id} was trained with objective {run.config.objective}; rewards score "
                               "a grpo run.")
    if run.weights is None:
        raise RewardScoreError(f"{run.no_weights()}; train it to the end first.")
    items = [ex for ex in examples if ex.kind in ("prompts", "sft")][:max_prompts]
    if not items:
        raise RewardScoreError("no prompts to score; give a file of prompts (with answers where a reward checks "
                               "one).")
    references = [reference_of(ex) for ex in items]
    rewards = rewards_from(run.config.rewards, references=all(r for r in references))
    prompts = [text_messages(ex.prompt) for ex in items]
    tokenizer = load_tokenizer(str(run.weights) if run.model_dir is not None else run.base_model)
    budget = run.config.max_completion_length
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if run.model_dir is not None:  # a full fine-tune: two models
        after = _answers(load_causal_lm(str(run.model_dir), dtype=torch.float32).to(device).eval(), tokenizer,
                         prompts, budget)
        before = _answers(load_causal_lm(run.base_model, dtype=torch.float32).to(device).eval(), tokenizer,
                          prompts, budget)
    else:
        from peft import PeftModel  # deferred: peft imports torch

        model = PeftModel.from_pretrained(load_causal_lm(run.base_model, dtype=torch.float32),
                                          str(run.adapter)).to(device).eval()
        after = _answers(model, tokenizer, prompts, budget)
        with model.disable_adapter():
            before = _answers(model, tokenizer, prompts, budget)
    report = RewardReport(run.id, len(items), answers={"base": before, "fine-tuned": after})
    totals = {}
    for name, answers in (("base (adapter off)", before), (f"fine-tuned ({run.id})", after)):
        per = {r.name: r(None, answers, answer=references) for r in rewards}  # each function once (a judge asks)
        sums = [sum(r.weight * (per[r.name][i] or 0.0) for r in rewards) for i in range(len(answers))]
        low, high = bootstrap(sums)
        functions = {}
        for function, values in per.items():
            scored = [v for v in values if v is not None]
            functions[function] = sum(scored) / len(scored) if scored else float("nan")
        report.columns[name] = {"total": sum(sums) / len(sums), "low": low, "high": high, "functions": functions}
        totals[name] = dict(enumerate(sums))
    before_totals, after_totals = totals.values()
    report.change = paired_change(before_totals, after_totals)
    return report


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    result = reward_scores(Run(runs_root() / sys.argv[1]), load_examples(sys.argv[2], objective="grpo"))
    for row in result.rows():
        print(row)
    print(result.sentence())
