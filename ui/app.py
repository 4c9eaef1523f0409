"""The studio's web page: Data -> Method -> Train -> Compare. Layout and wiring only.

Every handler here is a few lines that call `engine` or `rag`; training runs in a separate
process (engine/runs.py) and this page only reads its events file, so a reload or a
restart of the page loses nothing.

    studio                 # or: python -m ui.app ; then open http://127.0.0.1:7860
Environment: STUDIO_MODEL sets the model the form starts with; STUDIO_RUNS the runs
folder; GRADIO_SERVER_PORT / GRADIO_SERVER_NAME where it listens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (Hugging Face Spaces runs `python ui/app.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gradio as gr
import pandas as pd
# Imported once here, before handlers run in threads: transformers' lazy first import is not
# thread-safe ("cannot import name 'AutoTokenizer'" when two handlers import it at once).
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

from engine import demo as public_demo
from engine.config import ConfigError, RunConfig
from engine.methods import METHODS, suggested_learning_rate
from engine.models import DEFAULT_MODEL, hub_reachable
from engine.runs import Run, active_run, create_run, launch, list_runs, runs_root, stop, storage_problem
from engine.uploads import max_upload_mb
from ui.compare_tab import build_compare_tab
from ui.data_tab import build_data_tab
from ui.method_tab import advice_markdown, build_method_tab, matrix_html, ranking_markdown
from ui.runs_tab import build_runs_tab

HELP = RunConfig.help()


# ---- Train ----------------------------------------------------------------------------

def form_to_config(dataset, model, method, epochs, max_steps, learning_rate, lora_rank, batch_size,
                   max_length, trust_remote_code=False, revision="", precision="auto",
                   padding_free=False) -> RunConfig:
    """The one place where form widgets (and the Data tab's choices) become a RunConfig."""
    return RunConfig(
        model=model, data=",".join(dataset["files"]), columns=dataset.get("columns", ""),
        val_fraction=dataset.get("val_fraction", 0.0), val_data=dataset.get("val_data", ""),
        train_on=dataset.get("train_on", "assistant"), method=method, epochs=epochs,
        max_steps=int(max_steps or -1), learning_rate=learning_rate, lora_rank=int(lora_rank),
        lora_alpha=2 * int(lora_rank), batch_size=int(batch_size), max_length=int(max_length),
        trust_remote_code=bool(trust_remote_code), revision=(revision or "").strip(),
        precision=precision or "auto", padding_free=bool(padding_free),
    )


def run_config(dataset, *form) -> RunConfig:
    """The config a press of Start would run: the form's, with the public-demo caps applied."""
    return public_demo.limit(form_to_config(dataset, *form))


def start_training(dataset, *form):
    if dataset is None:
        gr.Warning("The data chosen on the Data tab has errors; fix them or use the bundled sample.")
        return gr.update()
    try:
        run = create_run(run_config(dataset, *form))
        launch(run)
    except (ConfigError, RuntimeError) as err:
        gr.Warning(str(err))
        return gr.update()
    except OSError as err:
        gr.Warning(storage_problem(err) or f"The run could not be written: {err}")
        return gr.update()
    return run.id


def config_preview(dataset, *form):
    """The run the form describes, as the YAML `studio train` reads and the commands that start it."""
    if dataset is None:
        return "# The data chosen on the Data tab has errors.", ""
    try:
        cfg = run_config(dataset, *form)
    except ConfigError as err:
        return f"# {err}", ""
    text = ("Save the YAML as `run.yaml`, then:\n\n```bash\nstudio train run.yaml\n```")
    if cfg.distributed():
        text += ("\n\nWith ZeRO, `studio train run.yaml --print-command` prints the `accelerate launch "
                 "--use_deepspeed ...` command and DeepSpeed config for this machine; add `--machines N "
                 "--machine-rank R --main-ip IP` to run it on several machines.")
    return cfg.to_yaml(), text


def _remote_code_warning(on: bool) -> None:
    if on:
        gr.Warning("The model's own Python code will run on this machine with your rights. Pin the revision "
                   "to a commit whose code you have read.")


def _minutes(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_view(run_id: str | None):
    empty = pd.DataFrame({"step": [], "loss": []})
    if not run_id:
        return "No run yet: set the form and press **Start training**.", empty
    run = Run(runs_root() / run_id)
    s = run.summary()
    logged = [r for r in run.logged() if isinstance(r.get("loss"), (int, float))]
    curve = pd.DataFrame({"step": [r["step"] for r in logged], "loss": [r["loss"] for r in logged]})
    if s["status"] == "queued":
        busy = active_run()
        ahead = f"run {busy.id} is training" if busy else "another run is starting"
        return (f"**Run {s['id']}** · queued, position {s['queue_position'] or 1}: {ahead}, and one run trains "
                "at a time on this machine. It starts by itself; Stop takes it out of the queue."), curve
    if s["status"] == "running" and not s["total_steps"]:
        return f"**Run {s['id']}** · starting: loading the model and the data ...", curve
    parts = [f"**Run {s['id']}** · {s['status']}", f"step {s['step']}/{s['total_steps'] or '?'}"]
    if s["tokens_per_s"]:
        parts.append(f"{s['tokens_per_s']:.0f} tokens/s")
    if s["status"] == "running":
        parts.append(f"{_minutes(s['eta_s'])} left")
    if isinstance(s["loss"], float):
        parts.append(f"loss {s['loss']:.3f}")
    text = " · ".join(parts)
    if s["reason"]:
        text += f"\n\n{s['reason']}"
    if s["status"] in ("finished", "stopped") and run.adapter:
        text += "\n\nAdapter saved. Next: the **Compare** tab."
    return text, curve


def current_run() -> str | None:
    run = active_run() or next(iter(list_runs()), None)
    return run.id if run else None


def stop_training(run_id):
    if run_id:
        stop(Run(runs_root() / run_id))
    return run_view(run_id)


def finished_runs():
    return [r.id for r in list_runs() if r.adapter or r.model_dir]


def refresh_runs(trained, picked):
    """Offer finished runs; pick the one just trained on this page, else keep the choice."""
    done = finished_runs()
    value = trained if trained in done else picked if picked in done else (done[0] if done else None)
    return gr.update(choices=done, value=value)


# ---- Page -----------------------------------------------------------------------------

def build() -> gr.Blocks:
    default_model = os.environ.get("STUDIO_MODEL", DEFAULT_MODEL)
    with gr.Blocks(title="Fine-tuning studio") as demo:
        gr.Markdown("# Fine-tuning studio\nUpload chat data, fine-tune with LoRA, and compare the "
                    "fine-tuned model with retrieval (RAG) on your own questions.")
        if public_demo.on():
            gr.Markdown(public_demo.NOTICE, elem_id="demo-notice")
        run_id = gr.State(None)
        # Defined here, shown on the Train tab: the Data tab's token counts use them too.
        model = gr.Textbox(default_model, label="Model", info=HELP["model"], elem_id="model", scale=3, render=False)
        max_len = gr.Number(256, label="Max length", info=HELP["max_length"], precision=0, minimum=16,
                            render=False)

        method = gr.Dropdown([(f"{k}: {v}", k) for k, v in METHODS.items()], value="lora", label="Method",
                             info="The Method tab helps choose; QLoRA and 8-bit need bitsandbytes",
                             scale=1, elem_id="method", render=False)

        with gr.Tabs() as tabs:
            with gr.Tab("1 · Data", id="data"):
                dataset, (use_sample, data_outputs, data_after, data_view) = build_data_tab(model, max_len)

            with gr.Tab("2 · Method", id="method-tab"):
                questions, advice, scenarios, ranking, best, matrix, probed = build_method_tab(model, dataset, method, tabs)

            with gr.Tab("3 · Train", id="train"):
                with gr.Row():
                    model.render()
                    method.render()
                with gr.Row():
                    epochs = gr.Number(5, label="Epochs", info=HELP["epochs"], minimum=0.1)
                    max_steps = gr.Number(-1, label="Max steps", info=HELP["max_steps"], precision=0, elem_id="max-steps")
                    lr = gr.Number(1e-3, label="Learning rate", info=HELP["learning_rate"])
                with gr.Row():
                    rank = gr.Number(16, label="LoRA rank", info=HELP["lora_rank"], precision=0, minimum=1)
                    batch = gr.Number(4, label="Batch size", info=HELP["batch_size"], precision=0, minimum=1)
                    max_len.render()
                with gr.Accordion("Advanced: speed and the model's own code", open=False):
                    with gr.Row():
                        precision = gr.Dropdown(["auto", "fp32", "bf16", "fp16"], value="auto", label="Precision",
                                                info=HELP["precision"], elem_id="precision")
                        padding_free = gr.Checkbox(False, label="Padding-free batches", info=HELP["padding_free"],
                                                   elem_id="padding-free")
                    remote = gr.Checkbox(False, label="Trust the model's own code (trust_remote_code)",
                                         info=HELP["trust_remote_code"], elem_id="remote-code")
                    revision = gr.Textbox("", label="Revision (commit hash)", info=HELP["revision"])
                with gr.Accordion("The same run from the command line", open=False):
                    preview = gr.Code("", language="yaml", label="run.yaml", elem_id="config-preview")
                    command = gr.Markdown()
                with gr.Row():
                    start_btn = gr.Button("Start training", variant="primary", elem_id="start")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.Markdown(elem_id="run-status")
                plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=320, elem_id="loss-plot")
                timer = gr.Timer(1.0)

            with gr.Tab("4 · Compare", id="compare") as compare_tab:
                run_pick, refresh_btn = build_compare_tab(run_id, model)

            with gr.Tab("5 · Runs and export", id="runs") as runs_tab:
                _, (show_history, history_outputs) = build_runs_tab()

        form = [model, method, epochs, max_steps, lr, rank, batch, max_len, remote, revision, precision, padding_free]
        remote.change(_remote_code_warning, remote, None)
        for part in (dataset, *form):
            part.change(config_preview, [dataset, *form], [preview, command], show_progress="hidden")
        runs_tab.select(show_history, None, history_outputs)
        method.change(suggested_learning_rate, method, lr)
        start_btn.click(start_training, [dataset, *form], run_id).then(run_view, run_id, [status, plot])
        # Reading the events file is cheap: progress and Stop never wait behind a long Compare.
        stop_btn.click(stop_training, run_id, [status, plot], concurrency_limit=None)
        timer.tick(run_view, run_id, [status, plot], show_progress="hidden", concurrency_limit=None)
        for event in (refresh_btn.click, compare_tab.select):
            event(refresh_runs, [run_id, run_pick], run_pick)

        def on_load():
            done = finished_runs()
            return current_run(), gr.update(choices=done, value=done[0] if done else None)

        demo.load(on_load, None, [run_id, run_pick])
        demo.load(advice_markdown, questions, advice).then(ranking_markdown, scenarios, [ranking, best]).then(
            matrix_html, [scenarios, model, probed], matrix)
        demo.load(use_sample, None, data_outputs).then(**data_after).then(**data_view)
    return demo


def main() -> int:
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # fail fast instead of waiting on a hub that is not there
    demo = build()
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(), ssr_mode=False,
        max_file_size=f"{max_upload_mb():g}mb",  # gradio refuses bigger uploads before they land
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
