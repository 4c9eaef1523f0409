"""Prompt data for objective grpo: the model writes the answers and reward functions score them.

What GRPO reads, from any shape the Data tab reads (engine/data/formats.py):
    prompts     {"prompt"} (a string, or chat messages ending with the user's turn), or {"messages"} whose last
                turn is the user's; an optional reference answer in "answer", "solution" or "ground_truth";
                tables by column mapping (prompt=COL[,answer=COL])
    sft         supervised examples: their prompt, with their answer as the reference (exact / numeric rewards
                then check the model's answer against it)
Each becomes trl's conversational row {"prompt": [messages], "answer": reference}, the prompt cut to the prompt
budget (`fit_prompt`, oldest turns first). `prompt_stats` gives the token statistics the Data tab and
`studio data check FILE --objective grpo` print; `missing_references` names the first line a reward that needs
references cannot score.

    studio data check assets/sample/grpo.jsonl --objective grpo --model MODEL
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.dataset import length_histogram
from engine.data.pairs import fit_prompt, text_messages


def reference_of(ex) -> str | None:
    """The answer a reward compares with: a prompt's reference, or a supervised example's own answer."""
    if ex.kind == "prompts":
        return ex.reference
    return ex.messages[-1]["content"] if ex.messages else None


def missing_references(examples) -> str | None:
    """Where the first example without a reference answer is (None when every one has one)."""
    return next((ex.where or "an example" for ex in examples if not (reference_of(ex) or "").strip()), None)


def rows(examples, tokenizer=None, prompt_limit: int | None = None) -> list[dict]:
    """The examples as trl's conversational prompt rows, prompts within prompt_limit tokens."""
    out = []
    for ex in examples:
        prompt = text_messages(ex.prompt)
        if tokenizer is not None and prompt_limit:
            prompt = fit_prompt(prompt, tokenizer, prompt_limit)
        out.append({"prompt": prompt, "answer": reference_of(ex)})
    return out


@dataclass
class PromptStats:
    prompts: int
    prompt_mean: float
    longest: int
    over: int  # prompts over the prompt budget (their start is cut)
    with_reference: int
    lengths: list[int]

    def histogram(self, bins: int = 20) -> list[tuple[int, int]]:
        return length_histogram(self.lengths, bins)

    def lines(self, prompt_limit: int, completion_limit: int) -> list[str]:
        return [f"{self.prompts} prompts; mean {self.prompt_mean:.0f} tokens, longest {self.longest}; "
                f"{self.with_reference} with a reference answer",
                f"{self.over} prompts over the prompt budget of {prompt_limit} tokens (their start is cut); "
                f"each completion gets up to {completion_limit} tokens"]


def prompt_stats(examples, tokenizer, prompt_limit: int) -> PromptStats:
    lengths = [len(tokenizer.apply_chat_template(text_messages(ex.prompt), add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"]) for ex in examples]
    with_ref = sum(bool((reference_of(ex) or "").strip()) for ex in examples)
    return PromptStats(len(examples), sum(lengths) / len(lengths) if lengths else 0.0, max(lengths, default=0),
                       sum(n > prompt_limit for n in lengths), with_ref, lengths)
