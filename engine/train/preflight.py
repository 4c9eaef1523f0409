"""Preflight: what is checked before a run exists, so a run that cannot work is refused in one sentence
before any folder or process is made.

- `precision`, `precision_note`, `precision_warning`: the number format a run trains in on this machine
  (`auto` reads the measured capability, engine/capability.py) and what it costs;
- `refusal`: a method, precision or launch this machine cannot run (prefix-tuning, fp16 without a GPU,
  bf16 where the CPU is slow at it, DeepSpeed missing, bitsandbytes that cannot load...);
- `create_run`: those checks, the data files (present, of the shape the objective takes; for grpo, reference
  answers where a reward needs them), the rewards (a custom one never from the web page) and `init_from`, then
  the run's folder in the registry (engine/train/runs.py);
- `demo_limit`: the public demo's caps (engine/demo.py) applied to a config.

    python -m engine.train.preflight CONFIG.yaml     # prints the precision note and any refusal
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from engine import demo
from engine.capability import auto_precision, slowdown
from engine.data.dataset import dataset_report
from engine.data.formats import mapping_text
from engine.data.pairs import data_refusal
from engine.data.prompts import missing_references
from engine.models import DEFAULT_MODEL
from engine.owners import LOCAL
from engine.train import methods
from engine.train.config import ConfigError, RunConfig
from engine.train.rewards import RewardError, rewards_from
from engine.train.runs import Run, register, runs_root


def _cuda() -> bool:
    import torch  # deferred: torch is heavy, and the Train form and the CLI check before they need it

    return torch.cuda.is_available()


def precision(cfg) -> str:
    """The number format a run trains in: bf16, fp16 or fp32. `auto` reads the measured capability
    (engine/capability.py): bf16 on a GPU that has it, and on a CPU only where bf16 is measured much faster."""
    if cfg.precision != "auto":
        return cfg.precision

    return auto_precision(cfg.model)[0]


def precision_note(cfg) -> str:
    """What the run's precision comes to on this machine and why: for the Train form and the CLI."""
    if cfg.precision == "auto":
        return auto_precision(cfg.model)[1]
    return precision_warning(cfg) or refusal(cfg) or f"precision {cfg.precision}, as chosen."


def precision_warning(cfg) -> str | None:
    """The measured slowdown of a precision forced with `force_precision` (None when it is not slower)."""
    slow = slowdown(cfg.precision, cfg.model) if cfg.force_precision else None
    return f"warning: precision {cfg.precision} is forced although {slow}; training will be slower." if slow else None


def refusal(cfg) -> str | None:
    """One sentence when this machine cannot run `cfg.method`, saying what to pick instead."""
    if cfg.method == "prefix-tuning":
        # Measured with transformers 5.23 / peft 0.21: SDPA rejects the prefix key/values, and with eager
        # attention the causal mask is built without the prefix length (81 vs 97 columns).
        return ("method prefix-tuning: it does not train with this version of transformers (the prefix "
                "breaks the attention mask); pick prompt-tuning or lora instead.")
    if getattr(cfg, "objective", "sft") != "sft" and cfg.method == "prompt-tuning":
        return (f"objective {cfg.objective}: trl's preference trainers do not take virtual-token adapters "
                "(prompt-tuning); pick lora, qlora, dora or full.")
    if getattr(cfg, "objective", "sft") != "sft" and (cfg.packing or cfg.padding_free):
        return (f"objective {cfg.objective}: packing and padding-free batches are for SFT (answers must stay "
                "beside their prompt); turn them off.")
    if cfg.precision == "fp16" and not _cuda():
        return "precision fp16: needs a GPU; on a CPU pick bf16 (faster where the CPU has bf16 units) or fp32."
    if not cfg.force_precision:

        slow = slowdown(cfg.precision, cfg.model)
        if slow:
            return (f"precision {cfg.precision}: {slow}, so it would train slower than fp32; use auto or fp32, "
                    "or set force_precision: true to train in it anyway.")
    if cfg.precision == "bf16" and cfg.distributed() and not _cuda():
        return "precision bf16 with ZeRO on a CPU: DeepSpeed runs CPU processes in fp32 here; set precision to fp32."
    if cfg.method in methods.QUANTIZED and cfg.zero_stage == 3:
        return (f"method {cfg.method} with zero_stage 3: the quantised base cannot be sharded here; "
                "use zero_stage 2, or lora with zero_stage 3.")
    if cfg.distributed():
        import torch  # deferred: torch is heavy, and the Train form and the CLI check before they need it

        try:
            import deepspeed  # noqa: F401
        except Exception:
            return ("zero_stage / num_processes: DeepSpeed is not installed (pip install deepspeed); "
                    "or set zero_stage 0 and num_processes 1.")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus and cfg.num_processes > gpus:
            return (f"num_processes {cfg.num_processes}: this machine has {gpus} GPU{'s' * (gpus > 1)}; "
                    f"set num_processes to {gpus} or less, or launch on several machines (see README).")
        cores = os.cpu_count() or 1
        if not gpus and cfg.num_processes > cores:
            return (f"num_processes {cfg.num_processes}: this machine has no GPU and {cores} CPU cores, "
                    f"so at most {cores} CPU processes; set num_processes to {cores} or less.")
    if cfg.method in methods.QUANTIZED:
        try:
            import bitsandbytes

            bitsandbytes.__version__  # imported for its side effect: it fails where it cannot run
        except Exception:  # bitsandbytes fails in several ways on unsupported machines
            return (f"method {cfg.method}: bitsandbytes cannot load on this machine, so the base cannot be "
                    "quantised; pick lora (or dora) instead.")
    return None


def create_run(config: RunConfig, root: Path | None = None, from_page: bool = False, owner: str | None = None) -> Run:
    """A new run of `config` in the registry, after every check here: a method this machine cannot run, a
    missing file, data of the wrong shape for the objective or an `init_from` with no weights is refused,
    before any folder or process exists. `from_page`: the config came from the web page, which may not name a
    custom reward (its file's code would run). `owner`: the person it is made for (engine/owners.py; the page
    checks that an init_from run is theirs); None is the machine's operator (the CLI): the local owner."""
    refused = refusal(config)
    if refused:
        raise ConfigError(refused)
    for name, paths in (("data", config.data_files()), ("val_data", [config.val_data] if config.val_data else [])):
        for p in paths:
            if not Path(p).expanduser().is_file():
                raise ConfigError(f"{name}: {p} is not a file here; check the path (training data is read from "
                                  "local files).")
    if not config.data_files():
        raise ConfigError("data: no training file given.")
    root = root or runs_root()
    _refuse_data_for_objective(config, from_page)
    if config.init_from:
        start = Run(root / config.init_from)
        if not (start.dir / "config.yaml").exists():
            raise ConfigError(f"init_from: there is no run {config.init_from} in {root}.")
        if start.weights is None:
            raise ConfigError(f"init_from: {start.no_weights()}; pick a finished run.")
    return register(config, root, owner or LOCAL)


def _refuse_data_for_objective(config: RunConfig, from_page: bool = False) -> None:
    """Data of the wrong shape for the objective (SFT data for DPO, pairs for KTO...) is refused before launch;
    for grpo, the rewards are built (a custom one loads its file, never from the page) and one that needs
    reference answers the data lacks is refused."""
    files = config.data_files() + ([config.val_data] if config.val_data else [])
    report = dataset_report(files, mapping_text(config.columns or None), config.objective)
    refused = data_refusal(config.objective, {e.kind for e in report.examples}, config.kto_from_pairs)
    if refused:
        raise ConfigError(refused + ".")
    if config.objective == "grpo":
        missing = missing_references(report.examples)
        try:
            rewards_from(config.rewards, references=missing is None, where=missing, from_page=from_page)
        except RewardError as err:
            raise ConfigError(str(err)) from None


def demo_limit(cfg: RunConfig) -> RunConfig:
    """The config as the public demo runs it (a copy): steps capped; any other model, or ZeRO, refused with a
    sentence. Unchanged when the demo is off."""
    if not demo.on():
        return cfg
    if cfg.model != DEFAULT_MODEL:
        raise ConfigError(f"model: the public demo trains {DEFAULT_MODEL} only; duplicate this Space to train "
                          "another model.")
    if cfg.distributed():
        raise ConfigError("zero_stage / num_processes: the public demo trains in one process; duplicate this Space "
                          "to use several.")
    steps = demo.MAX_STEPS if cfg.max_steps <= 0 else min(cfg.max_steps, demo.MAX_STEPS)
    return dataclasses.replace(cfg, max_steps=steps)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    cfg = RunConfig.from_yaml(args[0])
    print(precision_note(cfg))
    refused = refusal(cfg)
    if refused:
        print(refused)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
