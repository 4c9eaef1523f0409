"""Rewards a program can check, for reinforcement learning with GRPO (objective grpo: engine/train/objectives.py
hands them to trl's GRPOTrainer): each a named function with a weight, in the shape trl's GRPOTrainer calls
(`reward(prompts, completions, **columns) -> list[float | None]`; its `__name__` is the name trl logs).

    kind      what it scores (1.0 right, 0.0 wrong)                          options
    format    the completion matches a regular expression                      pattern, or preset:
              (presets: answer_tags `<answer>...</answer>`,                    answer_tags | think_answer
              think_answer `<think>...</think><answer>...</answer>`)
    exact     the answer equals the reference (normalised: case, spaces,      needs references
              punctuation; inside <answer> tags when there are any)
    contains  the answer contains the reference (normalised)                  needs references
    numeric   the answer's last number is within a tolerance of the           tolerance (absolute, 1e-6),
              reference's                                                     relative (0); needs references
    length    1 at `target` words, falling linearly to 0 at 0 or 2 x target   target
    json      the answer parses as JSON (and follows `schema`, if given)      schema
    judge     an LLM judge's score (0-10, scaled to 0-1) through any          url, model, rubric,
              OpenAI-compatible endpoint; its answer is held to                api_key_env
              {"score": 0..10} by the endpoint's JSON mode where it has one
              (a reply without a score leaves the row out: None)
    custom    a Python function from a file: `module.py:function`            path; from YAML and the CLI
              (it runs the file's code: never from the web page, and          only
              refused in the public demo)

A reward that needs references returns None where a row has none (trl then leaves that function out
for the row), and `rewards_from(specs, references=False)` refuses it before a run starts.

    python -m engine.train.rewards '[{"kind": "format", "preset": "answer_tags"}]' "<answer>4</answer>"
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine import demo
from engine.errors import StudioError

PRESETS = {"answer_tags": r"\s*<answer>.*?</answer>\s*",
           "think_answer": r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*"}
NEEDS_REFERENCE = ("exact", "contains", "numeric")
KINDS = ("format", "exact", "contains", "numeric", "length", "json", "judge", "custom")
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
JUDGE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}},
                "required": ["score"]}


# Starting points the Train form offers (each a list of reward descriptions; edit the YAML for weights and options).
STARTERS = {
    "answer in <answer> tags, checked against the reference": [
        {"kind": "format", "preset": "answer_tags", "weight": 0.5}, {"kind": "exact", "weight": 1.0}],
    "a number, within a tolerance": [
        {"kind": "format", "preset": "answer_tags", "weight": 0.5}, {"kind": "numeric", "tolerance": 0.001}],
    "reason in <think>, then answer": [
        {"kind": "format", "preset": "think_answer", "weight": 0.5}, {"kind": "contains", "weight": 1.0}],
    "valid JSON": [{"kind": "json", "weight": 1.0}],
    "short answers (about 20 words)": [{"kind": "length", "target": 20, "weight": 1.0}],
    "an LLM judge (edit url and model)": [
        {"kind": "judge", "url": "http://127.0.0.1:8000/v1", "model": "judge", "rubric": "Is the answer correct "
         "and to the point?", "api_key_env": "OPENAI_API_KEY"}],
}


class RewardError(StudioError, ValueError):
    """A reward that cannot be built or used as asked, in one sentence naming it."""


def text_of(completion) -> str:
    """A completion's text: trl passes a string, or (conversational data) a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion or "")


def answer_of(text: str) -> str:
    """The part a reward compares: inside the last <answer> tags where there are any, else the whole text."""
    found = ANSWER.findall(text)
    return found[-1] if found else text


def normalise(text: str) -> str:
    table = str.maketrans("", "", string.punctuation)
    return " ".join(text.lower().translate(table).split())


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


@dataclass
class Reward:
    """One named reward with its weight; called as trl calls a reward function."""
    name: str
    kind: str
    weight: float
    score: Callable[[str, str | None], float | None]  # (completion text, reference or None) -> reward
    needs_reference: bool = False
    options: dict = field(default_factory=dict)

    @property
    def __name__(self) -> str:  # trl logs each function's reward under its name
        return self.name

    def __call__(self, prompts=None, completions=(), answer=None, **columns) -> list[float | None]:
        references = answer if answer is not None else columns.get("solution", columns.get("ground_truth"))
        references = list(references) if references is not None else [None] * len(completions)
        out = []
        for completion, reference in zip(completions, references):
            if self.needs_reference and (reference is None or str(reference).strip() == ""):
                out.append(None)  # nothing to check against: trl leaves this function out for the row
                continue
            out.append(self.score(text_of(completion), None if reference is None else str(reference)))
        return out


def _format(options: dict) -> Callable:
    pattern = options.get("pattern") or PRESETS.get(options.get("preset", ""))
    if not pattern:
        raise RewardError(f"format: give a pattern, or a preset ({', '.join(PRESETS)}).")
    try:
        compiled = re.compile(pattern, re.S)
    except re.error as err:
        raise RewardError(f"format: the pattern {pattern!r} is not a regular expression ({err}).") from None
    return lambda text, _: 1.0 if compiled.fullmatch(text) else 0.0


def _numeric(options: dict) -> Callable:
    tolerance = float(options.get("tolerance", 1e-6))
    relative = float(options.get("relative", 0.0))

    def score(text: str, reference: str) -> float:
        got, want = last_number(answer_of(text)), last_number(reference)
        if got is None or want is None:
            return 0.0
        return 1.0 if abs(got - want) <= max(tolerance, relative * abs(want)) else 0.0

    return score


def _length(options: dict) -> Callable:
    target = int(options.get("target", 0))
    if target <= 0:
        raise RewardError("length: give a target number of words above 0.")
    return lambda text, _: max(0.0, 1.0 - abs(len(text.split()) - target) / target)


def _json(options: dict) -> Callable:
    schema = options.get("schema")
    validator = None
    if schema is not None:
        import jsonschema  # deferred: only a schema-checking reward needs it

        try:
            validator = jsonschema.Draft202012Validator(schema)
            validator.check_schema(schema)
        except jsonschema.SchemaError as err:
            raise RewardError(f"json: the schema is not a JSON schema ({err.message}).") from None

    def score(text: str, _) -> float:
        try:
            value = json.loads(answer_of(text).strip())
        except json.JSONDecodeError:
            return 0.0
        return 1.0 if validator is None or validator.is_valid(value) else 0.0

    return score


def _judge(options: dict) -> Callable:
    url, model = options.get("url"), options.get("model")
    if not url or not model:
        raise RewardError("judge: give the endpoint's url (.../v1) and the model to ask.")
    rubric = options.get("rubric") or "Score how correct and helpful the answer is."
    key = os.environ.get(options.get("api_key_env", "OPENAI_API_KEY"), "") or "none"

    def score(text: str, reference: str | None) -> float | None:
        import httpx  # deferred: only a judge reward makes requests

        question = f"Rubric: {rubric}\n" + (f"Reference answer: {reference}\n" if reference else "") + \
            f"Answer to score: {text}\nGive a score from 0 to 10 as JSON: {{\"score\": N}}."
        body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 24,
                "temperature": 0, "response_format": {"type": "json_schema",
                                                      "json_schema": {"name": "score", "schema": JUDGE_SCHEMA}}}
        try:
            r = httpx.post(url.rstrip("/") + "/chat/completions", json=body, timeout=120,
                           headers={"Authorization": f"Bearer {key}"})
            r.raise_for_status()
            said = r.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, KeyError, ValueError) as err:
            raise RewardError(f"judge: the endpoint {url} did not answer ({str(err).splitlines()[0][:200]}).") \
                from None
        try:
            value = float(json.loads(said)["score"])
        except (ValueError, KeyError, TypeError):
            value = last_number(said)
        if value is None or math.isnan(value):
            return None  # no score in the reply: this row is left out of the judge's reward, not scored 0
        return min(1.0, max(0.0, value / 10))

    return score


def _custom(options: dict, from_page: bool) -> Callable:
    if from_page:
        raise RewardError("custom: a reward from a Python file runs that file's code, so it is taken from a YAML "
                          "config or the command line only, never from the web page.")
    if demo.on():
        raise RewardError("custom: the public demo runs no code from files; duplicate this Space to use one.")
    path, _, name = str(options.get("path", "")).partition(":")
    if not path or not name:
        raise RewardError("custom: give path as FILE.py:FUNCTION.")
    file = Path(path).expanduser()
    if not file.is_file():
        raise RewardError(f"custom: {file} is not a file here.")
    spec = importlib.util.spec_from_file_location(f"studio_reward_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise RewardError(f"custom: {file} has no function {name}.")
    return lambda text, reference: float(fn(text, reference))


def reward_from(spec: dict, from_page: bool = False) -> Reward:
    """One reward from its description: {"kind": ..., "weight": 1.0, "name": ..., and its options}."""
    if not isinstance(spec, dict):
        raise RewardError("rewards: each reward is a mapping with a kind (format, exact, numeric, ...).")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise RewardError(f"rewards: {kind!r} is not a reward kind; pick one of {', '.join(KINDS)}.")
    try:
        weight = float(spec.get("weight", 1.0))
    except (TypeError, ValueError):
        raise RewardError(f"{kind}: weight must be a number.") from None
    options = {k: v for k, v in spec.items() if k not in ("kind", "weight", "name")}
    if kind == "exact":
        fn = lambda text, ref: 1.0 if normalise(answer_of(text)) == normalise(ref) else 0.0  # noqa: E731
    elif kind == "contains":
        fn = lambda text, ref: 1.0 if normalise(ref) in normalise(answer_of(text)) else 0.0  # noqa: E731
    elif kind == "custom":
        fn = _custom(options, from_page)
    else:
        fn = {"format": _format, "numeric": _numeric, "length": _length, "json": _json, "judge": _judge}[kind](options)
    return Reward(str(spec.get("name") or kind), kind, weight, fn, kind in NEEDS_REFERENCE, options)


def rewards_from(specs: list[dict], references: bool = True, from_page: bool = False,
                 where: str | None = None) -> list[Reward]:
    """The rewards of a run; refused in one sentence when one needs references the data does not have (`where`:
    the first example without one), or two share a name (trl logs each by its name)."""
    if not specs:
        raise RewardError("rewards: give at least one reward (format, exact, numeric, ...).")
    rewards = [reward_from(s, from_page) for s in specs]
    names = [r.name for r in rewards]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RewardError(f"rewards: {', '.join(twice)} named twice; give each a name of its own.")
    if not references:
        needing = [r.name for r in rewards if r.needs_reference]
        if needing:
            lacking = f"{where} has none" if where else "this data has none"
            raise RewardError(f"rewards: {', '.join(needing)} compare{'s' * (len(needing) == 1)} with a reference "
                              f"answer, and {lacking} (an answer, solution or ground_truth field).")
    return rewards


def check_specs(specs) -> None:
    """Refuse, in one sentence, reward descriptions that cannot work: every kind but custom is built (nothing runs
    or connects); a custom one is only checked for its FILE.py:FUNCTION form, since loading it runs its code."""
    if not isinstance(specs, list):
        raise RewardError("rewards: give a list of rewards, each a mapping with a kind (format, exact, ...).")
    for spec in specs:
        if isinstance(spec, dict) and spec.get("kind") == "custom":
            path, _, name = str(spec.get("path", "")).partition(":")
            if not path.endswith(".py") or not name:
                raise RewardError("custom: give path as FILE.py:FUNCTION.")
            continue
        reward_from(spec)
    rewards_from([s if s.get("kind") != "custom" else {"kind": "length", "target": 1, "name": s.get("name") or
                                                       "custom"} for s in specs])  # names twice, none at all


def total(rewards: list[Reward], completions: list, references: list | None = None) -> list[float]:
    """The weighted sum per completion, as the trainer adds them (a reward with nothing to check counts 0)."""
    sums = [0.0] * len(completions)
    for r in rewards:
        for i, value in enumerate(r(None, completions, answer=references)):
            sums[i] += r.weight * (value or 0.0)
    return sums


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    built = rewards_from(json.loads(sys.argv[1]), references=len(sys.argv) > 3)
    refs = [sys.argv[3]] if len(sys.argv) > 3 else None
    for r in built:
        print(f"{r.name}: {r(None, [sys.argv[2]], answer=refs)[0]}")
