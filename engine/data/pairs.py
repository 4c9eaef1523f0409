"""Preference data: which shapes an objective takes, pairs in trl's conversational form, their token statistics.

Objectives (RunConfig.objective) and the data each takes:
    dpo, orpo, simpo   pairs: a prompt with a chosen and a rejected answer
    kto                unpaired answers labelled good / bad (or pairs, with kto_from_pairs)
The trainers for them are in engine/train/objectives.py; the preference accuracy of a run on held-out
pairs in engine/infer/preference.py.

    studio data check PAIRS.jsonl --objective dpo     # the Data tab's report of pairs, with these statistics
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.dataset import length_histogram
from engine.errors import StudioError

OBJECTIVES = ("dpo", "orpo", "kto", "simpo")  # preference objectives; grpo's data is engine/data/prompts.py
PAIRED = ("dpo", "orpo", "simpo")


class PreferenceError(StudioError, ValueError):
    """Data of the wrong shape for an objective, in one sentence."""


def data_refusal(objective: str, kinds: set[str], kto_from_pairs: bool = False) -> str | None:
    """Why these examples cannot train `objective` (None when they can)."""
    if not kinds:
        return None
    if objective == "grpo":
        if kinds - {"prompts", "sft"}:
            return ("objective grpo: needs prompts (with a reference answer where a reward checks one), and this "
                    "data holds preference data; train it with dpo, orpo, simpo or kto")
        return None
    if "prompts" in kinds:
        return (f"objective {objective}: this data holds prompts without answers, which only objective grpo "
                "trains on (the model writes the answers and reward functions score them)")
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

def text_messages(messages: list[dict]) -> list[dict]:
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
        prompt = text_messages(ex.prompt)
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
        p = count(text_messages(ex.prompt), True)
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


