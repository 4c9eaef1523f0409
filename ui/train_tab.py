"""The Train tab: the form (basic open, advanced folded), the YAML and command it stands for,
Start / Stop / Resume, and live plots of the run (loss raw, smoothed and eval; learning rate;
tokens per second) with progress, ETA and memory. Layout and wiring only: runs are engine/runs.py.

    Part of the studio page: `studio` (ui/app.py builds it with `build_train_tab`).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from engine import demo as public_demo
from engine.config import ConfigError, RunConfig
from engine.distributed import deepspeed_config, launch_command
from engine.methods import precision_note, precision_warning, suggested_learning_rate
from engine.runs import ACTIVE, Run, active_run, create_run, launch, list_runs, metrics, runs_root, stop, storage_problem

HELP = RunConfig.help()
LOSS_COLOURS = {"train": "#9db4f0", "train, smoothed": "#3450c4", "eval": "#e4572e"}


def form_to_config(dataset, model, method, epochs, max_steps, learning_rate, lora_rank, batch_size,
                   max_length, trust_remote_code=False, revision="", precision="auto",
                   padding_free=False, zero_stage=0, num_processes=1, offload="none", packing=False) -> RunConfig:
    """The one place where form widgets (and the Data tab's choices) become a RunConfig."""
    return RunConfig(
        model=model, data=list(dataset["files"]), columns=dataset.get("columns", ""),
        val_fraction=dataset.get("val_fraction", 0.0), val_data=dataset.get("val_data", ""),
        train_on=dataset.get("train_on", "assistant"), method=method, epochs=epochs,
        max_steps=int(max_steps or -1), learning_rate=learning_rate, lora_rank=int(lora_rank),
        lora_alpha=2 * int(lora_rank), batch_size=int(batch_size), max_length=int(max_length),
        trust_remote_code=bool(trust_remote_code), revision=(revision or "").strip(),
        precision=precision or "auto", padding_free=bool(padding_free),
        zero_stage=int(zero_stage or 0), num_processes=int(num_processes or 1), offload=offload or "none",
        packing=bool(packing),
    )


def run_config(dataset, *form) -> RunConfig:
    """The config a press of Start would run: the form's, with the public-demo caps applied."""
    return public_demo.limit(form_to_config(dataset, *form))


def start_training(dataset, *form):
    if dataset is None:
        gr.Warning("The data chosen on the Data tab has errors; fix them or use the bundled sample.")
        return gr.update()
    try:
        cfg = run_config(dataset, *form)
        run = create_run(cfg)
        launch(run)
        if precision_warning(cfg):
            gr.Warning(precision_warning(cfg))
    except (ConfigError, RuntimeError) as err:
        gr.Warning(str(err))
        return gr.update()
    except OSError as err:
        gr.Warning(storage_problem(err) or f"The run could not be written: {err}")
        return gr.update()
    return run.id


def resume_training(run_id):
    """Continue the shown run from its last checkpoint (a stopped, failed or interrupted one)."""
    if not run_id:
        gr.Warning("No run to resume yet: start one first.")
        return run_id
    run = Run(runs_root() / run_id)
    status = run.status()
    if status in ACTIVE:
        gr.Info(f"Run {run_id} is already {status}.")
    elif status == "finished":
        gr.Warning(f"Run {run_id} has finished; press Start training for a new run.")
    else:
        try:
            launch(run)
        except RuntimeError as err:
            gr.Warning(str(err))
        except OSError as err:
            gr.Warning(storage_problem(err) or f"The run could not be resumed: {err}")
    return run_id


def config_preview(dataset, *form):
    """The run the form describes, as the YAML `studio train` reads and the commands that start it."""
    if dataset is None:
        return "# The data chosen on the Data tab has errors.", "", ""
    try:
        cfg = run_config(dataset, *form)
    except ConfigError as err:
        return f"# {err}", "", ""
    text = ("Save the YAML as `run.yaml`, then:\n\n```bash\nstudio train run.yaml\n```")
    if cfg.distributed():
        cmd = launch_command(cfg, Path("run.yaml"), Path("ds_config.json"), port=29500)
        cmd = shlex.join(["python", *cmd[1:]])
        text += ("\n\nWhich starts, with ZeRO (the DeepSpeed config below saved as `ds_config.json`):\n\n"
                 f"```bash\n{cmd}\n```\n\n```json\n{json.dumps(deepspeed_config(cfg), indent=2)}\n```\n\n"
                 "For several machines, `studio train run.yaml --print-command --machines N --machine-rank R "
                 "--main-ip IP` prints the command to run on each.")
    return cfg.to_yaml(), text, f"**Precision here:** {precision_note(cfg)}"


def _remote_code_warning(on: bool) -> None:
    if on:
        gr.Warning("The model's own Python code will run on this machine with your rights. Pin the revision "
                   "to a commit whose code you have read.")


def _minutes(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _frame(rows: list[dict], series: bool = False):
    """Rows as a typed frame for a plot; no change while there are none (a plot keeps the types it first saw)."""
    if not rows:
        return gr.update()
    frame = pd.DataFrame(rows).astype({"step": int, "value": float})
    return frame.astype({"series": str}) if series else frame


def status_text(run: Run) -> str:
    s = run.summary()
    if s["status"] == "queued":
        busy = active_run()
        ahead = f"run {busy.id} is training" if busy else "another run is starting"
        return (f"**Run {s['id']}** · queued, position {s['queue_position'] or 1}: {ahead}, and one run trains "
                "at a time on this machine. It starts by itself; Stop takes it out of the queue.")
    if s["status"] == "stopping":
        st = s["stopping"] or {}
        if not st.get("training"):
            return f"**Run {s['id']}** · stopping: it was still starting, so it ends at once ..."
        left = max(1, round((st.get("expected_s") or 0) - (time.time() - st.get("time", time.time()))))
        return (f"**Run {s['id']}** · stopping: finishing step {st.get('step') or '?'} and saving a checkpoint, "
                f"about {_minutes(left)} (it is ended if it has not finished in {_minutes(st.get('grace_s'))}).")
    if s["status"] == "running" and not s["total_steps"]:
        return f"**Run {s['id']}** · starting: loading the model and the data ..."
    parts = [f"**Run {s['id']}** · {s['status']}", f"step {s['step']}/{s['total_steps'] or '?'}"]
    if s["tokens_per_s"]:
        parts.append(f"{s['tokens_per_s']:.0f} tokens/s")
    if s["status"] == "running":
        parts.append(f"{_minutes(s['eta_s'])} left")
    if isinstance(s["loss"], float):
        parts.append(f"loss {s['loss']:.3f}")
    if s.get("memory_mb"):
        parts.append(f"peak memory {s['memory_mb'] / 1024:.2f} GiB")
    text = " · ".join(parts)
    if s["reason"]:
        text += f"\n\n{s['reason']}"
    if s["status"] in ("stopped", "failed", "interrupted"):
        text += "\n\n**Resume** continues it from its last checkpoint."
    if s["status"] in ("finished", "stopped") and run.adapter:
        text += "\n\nAdapter saved. Next: the **Compare** tab, or **Runs and export** to download it."
    return text


def run_view(run_id: str | None, smoothing: float = 0.6):
    """The status line and the three plots of a run: (text, loss, learning rate, tokens/s)."""
    if not run_id:
        return ("No run yet: set the form and press **Start training**.", gr.update(), gr.update(), gr.update())
    run = Run(runs_root() / run_id)
    m = metrics(run, float(smoothing or 0))
    return (status_text(run), _frame(m["loss"], series=True), _frame(m["learning_rate"]),
            _frame(m["tokens_per_s"]))


def run_status(run_id: str) -> str:
    """A run's status line, for API clients (`/run_status`); the id must be one of the runs listed."""
    if run_id not in {r.id for r in list_runs()}:
        raise gr.Error(f"There is no run {run_id!r}; `studio runs` lists them.")
    return status_text(Run(runs_root() / run_id))


def current_run() -> str | None:
    run = active_run() or next(iter(list_runs()), None)
    return run.id if run else None


def stop_training(run_id, smoothing=0.6):
    if run_id:
        stop(Run(runs_root() / run_id), wait=False)  # the status line shows "stopping" until it has ended
    return run_view(run_id, smoothing)


def build_train_tab(tab, model, method, max_len, dataset, run_id):
    """The Train tab's layout and events (`tab` is the gr.Tab it is built in)."""
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
    with gr.Accordion("Advanced: speed, several GPUs (ZeRO) and the model's own code", open=False):
        with gr.Row():
            zero = gr.Dropdown([0, 1, 2, 3], value=0, label="ZeRO stage", info=HELP["zero_stage"], elem_id="zero")
            processes = gr.Number(1, label="Processes (GPUs)", info=HELP["num_processes"], precision=0, minimum=1)
            offload = gr.Dropdown(["none", "optimizer", "all"], value="none", label="Offload", info=HELP["offload"])
        with gr.Row():
            precision = gr.Dropdown(["auto", "fp32", "bf16", "fp16"], value="auto", label="Precision",
                                    info=HELP["precision"], elem_id="precision")
            padding_free = gr.Checkbox(False, label="Padding-free batches", info=HELP["padding_free"],
                                       elem_id="padding-free")
            packing = gr.Checkbox(False, label="Packing", info=HELP["packing"], elem_id="packing")
        precision_info = gr.Markdown(elem_id="precision-note")
        remote = gr.Checkbox(False, label="Trust the model's own code (trust_remote_code)",
                             info=HELP["trust_remote_code"], elem_id="remote-code")
        revision = gr.Textbox("", label="Revision (commit hash)", info=HELP["revision"])
    with gr.Accordion("The same run from the command line", open=False):
        preview = gr.Code("", language="yaml", label="run.yaml", elem_id="config-preview")
        command = gr.Markdown()
    with gr.Row():
        start_btn = gr.Button("Start training", variant="primary", elem_id="start")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
        resume_btn = gr.Button("Resume", elem_id="resume")
    status = gr.Markdown(elem_id="run-status")
    plot = gr.LinePlot(x="step", y="value", color="series", color_map=LOSS_COLOURS, title="Loss", y_title="loss",
                       height=320, elem_id="loss-plot")
    with gr.Row():
        lr_plot = gr.LinePlot(x="step", y="value", title="Learning rate", y_title="learning rate", height=220,
                              elem_id="lr-plot")
        speed_plot = gr.LinePlot(x="step", y="value", title="Tokens per second", y_title="tokens/s", height=220,
                                 elem_id="speed-plot")
    smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing of the train loss",
                          info="Exponential moving average, as TensorBoard draws it; 0 shows the raw loss only.")
    timer = gr.Timer(1.0)

    form = [model, method, epochs, max_steps, lr, rank, batch, max_len, remote, revision, precision, padding_free,
            zero, processes, offload, packing]
    view = [status, plot, lr_plot, speed_plot]
    remote.change(_remote_code_warning, remote, None)
    for event in (tab.select, *(part.change for part in (dataset, *form))):  # shown at once on opening the tab
        event(config_preview, [dataset, *form], [preview, command, precision_info], show_progress="hidden")
    method.change(suggested_learning_rate, method, lr)
    start_btn.click(start_training, [dataset, *form], run_id).then(run_view, [run_id, smoothing], view)
    resume_btn.click(resume_training, run_id, run_id).then(run_view, [run_id, smoothing], view)
    # Reading the events file is cheap: progress and Stop never wait behind a long Compare.
    stop_btn.click(stop_training, [run_id, smoothing], view, concurrency_limit=None)
    smoothing.change(run_view, [run_id, smoothing], view, show_progress="hidden")
    timer.tick(run_view, [run_id, smoothing], view, show_progress="hidden", concurrency_limit=None)
    gr.api(run_status, api_name="run_status", concurrency_limit=None)
