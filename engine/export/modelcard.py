"""A README model card for a run's exports and Hub pushes: what was trained, on what, how well, how to load it.

The card is written from the run's own records (config.yaml, events, eval.json) and its data files:
base model, method and objective, data summary (examples, tokens, shape), hyper-parameters, final
loss, the evaluation table if `studio eval` was run, and how to load the result with transformers /
peft, llama.cpp / Ollama and `studio serve`. It names no token and no path outside the run.

    python -m engine.export.modelcard RUN_ID        # print the card of a run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.data.dataset import check_files, dataset_tokens
from engine.data.formats import mapping_text

HYPER = ("method", "objective", "beta", "loss_type", "init_from", "epochs", "max_steps", "learning_rate", "batch_size", "grad_accum", "max_length", "lora_rank",
         "lora_alpha", "lora_dropout", "target_modules", "precision", "packing", "seed", "zero_stage")


def _data_summary(cfg) -> list[str]:
    names = ", ".join(Path(p).name for p in cfg.data)
    try:
        report = check_files(cfg.data, cfg.columns or None)
    except Exception as exc:  # the files moved since training: say so rather than fail the export
        return [f"- Files: {names} (no longer readable here: {type(exc).__name__})"]
    shapes = ", ".join(f"{n} {fmt}" for fmt, n in report.formats().most_common()) or "none"
    lines = [f"- Files: {names}", f"- Examples: {len(report.examples)} ({shapes})"]
    try:
        tokens = dataset_tokens(list(cfg.data), mapping_text(cfg.columns or None), cfg.model, cfg.max_length)
    except Exception:
        tokens = None
    if tokens:
        lines.append(f"- Tokens: about {int(tokens):,} per epoch at max_length {cfg.max_length}")
    if cfg.val_data or cfg.val_fraction:
        lines.append(f"- Validation: {Path(cfg.val_data).name if cfg.val_data else f'{cfg.val_fraction:.0%} held out'}")
    return lines


def _results(run) -> list[str]:
    st = run.state()
    lines = []
    last = st.logged[-1] if st.logged else None
    final = getattr(st.ended, "final_loss", None) if st.ended else None
    loss = final if final is not None else (last.loss if last else None)
    if last:
        lines.append(f"- Steps: {last.step}" + (f" of {st.total_steps}" if st.total_steps else ""))
    if loss is not None:
        lines.append(f"- Final training loss: {loss:.4f}" if isinstance(loss, float) else f"- Final training loss: {loss}")
    if st.evaluations:
        lines.append(f"- Final validation loss: {st.evaluations[-1].eval_loss:.4f}")
    lines.append(f"- Status: {run.status()}")
    path = run.dir / "eval.json"
    if path.exists():
        try:
            result = json.loads(path.read_text())
            summary = result["summary"]
        except (ValueError, KeyError):
            return lines
        lines += ["", f"Evaluation on {result.get('questions', '?')} questions (`studio eval`):", "",
                  "| column | token F1 | exact | ROUGE-L | semantic | latency s |", "|---|---|---|---|---|---|"]
        for column, s in summary.items():
            def f(key, digits=3):
                return f"{s[key]:.{digits}f}" if s.get(key) is not None else "-"
            lines.append(f"| {column} | {f('f1')} | {f('em', 2)} | {f('rouge_l')} | {f('semantic')} | {f('seconds', 2)} |")
        pref = result.get("preference")
        if pref:
            before = f"{pref['before']:.0%} before (adapter off), " if pref.get("before") is not None else ""
            lines += ["", f"Preference accuracy on {pref['pairs']} held-out pairs ({pref.get('file', '')}): {before}"
                          f"{pref['after']:.0%} after."]
    return lines


def card(run, gguf: str | None = None, what: str | None = None) -> str:
    """The model card's text. `what`: "adapter" or "merged" (what the folder holds); `gguf`: the file's name."""
    cfg = run.config
    adapter = run.adapter is not None and run.model_dir is None
    what = what or ("adapter" if adapter and not gguf else "merged")
    library = "peft" if what == "adapter" else "transformers"
    objective = getattr(cfg, "objective", "sft")
    tags = ["studio", cfg.method, objective] + (["gguf"] if gguf else [])
    head = ["---", f"base_model: {cfg.model}", f"library_name: {library}", "tags:"] + [f"- {t}" for t in tags] + ["---"]
    body = [f"# {run.id}", "",
            f"Fine-tuned from `{cfg.model}` with the fine-tuning studio: method **{cfg.method}**, objective "
            f"**{objective}**" + (f", started from run `{cfg.init_from}` (merged into the base)" if cfg.init_from
                                  else "") + f". This folder holds the {'LoRA/PEFT adapter' if what == 'adapter' else 'merged model'}"
            + (f" as GGUF (`{gguf}`) with an Ollama `Modelfile`." if gguf else "."), "",
            "## Data", ""] + _data_summary(cfg) + [
            "", "## Hyper-parameters", "", "| setting | value |", "|---|---|"]
    for name in HYPER:
        value = getattr(cfg, name, None)
        if value not in (None, "", []):
            body.append(f"| {name} | {', '.join(map(str, value)) if isinstance(value, list) else value} |")
    body += ["", "## Results", ""] + _results(run) + ["", "## How to use it", ""]
    if what == "adapter":
        body += ["With transformers and peft:", "", "```python",
                 "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer",
                 "model = AutoPeftModelForCausalLM.from_pretrained(\"PATH_OR_REPO\")",
                 "tokenizer = AutoTokenizer.from_pretrained(\"PATH_OR_REPO\")", "```"]
    elif not gguf:
        body += ["With transformers:", "", "```python",
                 "from transformers import AutoModelForCausalLM, AutoTokenizer",
                 "model = AutoModelForCausalLM.from_pretrained(\"PATH_OR_REPO\")",
                 "tokenizer = AutoTokenizer.from_pretrained(\"PATH_OR_REPO\")", "```"]
    if gguf:
        body += ["With Ollama (from this folder):", "", "```sh", f"ollama create {run.id.lower()} -f Modelfile",
                 f"ollama run {run.id.lower()}", "```", "", "With llama.cpp:", "", "```sh",
                 f"llama-cli -m {gguf} -cnv", "```", "", "With transformers (the GGUF dequantised):", "", "```python",
                 "from transformers import AutoModelForCausalLM",
                 f"model = AutoModelForCausalLM.from_pretrained(\".\", gguf_file=\"{gguf}\")", "```"]
    body += ["", "Behind an OpenAI-compatible endpoint, from the studio's runs folder:", "", "```sh",
             f"studio serve {run.id} --port 8000", "```", "", "```python", "from openai import OpenAI",
             "client = OpenAI(base_url=\"http://127.0.0.1:8000/v1\", api_key=\"none\")",
             f"reply = client.chat.completions.create(model=\"{run.id}\", "
             "messages=[{\"role\": \"user\", \"content\": \"Hello\"}])",
             "print(reply.choices[0].message.content)", "```", ""]
    return "\n".join(head + body)


def write_card(run, folder: Path, gguf: str | None = None, what: str | None = None) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(card(run, gguf=gguf, what=what), encoding="utf-8")
    return path


if __name__ == "__main__":
    from engine.train.runs import Run, runs_root

    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(card(Run(runs_root() / sys.argv[1])))
