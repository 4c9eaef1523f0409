"""Outputs of a finished run: merged model, archive, ONNX export, push to the Hugging Face Hub.

    studio export RUN_ID --merge              # runs/<id>/merged/: the adapter folded into the base
    studio export RUN_ID --archive [--what adapter|merged]   # runs/<id>/exports/<id>-<what>.zip
    studio export RUN_ID --onnx               # runs/<id>/onnx/model.onnx, checked under ONNX Runtime
    studio export RUN_ID --push USER/REPO [--what adapter|merged] [--public]
    studio export RUN_ID --gguf [--quant f16|bf16|q8_0]   # runs/<id>/gguf/: llama.cpp / Ollama (engine/export/gguf.py)

Every folder, zip and push carries a README model card (engine/export/modelcard.py).

Every output is written under a temporary name and renamed when complete, so a half-written
export never looks finished. The merge itself is engine/train/merge.py's (a later run's
`init_from` uses it too); this module adds the model card. The Hub token comes from `HF_TOKEN` (a Space secret) or the
caller, and is never written to a log, an event, a config or an error message.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from engine.errors import StudioError
from engine.export.modelcard import card, write_card
from engine.models import load_tokenizer
from engine.train.merge import MergeError, Progress, finished_output, merge_weights, noop, replace_dir

class ExportError(StudioError, ValueError):
    """An export that cannot be made, said in one sentence."""


def _output(run) -> Path:
    """The run's weights as saved (its adapter, or its whole model)."""
    try:
        return finished_output(run)
    except MergeError as err:
        raise ExportError(str(err)) from None


def merge(run, progress: Progress = noop) -> Path:
    """The adapter folded into its base model, as a plain transformers model folder with its model card."""
    try:
        target = merge_weights(run, progress)
    except MergeError as err:
        raise ExportError(str(err)) from None
    if target == run.dir / "merged" and not (target / "README.md").exists():
        write_card(run, target, what="merged")  # merged for a later run's init_from, before any export
    return target


def archive(run, what: str = "adapter", progress: Progress = noop) -> Path:
    """A zip of the adapter (or the merged model) for download (without trainer state pickles)."""
    source = merge(run, progress) if what == "merged" else _output(run)
    exports = run.dir / "exports"
    exports.mkdir(exist_ok=True)
    target = exports / f"{run.id}-{what}.zip"
    tmp = target.with_name(target.name + ".tmp")
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != "training_args.bin")
    files = [p for p in files if p.relative_to(source) != Path("README.md")]
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{run.id}-{what}/README.md", card(run, what=what))
        for i, path in enumerate(files):
            zf.write(path, Path(f"{run.id}-{what}") / path.relative_to(source))
            progress((i + 1) / len(files), f"zipping {path.name}")
    os.replace(tmp, target)
    return target


def export_onnx(run, progress: Progress = noop, opset: int = 17) -> tuple[Path, float]:
    """The merged model as ONNX (input_ids, attention_mask -> logits), checked under ONNX Runtime.

    Returns the model path and the largest difference between ONNX Runtime's logits and
    PyTorch's on a sentence of a different length than the one traced.
    """
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForCausalLM

    merged = merge(run, progress)
    progress(0.85, "tracing the model to ONNX")
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(str(merged))

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    target = run.dir / "onnx"
    tmp = target.with_name("onnx.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sample = tokenizer("Hello there", return_tensors="pt")
    axes = {"batch": 0, "sequence": 1}
    dynamic = {name: {axes["batch"]: "batch", axes["sequence"]: "sequence"}
               for name in ("input_ids", "attention_mask", "logits")}
    with torch.no_grad():
        torch.onnx.export(Logits(model), (sample["input_ids"], sample["attention_mask"]), str(tmp / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    tokenizer.save_pretrained(tmp)
    write_card(run, tmp, what="merged")
    progress(0.95, "checking the export under ONNX Runtime")
    check = tokenizer("A longer sentence to check the export with.", return_tensors="pt")
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": check["input_ids"].numpy(),
                             "attention_mask": check["attention_mask"].numpy()})[0]
    with torch.no_grad():
        want = Logits(model)(check["input_ids"], check["attention_mask"]).numpy()
    diff = float(np.abs(got - want).max())
    if not diff < 1e-3 * max(1.0, float(np.abs(want).max())):
        raise ExportError(f"The ONNX export differs from the model by {diff:.3g} under ONNX Runtime; not kept.")
    progress(1.0, "exported")
    return replace_dir(tmp, target) / "model.onnx", diff


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def push_to_hub(run, repo_id: str, token: str | None = None, what: str = "adapter", private: bool = True,
                endpoint: str | None = None, progress: Progress = noop) -> str:
    """Upload the adapter (or merged model) to a Hub repository; returns the repository's address."""
    from huggingface_hub import HfApi

    token = token or os.environ.get("HF_TOKEN", "")
    if not token:
        raise ExportError("No Hugging Face token: set HF_TOKEN in the environment (a secret, on a Space) "
                          "or paste one; it is used for this upload only.")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ExportError(f"{repo_id!r} is not a repository id; write it as user/name.")
    source = merge(run, progress) if what == "merged" else _output(run)
    write_card(run, source, what=what)  # the Hub shows it as the repository's model card
    api = HfApi(endpoint=endpoint, token=token)
    try:
        progress(0.2, f"creating {repo_id}")
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        progress(0.4, f"uploading {source.name}/")
        api.upload_folder(folder_path=str(source), repo_id=repo_id, ignore_patterns=["training_args.bin", "*.tmp"],
                          commit_message=f"Fine-tuned with the studio: run {run.id} ({run.config.method})")
    except Exception as exc:  # network, auth and hub errors: one sentence, token removed
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ExportError(_scrub(f"The upload to {repo_id} failed: {first}", token)) from None
    progress(1.0, "pushed")
    return str(url)
