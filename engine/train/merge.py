"""A finished run's weights merged: the adapter folded into its base, as a plain transformers folder
(runs/<id>/merged/). The trainer uses it for `init_from` (a new run on top of a finished one), and the
exports (engine/export/) add their model card to it.

A QLoRA (or 8-bit) adapter is merged into the base loaded the way it was trained (quantised) and then
dequantised, so the merged weights are the ones the adapter learned against. The folder is written
under a temporary name and renamed when complete.

    python -m engine.train.merge RUN_ID        # writes runs/RUN_ID/merged/
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from engine.errors import StudioError
from engine.models import resolve_model
from engine.train import methods
from engine.train.runs import Run, runs_root

Progress = Callable[[float, str], None]
UNMERGEABLE = ("prompt-tuning", "prefix-tuning")


class MergeError(StudioError, ValueError):
    """A run whose weights cannot be merged (or have not been saved), said in one sentence."""


def noop(fraction: float, text: str) -> None:
    pass


def replace_dir(tmp: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def finished_output(run: Run) -> Path:
    """The run's weights as saved, or one sentence saying there are none yet."""
    if run.weights is None:
        raise MergeError(f"{run.no_weights().capitalize()}; train it to the end (or Stop it, which saves) first.")
    return run.weights


def merge_weights(run, progress: Progress = noop) -> Path:
    """The adapter folded into its base model, as a plain transformers model folder (runs/<id>/merged/)."""
    import torch  # deferred: torch, peft and transformers are heavy, and the CLI imports this module at start
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    finished_output(run)
    if run.model_dir is not None:
        return run.model_dir  # full and freeze runs trained the model's own weights
    cfg = run.config
    if cfg.method in UNMERGEABLE:
        raise MergeError(f"method {cfg.method}: its virtual tokens are not weights of the model, so it cannot be "
                          "merged; export the adapter instead.")
    target = run.dir / "merged"
    if (target / "config.json").exists():
        return target
    progress(0.1, "loading the base model")
    path = resolve_model(run.base_model)  # an init_from run: the run it started from, merged
    quant = methods.quantization_config(cfg)
    if quant is not None:
        base = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant)
        progress(0.3, "dequantising the base the adapter was trained on")
        base = base.dequantize()
        base = base.to(torch.float32)
    else:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    progress(0.5, "merging the adapter")
    merged = PeftModel.from_pretrained(base, str(run.adapter)).merge_and_unload()
    progress(0.8, "writing the merged model")
    tmp = target.with_name("merged.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(run.adapter)).save_pretrained(tmp)  # the tokenizer the run saved
    progress(1.0, "merged")
    return replace_dir(tmp, target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(merge_weights(Run(runs_root() / sys.argv[1])))
