"""The Train tab: the form (basic open, objectives and advanced folded), the YAML and command it stands for,
Start / Stop / Resume, and live plots of the run (loss raw, smoothed and eval; learning rate;
tokens per second; a preference objective's rewards; GRPO's reward per function, completion length, KL and
a table of sampled completions) with progress, ETA and memory. Layout and wiring only: runs are engine/train/runs.py.

    Part of the studio page: `studio` (ui/app.py builds it with `build_train_tab`).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

from engine.train.config import FORM_PRESET, LABELS, PRESETS, ConfigError, RunConfig
from engine.errors import StudioError
from engine.train.distributed import deepspeed_config, launch_command
from engine.train.methods import suggested_learning_rate
from engine.train.rewards import STARTERS
from engine.train.runs import ACTIVE, Run, active_run, launch, metrics, samples, stop, storage_problem
from engine.train.preflight import create_run, demo_limit, precision_note, precision_warning
from ui import owners
from ui.form import to_values, widget
from ui.runs_tab import finished_runs
from ui.notify import fail, refuse

LOSS_COLOURS = {"train": "#9db4f0", "train, smoothed": "#3450c4", "eval": "#e4572e"}


# The fields the Train form shows, besides the Data tab's choices; each widget is made from its field.
BASIC = ("epochs", "max_steps", "learning_rate", "lora_rank", "lora_alpha", "batch_size")
PREFERENCE = ("objective", "beta", "loss_type", "init_from", "max_prompt_length", "kto_from_pairs")
GRPO = ("num_generations", "max_completion_length", "temperature", "grpo_loss", "sample_every")
STARTER = next(iter(STARTERS))
SAMPLE_COLUMNS = ["step", "prompt", "completion", "reference", "rewards", "total"]
REWARD_COLOURS = {"total": "#3450c4", "total - spread": "#c9d3f5", "total + spread": "#c9d3f5"}
ADVANCED = ("zero_stage", "num_processes", "offload", "precision", "force_precision", "padding_free", "packing",
            "trust_remote_code", "revision")


def form_to_config(dataset, values: dict) -> RunConfig:
    """The one place where the form's values (and the Data tab's choices) become a RunConfig: the form's
    preset, then what the form says; an empty or 0 max steps trains for the epochs."""
    values = {k: v for k, v in values.items() if v is not None}
    if values.get("objective") != "grpo":  # the rewards box is GRPO's alone
        values.pop("rewards", None)
    if not values.get("max_steps"):
        values["max_steps"] = -1
    if "revision" in values:
        values["revision"] = (values["revision"] or "").strip()
    return RunConfig.preset(FORM_PRESET, **values, data=list(dataset["files"]), columns=dataset.get("columns", ""),
                            val_fraction=dataset.get("val_fraction", 0.0), val_data=dataset.get("val_data", ""),
                            train_on=dataset.get("train_on", "assistant"))


def run_config(dataset, values: dict) -> RunConfig:
    """The config a press of Start would run: the form's, with the public-demo caps applied."""
    return demo_limit(form_to_config(dataset, values))


def start_training(dataset, values: dict, request: gr.Request = None):
    if dataset is None:
        refuse("The data chosen on the Data tab has errors; fix them or use the bundled sample.")
        return gr.update()
    who = owners.person(request)
    busy = owners.may_start(who)
    if busy:
        refuse(busy)
        return gr.update()
    try:
        values["model"] = owners.model_of(who, values.get("model"))  # only a model this person may load
        cfg = run_config(dataset, values)
        owners.run_of(who, cfg.init_from)  # only from a run of one's own
        # a custom reward (a file's code) is refused from the page
        run = create_run(cfg, from_page=True, owner=who.owner)
        launch(run)
        if precision_warning(cfg):
            refuse(precision_warning(cfg))
        if owners.waits_note(who):
            gr.Info(owners.waits_note(who))
    except StudioError as err:
        refuse(str(err))
        return gr.update()
    except OSError as err:
        refuse(storage_problem(err) or f"The run could not be written: {err}")
        return gr.update()
    return run.id


def resume_training(run_id, request: gr.Request = None):
    """Continue the shown run from its last checkpoint (a stopped, failed or interrupted one)."""
    if not run_id:
        refuse("No run to resume yet: start one first.")
        return run_id
    who = owners.person(request)
    run = owners.run_of(who, run_id)
    status = run.status()
    busy = owners.may_start(who) if status not in ACTIVE and status != "finished" else None
    if status in ACTIVE:
        gr.Info(f"Run {run_id} is already {status}.")
    elif status == "finished":
        refuse(f"Run {run_id} has finished; press Start training for a new run.")
    elif busy:
        refuse(busy)
    else:
        try:
            launch(run)
        except StudioError as err:
            refuse(str(err))
        except OSError as err:
            refuse(storage_problem(err) or f"The run could not be resumed: {err}")
    return run_id


def config_preview(dataset, values: dict, request: gr.Request = None):
    """The run the form describes, as the YAML `studio train` reads and the commands that start it."""
    if dataset is None:
        return "# The data chosen on the Data tab has errors.", "", ""
    try:
        owners.model_of(request, values.get("model"))  # the YAML shows what was typed; Start loads the checked one
        cfg = run_config(dataset, values)
    except gr.Error as err:
        return f"# {err.message}", "", ""
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
    preset = ", ".join(f"{k} {v}" for k, v in PRESETS[FORM_PRESET].items())
    head = f"# The form starts from the preset {FORM_PRESET!r} ({preset}); the rest are RunConfig's defaults.\n"
    return head + cfg.to_yaml(), text, f"**Precision here:** {precision_note(cfg)}"


def _remote_code_warning(on: bool) -> None:
    if on:
        refuse("The model's own Python code will run on this machine with your rights. Pin the revision "
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
        # whose turn is next, without naming anyone else's run
        ahead = (f"run {busy.id} is training" if busy and busy.owner == run.owner else
                 "another person's run is training" if busy else "another run is starting")
        return (f"**Run {s['id']}** · queued, position {s['queue_position'] or 1}: {ahead}, and one run trains "
                "at a time on this machine. It starts by itself; Stop takes it out of the queue.")
    if s["status"] == "stopping":
        st = s["stopping"]
        if st is None or not st.training:
            return f"**Run {s['id']}** · stopping: it was still starting, so it ends at once ..."
        left = max(1, round((st.expected_s or 0) - (time.time() - st.time)))
        return (f"**Run {s['id']}** · stopping: finishing step {st.step or '?'} and saving a checkpoint, "
                f"about {_minutes(left)} (it is ended if it has not finished in {_minutes(st.grace_s)}).")
    if s["status"] == "running" and not s["total_steps"]:
        return f"**Run {s['id']}** · starting: loading the model and the data ..."
    parts = [f"**Run {s['id']}** · {s['status']}", f"step {s['step']}/{s['total_steps'] or '?'}"]
    if s["tokens_per_s"]:
        parts.append(f"{s['tokens_per_s']:.0f} tokens/s")
    if s["status"] == "running":
        parts.append(f"{_minutes(s['eta_s'])} left")
    if isinstance(s["loss"], float):
        parts.append(f"loss {s['loss']:.3f}")
    if s.get("rewards_accuracy") is not None:
        parts.append(f"reward accuracy {s['rewards_accuracy']:.2f}")
    if s.get("rewards_margin") is not None:
        parts.append(f"reward margin {s['rewards_margin']:.3f}")
    if s.get("reward") is not None:
        parts.append(f"reward {s['reward']:.2f} ± {s['reward_std'] or 0:.2f}")
    if s.get("generate_share") is not None:
        parts.append(f"{s['generate_share']:.0%} of the step generating")
    if s.get("memory_mb"):
        parts.append(f"peak memory {s['memory_mb'] / 1024:.2f} GiB")
    text = " · ".join(parts)
    if s["reason"]:
        text += f"\n\n{s['reason']}"
    for warning in s["warnings"]:
        text += f"\n\nWarning: {warning.removeprefix('warning: ')}"
    if s["status"] in ("stopped", "failed", "interrupted"):
        text += "\n\n**Resume** continues it from its last checkpoint."
    if s["status"] in ("finished", "stopped") and run.adapter:
        text += "\n\nAdapter saved. Next: the **Compare** tab, or **Runs and export** to download it."
    return text


NO_RUN = "No run yet: set the form and press **Start training**."


def run_view(run_id: str | None, smoothing: float = 0.6, request: gr.Request = None):
    """The status line and the plots of a run: (text, loss, learning rate, tokens/s, whether the preference
    plots show, rewards, reward accuracy, log-odds ratio, whether GRPO's show, its rewards, completion length,
    KL, sampled completions)."""
    if not run_id:
        return (NO_RUN, *[gr.update()] * PLOTS)
    run = owners.run_of(request, run_id)
    return (status_text(run), *_plots(run, smoothing))


def _plots(run: Run, smoothing: float) -> list:
    m = metrics(run, float(smoothing or 0))
    preference = bool(m["rewards"] or m["log_odds_ratio"])
    grpo = bool(m["grpo_reward"])
    table = pd.DataFrame(samples(run), columns=SAMPLE_COLUMNS) if grpo else gr.update()
    return [_frame(m["loss"], series=True), _frame(m["learning_rate"]), _frame(m["tokens_per_s"]),
            gr.update(visible=preference),
            *(_shown(m[name]) for name in ("rewards", "reward_accuracy", "log_odds_ratio")),
            gr.update(visible=grpo), _reward_plot(m["grpo_reward"]),
            *(_shown(m[name]) for name in ("completion_length", "kl")),
            gr.update(value=table, visible=grpo) if grpo else gr.update(visible=False)]


PLOTS = 12  # what _plots returns
FUNCTION_COLOURS = ["#e4572e", "#29a36a", "#f2a541", "#8e44ad", "#17a2b8", "#6c757d"]


def _reward_plot(rows: list[dict]):
    """GRPO's reward plot: the total dark, its spread pale, each reward function in a colour of its own."""
    if not rows:
        return gr.update(visible=False)
    names = [n for n in dict.fromkeys(r["series"] for r in rows) if n not in REWARD_COLOURS]
    colours = {**REWARD_COLOURS, **{n: FUNCTION_COLOURS[i % len(FUNCTION_COLOURS)] for i, n in enumerate(names)}}
    return gr.update(value=_frame(rows, series=True), color_map=colours, visible=True)


def poll_view(run_id: str | None, smoothing: float, seen: dict | None, request: gr.Request = None):
    """The timer's view, each second: only what changed since this page last drew it, and the new `seen`.

    The plots are redrawn when the run's events file changed (or another run or smoothing is picked), the
    status line when its text did; an open page on a finished run sends nothing. Before, every open tab
    was sent every point of its run's seven plots each second, a payload that grows with the run's length."""
    seen = seen or {}
    run = owners.run_of(request, run_id)
    text, stamp = (status_text(run), (run_id, float(smoothing or 0), *_stamp(run))) if run else (NO_RUN, None)
    plots = [gr.skip()] * PLOTS if run is None or stamp == seen.get("plots") else _plots(run, smoothing)
    return (gr.skip() if text == seen.get("status") else text, *plots, {"plots": stamp, "status": text})


def _stamp(run: Run) -> tuple:
    """When and how far the run's events file was last written; (None, None) before it has one."""
    try:
        stat = run.events.path.stat()
    except OSError:
        return None, None
    return stat.st_mtime_ns, stat.st_size


def _shown(rows: list[dict]):
    """A preference plot with its series, or hidden where the objective logs none (KTO has no accuracy,
    only ORPO a log-odds ratio)."""
    return gr.update(value=_frame(rows, series=True), visible=True) if rows else gr.update(visible=False)


def run_status(run_id: str, request: gr.Request = None) -> str:
    """A run's status line, for API clients (`/run_status`); the id must be one of this person's runs."""
    if not run_id:
        fail("There is no run without a name; name one of yours.")
    return status_text(owners.run_of(request, run_id))


def current_run(request: gr.Request = None) -> str | None:
    """The run the Train tab opens on: this person's run in training, else their newest."""
    who = owners.person(request)
    mine = owners.runs(who)
    if not who.admin or owners.shared():
        mine = [r for r in mine if r.owner == who.owner]  # an admin's page opens on their own
    run = next((r for r in mine if r.status() == "running"), None) or next(iter(mine), None)
    return run.id if run else None


def stop_training(run_id, smoothing=0.6, request: gr.Request = None):
    if run_id:
        # the status line shows "stopping" until it has ended; an admin may stop anyone's run
        stop(owners.run_of(request, run_id), wait=False)
    return run_view(run_id, smoothing, request)


def build_train_tab(tab, model, method, max_len, dataset, run_id):
    """The Train tab's layout and events (`tab` is the gr.Tab it is built in). `model`, `method` and
    `max_len` are made by the page (the Data tab reads them too); every other field here by ui/form.py."""
    form = {"model": model, "method": method, "max_length": max_len}
    with gr.Row():
        model.render()
        method.render()
    with gr.Row():
        for name in BASIC[:3]:
            form[name] = widget(name)
    with gr.Row():
        for name in BASIC[3:]:
            form[name] = widget(name)
        max_len.render()
    with gr.Accordion("Objective: supervised, from preferences (DPO, ORPO, KTO, SimPO), or from rewards (GRPO)", open=False):
        with gr.Row():
            for name in PREFERENCE[:3]:
                form[name] = widget(name)
        with gr.Row():
            # a finished run to start from: picked from the runs, or typed
            form["init_from"] = gr.Dropdown(
                [""], value="", allow_custom_value=True, label=LABELS["init_from"],
                info=RunConfig.help()["init_from"], elem_id="init-from")
            for name in PREFERENCE[4:]:
                form[name] = widget(name)
    with gr.Accordion("GRPO: learn from rewards a program checks (objective grpo)", open=False):
        gr.Markdown("The model writes *Completions per prompt* answers to each prompt; the rewards score them, and "
                    "each answer is pushed up or down by how it scored against the others. Prompts come from the "
                    "Data tab (a `prompt`, with an `answer` where a reward checks one).")
        with gr.Row():
            for name in GRPO[:3]:
                form[name] = widget(name)
        with gr.Row():
            for name in GRPO[3:]:
                form[name] = widget(name)
            starter = gr.Dropdown(list(STARTERS), value=STARTER, label="Start the rewards from",
                                  elem_id="reward-starter")
        form["rewards"] = gr.Code(yaml.safe_dump(STARTERS[STARTER], sort_keys=False), language="yaml",
                                  label=LABELS["rewards"], elem_id="rewards", interactive=True)
        gr.Markdown(RunConfig.help()["rewards"] + " A custom reward runs a file's code, so it is taken from a YAML "
                    "config or the command line only, never from this page.")
    with gr.Accordion("Advanced: speed, several GPUs (ZeRO) and the model's own code", open=False):
        with gr.Row():
            for name in ADVANCED[:3]:
                form[name] = widget(name)
        with gr.Row():
            for name in ADVANCED[3:7]:
                form[name] = widget(name)
        precision_info = gr.Markdown(elem_id="precision-note")
        for name in ADVANCED[7:]:
            form[name] = widget(name)
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
    with gr.Row(visible=False) as preference_plots:
        rewards_plot = gr.LinePlot(x="step", y="value", color="series", title="Rewards (chosen, rejected, margin)",
                                   y_title="reward", height=240, elem_id="rewards-plot")
        accuracy_plot = gr.LinePlot(x="step", y="value", color="series", title="Reward accuracy",
                                    y_title="chosen over rejected", height=240, elem_id="reward-accuracy-plot")
        odds_plot = gr.LinePlot(x="step", y="value", color="series", title="Log-odds ratio (ORPO)",
                                y_title="log-odds ratio", height=240, elem_id="log-odds-plot")
    with gr.Column(visible=False) as grpo_plots:
        with gr.Row():
            reward_plot = gr.LinePlot(x="step", y="value", color="series", color_map=REWARD_COLOURS,
                                      title="Reward: total (mean and spread) and each function's mean",
                                      y_title="reward", height=260, elem_id="grpo-reward-plot")
            length_plot = gr.LinePlot(x="step", y="value", color="series", title="Completion length",
                                      y_title="tokens", height=260, elem_id="completion-length-plot")
            kl_plot = gr.LinePlot(x="step", y="value", color="series", title="KL to the start (beta > 0)",
                                  y_title="KL", height=260, elem_id="kl-plot")
        sample_table = gr.Dataframe(headers=SAMPLE_COLUMNS, label="Sampled completions and their rewards "
                                    "(newest first)", wrap=True, elem_id="grpo-samples", interactive=False)
    smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing of the train loss",
                          info="Exponential moving average, as TensorBoard draws it; 0 shows the raw loss only.")
    timer = gr.Timer(1.0)

    # Handlers take the form as a set of components, so they read values by field name, not by position.
    inputs = {dataset, *form.values()}

    def read(got: dict):
        return got[dataset], to_values(form, got)

    view = [status, plot, lr_plot, speed_plot, preference_plots, rewards_plot, accuracy_plot, odds_plot,
            grpo_plots, reward_plot, length_plot, kl_plot, sample_table]
    starter.change(lambda name: yaml.safe_dump(STARTERS[name], sort_keys=False) if name in STARTERS else gr.update(),
                   starter, form["rewards"], show_progress="hidden")
    form["trust_remote_code"].change(_remote_code_warning, form["trust_remote_code"], None)
    def preview_of(got, request: gr.Request):
        return config_preview(*read(got), request=request)

    for event in (tab.select, *(part.change for part in (dataset, *form.values()))):  # shown on opening the tab
        event(preview_of, inputs, [preview, command, precision_info], show_progress="hidden")
    for part in (method, form["objective"]):  # a new method or objective starts from its own rate
        part.change(suggested_learning_rate, [method, form["objective"]], form["learning_rate"],
                    show_progress="hidden")
    def init_choices(picked, request: gr.Request):
        return gr.update(choices=[""] + finished_runs(request), value=picked or "")

    def start(got, request: gr.Request):
        return start_training(*read(got), request=request)

    tab.select(init_choices, form["init_from"], form["init_from"], show_progress="hidden")
    start_btn.click(start, inputs, run_id).then(
        run_view, [run_id, smoothing], view)
    resume_btn.click(resume_training, run_id, run_id).then(run_view, [run_id, smoothing], view)
    # Reading the events file is cheap: progress and Stop never wait behind a long Compare.
    stop_btn.click(stop_training, [run_id, smoothing], view, concurrency_limit=None)
    smoothing.change(run_view, [run_id, smoothing], view, show_progress="hidden")
    drawn = gr.State(None)  # what this page's timer last drew (poll_view)
    timer.tick(poll_view, [run_id, smoothing, drawn], [*view, drawn], show_progress="hidden",
               concurrency_limit=None)
    gr.api(run_status, api_name="run_status", concurrency_limit=None)
    return form
