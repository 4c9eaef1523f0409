"""Preference accuracy: how often a model gives the chosen answer a higher log-likelihood than the
rejected one (summed over the answer's tokens), before (adapter off) and after fine-tuning.

    python -m engine.infer.preference RUN_ID PAIRS.jsonl     # preference accuracy before and after
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.data.dataset import load_examples
from engine.data.pairs import PreferenceError, text_messages
from engine.models import load_causal_lm, load_tokenizer
from engine.train.runs import Run, runs_root


def answer_logps(model, tokenizer, prompt: list[dict], answer: str) -> float:
    """log p(answer | prompt) under the chat template, summed over the answer's tokens (its end token too)."""
    import torch

    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=True,
                                         return_dict=True)["input_ids"]
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                         return_dict=True)["input_ids"]
    if list(full[:len(head)]) != list(head):  # a template that renders the prompt differently with an answer
        head = head[:max(i for i in range(len(head) + 1) if list(full[:i]) == list(head[:i]))]
    ids = torch.tensor([list(full)], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logps[len(head) - 1:].sum())


@dataclass
class PreferenceAccuracy:
    pairs: int
    before: float | None  # adapter off (or the base model, after a full fine-tune)
    after: float

    def sentence(self) -> str:
        before = f"{self.before:.0%} before (adapter off), " if self.before is not None else ""
        return (f"Preference accuracy on {self.pairs} held-out pairs: {before}{self.after:.0%} after: how often "
                "the model gives the chosen answer a higher likelihood than the rejected one.")

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "before": self.before, "after": self.after}


def preference_accuracy(run, examples, max_pairs: int = 200) -> PreferenceAccuracy:
    """Before and after for a run's adapter (one copy of the weights) or full model, on pair examples."""
    import torch  # deferred: torch is heavy, and the CLI imports this module at start

    pairs = [ex for ex in examples if ex.kind == "pairs"][:max_pairs]
    if not pairs:
        raise PreferenceError("no preference pairs to score; give a file of prompt / chosen / rejected pairs.")
    base_name = run.base_model
    tokenizer = load_tokenizer(base_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def score(model) -> float:
        wins = 0
        for ex in pairs:
            prompt = text_messages(ex.prompt)
            wins += answer_logps(model, tokenizer, prompt, ex.messages[-1]["content"]) > \
                answer_logps(model, tokenizer, prompt, ex.rejected)
        return wins / len(pairs)

    if run.model_dir is not None:
        after = score(load_causal_lm(str(run.model_dir), dtype=torch.float32).to(device).eval())
        before = score(load_causal_lm(base_name, dtype=torch.float32).to(device).eval())
        return PreferenceAccuracy(len(pairs), before, after)
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_causal_lm(base_name, dtype=torch.float32), str(run.adapter)).to(device)
    model.eval()
    after = score(model)
    with model.disable_adapter():
        before = score(model)
    return PreferenceAccuracy(len(pairs), before, after)


def add_to_evaluation(result: dict, run, pairs) -> PreferenceAccuracy:
    """Score `pairs` (a file) for `run` and put it in a batch evaluation's result under "preference"."""
    accuracy = preference_accuracy(run, load_examples(pairs))
    result["preference"] = {**accuracy.as_dict(), "file": Path(pairs).name}
    return accuracy


def append_summary_rows(path, result: dict) -> None:
    """The preference accuracy as rows of the evaluation's summary CSV (kind, column, versus, metric, value,
    low, high, questions, verdict): one for the base (adapter off), one for the fine-tuned model."""
    pref = result.get("preference")
    if not pref:
        return
    with open(path, "a", newline="", encoding="utf-8") as fh:
        for column, value in (("base", pref["before"]), ("fine-tuned", pref["after"])):
            csv.writer(fh).writerow(["preference", column, "", "preference accuracy", value, "", "", pref["pairs"],
                                     f"on {pref['file']}"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(preference_accuracy(Run(runs_root() / sys.argv[1]), load_examples(sys.argv[2])).sentence())
