"""RunConfig: the one description of a training run.

The UI form, a YAML file and the command line all produce a `RunConfig`; it is written as
`runs/<id>/config.yaml` before a run starts. Each field carries its own help text (shown
by the UI and by `studio train --help`), and `__post_init__` rejects bad values with one
sentence naming the field.

    python -m engine.train.config            # prints the default config as YAML
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from engine.data.formats import parse_mapping
from engine.errors import StudioError
from engine.models import DEFAULT_MODEL
from engine.train.methods import METHODS
from engine.train.rewards import RewardError, check_specs

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLE_TRAIN = ASSETS / "sample" / "train.jsonl"
SAMPLE_EVAL = ASSETS / "sample" / "eval.jsonl"  # held-back questions with reference answers
SAMPLE_PROMPTS = ASSETS / "sample" / "grpo.jsonl"  # GRPO: sums to answer inside <answer> tags, with their answers
SAMPLE_PROMPTS_EVAL = ASSETS / "sample" / "grpo-eval.jsonl"  # 16 more, held back
SAMPLE_PAIRS_EVAL = ASSETS / "sample" / "preference-eval.jsonl"  # preference pairs held back from preference.jsonl



class ConfigError(StudioError, ValueError):
    """A setting a person chose that cannot work, said in one sentence."""


# The range of every number field, as (lowest, highest, what it must be): checked before anything
# else, so no run folder or process exists for a value outside it. "above" makes the lowest exclusive.
RANGES: dict[str, tuple[float, float, str]] = {
    "val_fraction": (0, 0.95, "must be from 0 to 0.95"),
    "eval_steps": (1, 10**7, "must be from 1 to 10,000,000"),
    "epochs": (0, 1000, "must be from 0 to 1,000"),
    "max_steps": (-1, 10**8, "must be -1 (train for epochs) or from 1 to 100,000,000"),
    "learning_rate": (0, 1, "must be above 0 and at most 1"),
    "batch_size": (1, 65536, "must be from 1 to 65,536"),
    "grad_accum": (1, 65536, "must be from 1 to 65,536"),
    "max_length": (16, 1 << 20, "tokens must be from 16 to 1,048,576"),
    "lora_rank": (1, 4096, "must be from 1 to 4,096"),
    "lora_alpha": (1, 65536, "must be from 1 to 65,536"),
    "lora_dropout": (0, 0.9, "must be from 0 to 0.9"),
    "virtual_tokens": (1, 4096, "must be from 1 to 4,096"),
    "oft_block_size": (1, 4096, "must be from 1 to 4,096"),
    "freeze_last_n": (1, 1000, "must be from 1 to 1,000"),
    "warmup_ratio": (0, 0.9, "must be from 0 to 0.9"),
    "early_stopping_patience": (0, 10000, "must be 0 (off) or up to 10,000"),
    "num_processes": (1, 4096, "must be from 1 to 4,096"),
    "seed": (0, 2**32 - 1, "must be from 0 to 4,294,967,295"),
    "logging_steps": (1, 10**7, "must be from 1 to 10,000,000"),
    "save_steps": (1, 10**7, "must be from 1 to 10,000,000"),
    "beta": (0, 100, "must be from 0 (the objective's usual value) to 100"),
    "simpo_gamma": (0, 10, "must be from 0 to 10"),
    "max_prompt_length": (0, 1 << 20, "tokens must be from 0 (half of max_length) to 1,048,576"),
    "num_generations": (2, 1024, "must be from 2 to 1,024 (GRPO compares the completions of one prompt)"),
    "max_completion_length": (1, 1 << 20, "tokens must be from 1 to 1,048,576"),
    "temperature": (0, 10, "must be above 0 and at most 10"),
    "sample_every": (0, 10**7, "must be 0 (never) or from 1 to 10,000,000"),
}
# Named starting points. "quick-start" is what the Train form opens with: a short LoRA run with a high
# learning rate, so a person sees the loss fall within minutes on a 2-core CPU; fields it leaves out
# keep RunConfig's defaults, which suit a longer, careful run (and are what a YAML without them gets).
PRESETS: dict[str, dict[str, Any]] = {
    "quick-start": {"epochs": 5.0, "learning_rate": 1e-3, "max_length": 256},
    "defaults": {},
}
FORM_PRESET = "quick-start"
INT_CHOICES = ("zero_stage",)  # Literal fields of numbers: read as whole numbers first, then checked
Method = Literal[tuple(METHODS)]  # the choices of `method`, from the one table in engine/train/methods.py


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _list(default: list, help: str) -> Any:
    return field(default_factory=lambda: list(default), metadata={"help": help})


def prompt_limit(max_prompt_length: int, max_length: int) -> int:
    """The prompt tokens a preference objective keeps: max_prompt_length, or half of max_length at 0."""
    return max_prompt_length or max_length // 2


def grpo_prompt_limit(max_prompt_length: int, max_length: int, max_completion_length: int) -> int:
    """The prompt tokens GRPO keeps: max_prompt_length, or what max_length leaves beside the completion at 0."""
    return max_prompt_length or max_length - max_completion_length


OBJECTIVE_HELP = ("What the loss learns: sft (imitate the answers), or from preferences: dpo (chosen over rejected, "
                  "against a frozen reference), orpo (SFT plus an odds-ratio penalty, no reference), kto (thumbs "
                  "up/down, unpaired), simpo (length-normalised margin, no reference); or grpo (the model writes "
                  "num_generations answers to each prompt and learns from what the reward functions score them).")
REWARDS_HELP = ("GRPO: the reward functions, a YAML list of {kind, weight, name, and options}: format (pattern, or "
                "preset answer_tags / think_answer), exact, contains, numeric (tolerance), length (target words), "
                "json (schema), judge (url, model, rubric, api_key_env), custom (path FILE.py:FUNCTION; YAML and "
                "CLI only). engine/train/rewards.py says what each scores.")


@dataclass
class RunConfig:
    model: str = _f(DEFAULT_MODEL, "Hub id or local folder of the model to fine-tune.")
    data: list[str] = _list([str(SAMPLE_TRAIN)], "Training data: a list of files (a YAML list; one file name "
                            "alone is fine too) in JSONL, JSON, CSV, TSV, Parquet or TXT; chat, ShareGPT, Alpaca, "
                            "prompt/completion or text.")
    columns: dict | str = _f("", "For tables of no known format, which columns to read: a mapping of prompt, "
                                 "completion and optionally system to column names (prompt=COL,completion=COL).")
    val_data: str = _f("", "Validation file; empty = split val_fraction off the training data.")
    val_fraction: float = _f(0.0, "Share of the training examples held out for validation (seeded).")
    eval_steps: int = _f(20, "Evaluate the validation loss every this many steps.")
    train_on: Literal["assistant", "all"] = _f("assistant", "Tokens the loss uses: the assistant's answers only, "
                                                             "or all.")
    method: Method = _f("lora", "Fine-tuning method: " + ", ".join(METHODS) + ".")
    objective: Literal["sft", "dpo", "orpo", "kto", "simpo", "grpo"] = _f("sft", OBJECTIVE_HELP)
    beta: float = _f(0.0, "Preference objectives: how strongly the preference pulls (0: the objective's usual "
                          "value, 0.1 for dpo, orpo and kto, 2.0 for simpo). GRPO: the weight of the KL penalty "
                          "that keeps the model near its start (0: none, and no reference pass).")
    rewards: list[dict] = _list([], REWARDS_HELP)
    num_generations: int = _f(4, "GRPO: completions sampled per prompt, compared with each other; it must divide "
                                 "the completions per step (batch_size x grad_accum x processes).")
    max_completion_length: int = _f(64, "GRPO: longest completion in tokens; the prompt gets max_length minus this "
                                        "(or max_prompt_length).")
    temperature: float = _f(1.0, "GRPO: sampling temperature of the completions (higher: more varied).")
    grpo_loss: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = _f(
        "dapo", "GRPO loss: dapo (tokens of the whole batch weigh alike: no length bias), grpo (the paper's: each "
                "completion's tokens averaged), dr_grpo (normalised by a constant), bnpo (by the local batch).")
    sample_every: int = _f(5, "GRPO: every this many steps, a few sampled completions and their rewards are "
                              "shown (0: never).")
    loss_type: Literal["sigmoid", "ipo"] = _f("sigmoid", "DPO loss: sigmoid (the DPO paper) or ipo "
                                                         "(bounded, less prone to overfitting).")
    simpo_gamma: float = _f(0.5, "SimPO: the target reward margin, as a share of beta.")
    max_prompt_length: int = _f(0, "Preference objectives: prompt tokens kept (the start of a longer prompt is "
                                   "cut); the answers get the rest of max_length. 0: half of max_length.")
    init_from: str = _f("", "Start from a finished run's adapter (its run id): it is merged into the base, which is "
                            "then the reference, and a new adapter trains on top (SFT, then DPO).")
    kto_from_pairs: bool = _f(False, "KTO on preference pairs: use each chosen answer as a good and each rejected "
                                     "one as a bad example.")
    epochs: float = _f(3.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = _f(-1, "Stop after this many optimizer steps; -1 trains for `epochs`.")
    learning_rate: float = _f(2e-4, "Peak learning rate.")
    batch_size: int = _f(4, "Examples per step on each device.")
    grad_accum: int = _f(1, "Steps whose gradients add up before each optimizer update.")
    max_length: int = _f(512, "Longest example in tokens; longer ones are truncated.")
    lora_rank: int = _f(16, "LoRA rank r: size of the low-rank update.")
    lora_alpha: int = _f(32, "LoRA alpha: the update is scaled by alpha / r.")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.")
    target_modules: list[str] = _list(["all-linear"], "Layers that get adapters: all-linear, or a list of layer "
                                      "names (q_proj, v_proj, ...).")
    compute_dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "QLoRA compute dtype.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _f("auto", "Number format: auto (the fastest that trains well here, from matrix products "
                                "measured on this machine: bf16 on a GPU that has it; on a CPU only where bf16 "
                                "measures at least 3x fp32), fp32, bf16 (bf16 compute, fp32 adapters and optimizer; "
                                "refused where this machine runs it slower than fp32: `python -m engine.capability` "
                                "prints the figures), or fp16 (GPU only).")
    force_precision: bool = _f(False, "Train in the chosen precision even where it was measured slower than "
                                      "fp32 here (a warning gives the measured ratio).")
    padding_free: bool = _f(False, "Put the examples of a batch end to end with no padding tokens: the same "
                                   "loss, less compute when their lengths differ.")
    fast_step: bool = _f(True, "On a CPU, the studio's faster SFT step (engine/train/fast_step.py): the loss only at "
                               "trained positions, and the examples of a batch end to end, each attending to "
                               "itself; exact in fp32. false: trl's own step.")
    packing: bool = _f(False, "Pack short examples together into rows of max_length tokens (best fit; each example "
                              "still attends only to itself): fuller rows, so more examples per step and fewer "
                              "steps per epoch than batch_size alone gives.")
    virtual_tokens: int = _f(16, "Prompt and prefix tuning: number of trained virtual tokens.")
    oft_block_size: int = _f(8, "OFT: block size of the orthogonal matrices (divides the layer width).")
    freeze_last_n: int = _f(2, "Method freeze: how many of the last decoder layers train.")
    warmup_ratio: float = _f(0.05, "Fraction of steps spent warming the learning rate up.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass: less memory, "
                                             "about a third more compute.")
    early_stopping_patience: int = _f(0, "Stop after this many evaluations without a better eval loss; "
                                         "0 = off (needs a validation split).")
    zero_stage: Literal[0, 1, 2, 3] = _f(0, "DeepSpeed ZeRO stage: 0 off, 1 shards optimizer states, 2 also gradients, "
                            "3 also the weights, across the training processes.")
    offload: Literal["none", "optimizer", "all"] = _f("none", "ZeRO offload to CPU memory: none, optimizer, or all (optimizer and weights; stage 3).")
    num_processes: int = _f(1, "Training processes: one per GPU; on a machine without a GPU, CPU processes (gloo).")
    report_to: list[str] = _list(["tensorboard"], "Where metrics also go: a list of tensorboard, wandb, mlflow; "
                                                  "none (or an empty list) for nowhere.")
    trust_remote_code: bool = _f(False, "Run Python code that comes with the model (some architectures need it). "
                                        "It runs with your rights: only with `revision` pinned to a commit you read.")
    revision: str = _f("", "Model commit (40 hex characters) to load; required with trust_remote_code.")
    seed: int = _f(42, "Random seed for data order and adapter initialisation.")
    logging_steps: int = _f(1, "Log the loss every this many steps.")
    save_steps: int = _f(20, "Save a checkpoint every this many steps.")

    def __post_init__(self) -> None:
        self.data = _files(self.data)
        self.rewards = _rewards(self.rewards)
        self.report_to = [x for x in _words("report_to", self.report_to) if x != "none"]
        self.target_modules = _words("target_modules", self.target_modules) or ["all-linear"]
        for f in fields(self):  # YAML and forms hand over strings and ints loosely
            value = getattr(self, f.name)
            if f.type in ("float", float, "int", int) or f.name in INT_CHOICES:
                setattr(self, f.name, _number(f.name, float if f.type in ("float", float) else int, value))
            elif f.type in ("bool", bool) and not isinstance(value, bool):
                setattr(self, f.name, _boolean(f.name, value))
        for name, (low, high, text) in RANGES.items():  # written so that NaN fails every rule
            value = getattr(self, name)
            if not (low <= value <= high) or (text.startswith("must be above") and value == low):
                raise ConfigError(f"{name}: {value} {text}.")

        try:
            self.columns = parse_mapping(self.columns) or {}
        except ValueError as err:
            raise ConfigError(f"{err}.") from None
        for name, allowed in choices().items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(map(str, allowed))}.")
        if not self.model.strip():
            raise ConfigError("model: type a hub id or a local model folder.")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("epochs: must be above 0 when max_steps is not set.")
        if self.max_steps == 0:
            raise ConfigError("max_steps: 0 trains nothing; give a number of steps, or -1 to train for `epochs`.")
        if self.early_stopping_patience and self.save_steps % self.eval_steps:
            raise ConfigError(f"save_steps: {self.save_steps} must be a multiple of eval_steps ({self.eval_steps}) "
                              "when early stopping keeps the best checkpoint.")
        if self.trust_remote_code and not re.fullmatch(r"[0-9a-f]{40}", self.revision.strip()):
            raise ConfigError("trust_remote_code: needs revision pinned to a commit hash (40 hex characters), so "
                              "the code that runs is the code you read.")
        if self.offload != "none" and self.zero_stage == 0:
            raise ConfigError("offload: needs ZeRO; set zero_stage to 2 (optimizer) or 3 (all).")
        if self.offload == "all" and self.zero_stage != 3:
            raise ConfigError("offload: all (weights too) needs zero_stage 3; use offload: optimizer with stage "
                              f"{self.zero_stage}.")
        if self.objective == "grpo":
            self._check_grpo()
        elif self.objective != "sft" and self.prompt_limit >= self.max_length:
            raise ConfigError(f"max_prompt_length: {self.prompt_limit} leaves no room for the answers within "
                              f"max_length {self.max_length}; make it smaller.")
        self.init_from = "" if self.init_from is None else self.init_from
        if not isinstance(self.init_from, str) or (
                self.init_from and not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", self.init_from.strip())):
            raise ConfigError(f"init_from: {self.init_from!r} is not a run id.")
        self.init_from = self.init_from.strip()
        unknown = sorted(set(self.reporters()) - {"tensorboard", "wandb", "mlflow"})
        if unknown:
            raise ConfigError(f"report_to: {unknown[0]!r} is not one of tensorboard, wandb, mlflow, none.")

    def _check_grpo(self) -> None:
        if not isinstance(self.rewards, list) or not self.rewards:
            raise ConfigError("rewards: objective grpo needs at least one reward function (format, exact, numeric, "
                              "...).")
        try:
            check_specs(self.rewards)
        except RewardError as err:
            raise ConfigError(str(err)) from None
        rows = self.batch_size * self.grad_accum * self.num_processes
        if rows % self.num_generations:
            raise ConfigError(f"num_generations: {self.num_generations} must divide the completions per step, "
                              f"batch_size x grad_accum x processes = {rows} (each prompt's completions are "
                              "compared within one step).")
        if self.max_completion_length >= self.max_length:
            raise ConfigError(f"max_completion_length: {self.max_completion_length} leaves no room for the prompt "
                              f"within max_length {self.max_length}; make it smaller or max_length larger.")
        if self.prompt_limit + self.max_completion_length > self.max_length:
            raise ConfigError(f"max_prompt_length: {self.prompt_limit} prompt + {self.max_completion_length} "
                              f"completion tokens is over max_length {self.max_length}; lower one of them.")
        if self.method == "prompt-tuning":
            raise ConfigError("objective grpo: trl's GRPO trainer does not take virtual-token adapters "
                              "(prompt-tuning); pick lora, qlora, dora or full.")

    def reporters(self) -> list[str]:
        return list(self.report_to)

    def preference_beta(self) -> float:
        return self.beta or (2.0 if self.objective == "simpo" else 0.1)

    def distributed(self) -> bool:
        """Whether the run goes through `accelerate launch` with DeepSpeed (ZeRO or several processes)."""
        return self.zero_stage > 0 or self.num_processes > 1

    def data_files(self) -> list[str]:
        return list(self.data)

    @property
    def prompt_limit(self) -> int:
        if self.objective == "grpo":
            return grpo_prompt_limit(self.max_prompt_length, self.max_length, self.max_completion_length)
        return prompt_limit(self.max_prompt_length, self.max_length)

    @classmethod
    def preset(cls, name: str = FORM_PRESET, **values: Any) -> "RunConfig":
        """The config a named preset starts from (RunConfig's defaults where it says nothing), with `values`."""
        return cls(**{**PRESETS[name], **values})

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a setting; known settings are {', '.join(sorted(known))}.")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "RunConfig":
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the YAML must be a mapping of setting: value.")
        values.update(overrides or {})
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        lines = []
        for f in fields(self):
            lines.append(f"# {f.metadata['help']}")
            lines.append(yaml.safe_dump({f.name: getattr(self, f.name)}, sort_keys=False).strip())
        return "\n".join(lines) + "\n"


def _files(value: Any) -> list[str]:
    """The data field as a list of paths. A string is one file when such a file exists (its name may hold a
    comma), else a comma list, as older configs and `--data a.jsonl,b.jsonl` give it."""
    if isinstance(value, (str, Path)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
        raise ConfigError(f"data: {value!r} is not a file path or a list of them.")
    out = []
    for text in (str(v).strip() for v in value):
        if Path(text).expanduser().is_file() or "," not in text:
            out += [text] if text else []
        else:
            out += [p.strip() for p in text.split(",") if p.strip()]
    return out


def _rewards(value: Any) -> list[dict]:
    """The rewards field as a list of mappings: YAML gives one; the form and `--rewards` give its YAML text."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError as exc:
            raise ConfigError(f"rewards: not valid YAML ({str(exc).splitlines()[0]}).") from None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError("rewards: give a list of rewards, each a mapping with a kind (format, exact, numeric, ...).")
    return [dict(v) for v in value]


def choices() -> dict[str, tuple]:
    """Every field typed with a Literal, and its choices: the one list the form and the CLI offer."""
    hints = get_type_hints(RunConfig)
    return {f.name: get_args(hints[f.name]) for f in fields(RunConfig) if get_origin(hints[f.name]) is Literal}


def _words(name: str, value: Any) -> list[str]:
    """A list field from a YAML list, or from a comma list as older configs and forms give it."""
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return [x.strip() for x in value if x.strip()]
    raise ConfigError(f"{name}: {value!r} is not a list of names.")


# The label each field has on the Train form (its help text, choices and default are the field's own).
LABELS: dict[str, str] = {
    "model": "Model",
    "method": "Method",
    "epochs": "Epochs",
    "max_steps": "Max steps",
    "learning_rate": "Learning rate",
    "batch_size": "Batch size",
    "max_length": "Max length",
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "precision": "Precision",
    "force_precision": "Force this precision",
    "padding_free": "Padding-free batches",
    "fast_step": "Faster CPU step",
    "packing": "Packing",
    "zero_stage": "ZeRO stage",
    "offload": "Offload",
    "num_processes": "Processes (GPUs)",
    "trust_remote_code": "Trust the model's own code (trust_remote_code)",
    "revision": "Revision (commit hash)",
    "objective": "Objective",
    "beta": "Beta (preference strength)",
    "loss_type": "DPO loss",
    "init_from": "Start from run (init_from)",
    "max_prompt_length": "Max prompt length",
    "kto_from_pairs": "KTO from pairs",
    "num_generations": "Completions per prompt",
    "max_completion_length": "Max completion length",
    "temperature": "Temperature",
    "grpo_loss": "GRPO loss",
    "rewards": "Rewards (YAML)",
    "sample_every": "Show samples every N steps",
}


def _boolean(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: {value!r} is not true or false.")


def _number(name: str, kind: type, value: Any) -> Any:
    """`value` as a finite int or float, or one sentence naming the field."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not a number.")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: {value!r} is not a number.") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name}: {value!r} is not a finite number.")
    if kind is int and number != int(number):
        raise ConfigError(f"{name}: {value!r} is not a whole number.")
    return kind(number)


if __name__ == "__main__":
    print(RunConfig().to_yaml())
