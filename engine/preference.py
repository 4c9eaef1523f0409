"""Preference tuning: which data an objective takes, trl's trainer for it, token statistics of pairs,
and the preference accuracy of a model on held-out pairs.

Objectives (RunConfig.objective) and trl's trainers:
    dpo    DPOTrainer, loss_type sigmoid or ipo; the reference is the model with its adapter switched off
    orpo   ORPOTrainer (trl.experimental): SFT loss plus an odds-ratio penalty; no reference pass
    kto    KTOTrainer: unpaired answers labelled good / bad; reference as for DPO
    simpo  CPOTrainer (trl.experimental) with loss_type simpo and cpo_alpha 0: no reference pass
With an adapter (LoRA, QLoRA, DoRA...) trl keeps one copy of the base weights: the reference forward
runs with the adapter disabled. A full fine-tune gets a frozen copy as its reference (DPO, KTO).

`preference_accuracy` is how often a model gives the chosen answer a higher log-likelihood than the
rejected one (summed over the answer's tokens), before (adapter off) and after.

    python -m engine.preference RUN_ID PAIRS.jsonl     # preference accuracy before and after
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from engine.errors import StudioError

OBJECTIVES = ("dpo", "orpo", "kto", "simpo")
PAIRED = ("dpo", "orpo", "simpo")
# trl's logged metric names -> the event fields that carry them
METRICS = {"rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected",
           "rewards/margins": "rewards_margin", "rewards/accuracies": "rewards_accuracy",
           "log_odds_ratio": "log_odds_ratio"}


class PreferenceError(StudioError, ValueError):
    """Data of the wrong shape for an objective, in one sentence."""


def data_refusal(objective: str, kinds: set[str], kto_from_pairs: bool = False) -> str | None:
    """Why these examples cannot train `objective` (None when they can)."""
    if not kinds:
        return None
    if objective == "sft" and kinds - {"sft"}:
        return ("objective sft: this is preference data (chosen / rejected answers, or labelled ones), which "
                "supervised fine-tuning cannot use; pick objective dpo, orpo or simpo for pairs, kto for labels")
    if objective in PAIRED and kinds != {"pairs"}:
        what = "unpaired good/bad labels" if "unpaired" in kinds else "supervised examples with one answer each"
        return (f"objective {objective}: needs preference pairs (a prompt with a chosen and a rejected answer), "
                f"and this data holds {what}" + ("; use objective kto for labels" if "unpaired" in kinds else
                                                 "; train it with objective sft, or bring pairs"))
    if objective == "kto":
        if kinds == {"pairs"} and not kto_from_pairs:
            return ("objective kto: takes unpaired answers labelled good or bad, and this data holds pairs; "
                    "use dpo, orpo or simpo for pairs, or set kto_from_pairs: true to use each chosen answer as "
                    "good and each rejected one as bad")
        if kinds - {"pairs", "unpaired"}:
            return ("objective kto: needs answers labelled good or bad (prompt, completion, label), and this "
                    "data holds supervised examples with one answer each")
    return None


def _text_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def fit_prompt(prompt: list[dict], tokenizer, limit: int) -> list[dict]:
    """The prompt within `limit` tokens under the chat template: the oldest turns go first (a system
    message stays), then the start of the one turn left."""
    msgs = [dict(m) for m in prompt]

    def size(m):
        return len(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])

    over = size(msgs) - limit
    while over > 0 and sum(m["role"] != "system" for m in msgs) > 1:
        first = next(i for i, m in enumerate(msgs) if m["role"] != "system")
        del msgs[first]
        over = size(msgs) - limit
    if over > 0:
        ids = tokenizer(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
        msgs[-1]["content"] = tokenizer.decode(ids[min(len(ids) - 1, over):])
    return msgs


def rows(examples, objective: str, tokenizer=None, max_prompt_length: int | None = None) -> list[dict]:
    """The examples in trl's conversational preference (or unpaired) form, prompts cut to max_prompt_length."""
    out = []
    for ex in examples:
        prompt = _text_messages(ex.prompt)
        if tokenizer is not None and max_prompt_length:
            prompt = fit_prompt(prompt, tokenizer, max_prompt_length)
        answer = [{"role": "assistant", "content": ex.messages[-1]["content"]}]
        if objective == "kto":
            if ex.kind == "pairs":  # kto_from_pairs: both answers, labelled
                out.append({"prompt": prompt, "completion": answer, "label": True})
                out.append({"prompt": prompt, "completion": [{"role": "assistant", "content": ex.rejected}],
                            "label": False})
            else:
                out.append({"prompt": prompt, "completion": answer, "label": bool(ex.label)})
        else:
            out.append({"prompt": prompt, "chosen": answer,
                        "rejected": [{"role": "assistant", "content": ex.rejected}]})
    return out


TRAINERS = {"dpo": ("trl", "DPOTrainer"), "kto": ("trl", "KTOTrainer"),
            "orpo": ("trl.experimental.orpo", "ORPOTrainer"), "simpo": ("trl.experimental.cpo", "CPOTrainer")}


def trainer_class(objective: str):
    import importlib

    module, name = TRAINERS[objective]
    return getattr(importlib.import_module(module), name)


def trainer_class_and_args(cfg, common: dict):
    """trl's trainer class and its config for cfg.objective, from the arguments every trainer shares."""
    beta = cfg.preference_beta()
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        # prompts are already within prompt_limit (fit_prompt): what max_length cuts is the answers' end
        return DPOTrainer, DPOConfig(**common, beta=beta, loss_type=[cfg.loss_type], max_length=cfg.max_length)
    if cfg.objective == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig(**common, beta=beta, max_length=cfg.max_length)
    completion = cfg.max_length - cfg.prompt_limit
    if cfg.objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig(**common, beta=beta, max_length=cfg.max_length,
                                       max_completion_length=completion)
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOTrainer, CPOConfig(**common, beta=beta, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=cfg.simpo_gamma,
                                 max_length=cfg.max_length, max_completion_length=completion)


def count_tokens(trainer) -> None:
    """ORPO's and CPO's batches hold prompt_/chosen_/rejected_ ids, not the input_ids transformers counts
    for tokens/s; count their unpadded tokens as each batch is made, into the same counter."""
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        seen = sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask") and hasattr(v, "sum"))
        trainer.state.num_input_tokens_seen += seen
        return batch

    trainer.data_collator = counting


# ---- token statistics ------------------------------------------------------------------------------

@dataclass
class PairStats:
    pairs: int
    prompt_mean: float
    chosen_mean: float
    rejected_mean: float
    longest: int
    prompts_cut: int  # prompts over max_prompt_length
    pairs_cut: int  # prompt + the longer answer over max_length
    tokens: int  # all tokens of one epoch (prompt read twice for a pair: with each answer)
    lengths: list[int]  # per example: prompt + its longer answer

    def histogram(self, bins: int = 20) -> list[tuple[int, int]]:
        from engine.data import length_histogram

        return length_histogram(self.lengths, bins)

    def lines(self, max_length: int, max_prompt_length: int) -> list[str]:
        return [f"{self.pairs} examples; mean tokens: prompt {self.prompt_mean:.0f}, chosen {self.chosen_mean:.0f}, "
                f"rejected {self.rejected_mean:.0f}; longest {self.longest}",
                f"{self.prompts_cut} prompts over max_prompt_length {max_prompt_length} (their start is cut); "
                f"{self.pairs_cut} over max_length {max_length} (their answers are cut)",
                f"about {self.tokens:,} tokens per epoch (each pair's prompt is read with both answers)"]


def pair_stats(examples, tokenizer, max_length: int, max_prompt_length: int) -> PairStats:
    def count(msgs, gen=False):
        return len(tokenizer.apply_chat_template(msgs, add_generation_prompt=gen, tokenize=True, return_dict=True)
                   ["input_ids"])

    prompts, chosen, rejected, total, lengths = [], [], [], 0, []
    cut_prompt = cut_pair = longest = 0
    for ex in examples:
        p = count(_text_messages(ex.prompt), True)
        c = len(tokenizer(ex.messages[-1]["content"], add_special_tokens=False)["input_ids"]) + 1
        r = len(tokenizer(ex.rejected, add_special_tokens=False)["input_ids"]) + 1 if ex.rejected is not None else 0
        prompts.append(p)
        chosen.append(c)
        if ex.rejected is not None:
            rejected.append(r)
        cut_prompt += p > max_prompt_length
        cut_pair += p + max(c, r) > max_length
        longest = max(longest, p + max(c, r))
        lengths.append(p + max(c, r))
        total += (2 * p + c + r) if ex.rejected is not None else p + c

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    return PairStats(len(examples), mean(prompts), mean(chosen), mean(rejected), longest, cut_prompt, cut_pair, total,
                     lengths)


# ---- preference accuracy ---------------------------------------------------------------------------

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
    import torch

    from engine.models import load_causal_lm, load_tokenizer

    pairs = [ex for ex in examples if ex.kind == "pairs"][:max_pairs]
    if not pairs:
        raise PreferenceError("no preference pairs to score; give a file of prompt / chosen / rejected pairs.")
    base_name = run.base_model
    tokenizer = load_tokenizer(base_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def score(model) -> float:
        wins = 0
        for ex in pairs:
            prompt = _text_messages(ex.prompt)
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
    from pathlib import Path

    from engine.data import load_examples

    accuracy = preference_accuracy(run, load_examples(pairs))
    result["preference"] = {**accuracy.as_dict(), "file": Path(pairs).name}
    return accuracy


def append_summary_rows(path, result: dict) -> None:
    """The preference accuracy as rows of the evaluation's summary CSV (kind, column, versus, metric, value,
    low, high, questions, verdict): one for the base (adapter off), one for the fine-tuned model."""
    import csv

    pref = result.get("preference")
    if not pref:
        return
    with open(path, "a", newline="", encoding="utf-8") as fh:
        for column, value in (("base", pref["before"]), ("fine-tuned", pref["after"])):
            csv.writer(fh).writerow(["preference", column, "", "preference accuracy", value, "", "", pref["pairs"],
                                     f"on {pref['file']}"])


if __name__ == "__main__":
    from engine.data import load_examples
    from engine.runs import Run, runs_root

    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(preference_accuracy(Run(runs_root() / sys.argv[1]), load_examples(sys.argv[2])).sentence())
