"""The reward of a GRPO run on held-out prompts: the base (adapter off) and the fine-tuned model each answer every
prompt once (greedy, up to the run's max_completion_length, by the executor: engine/infer/chat.py, on one copy of
the weights with the adapter off and on), the run's own reward functions score the answers,
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
from engine.infer.batching import Request
from engine.infer.chat import run_answerers
from engine.train.rewards import rewards_from
from engine.train.runs import Run, runs_root


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


def _answers(answerer, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers of one side (the executor batches them; no repetition penalty, as in training)."""
    requests = [Request(p, answerer.use_adapter, max_new_tokens, repetition_penalty=1.0) for p in prompts]
    return [g.text for g in answerer.chat.generate_many(requests)]


def reward_scores(run: Run, examples, max_prompts: int = 200) -> RewardReport:
    """Base and fine-tuned answers to the prompts of `examples`, scored by the run's rewards."""
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
    budget = run.config.max_completion_length
    base, tuned = run_answerers(run)  # one copy of the weights, adapter off and on (a full fine-tune: two models)
    after, before = _answers(tuned, prompts, budget), _answers(base, prompts, budget)
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
