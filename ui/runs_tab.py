"""The Runs tab: the history of runs (kept in the run folders, so it survives a restart), loss
curves of several runs over each other, the config fields they differ in, and the exports of
one run (adapter or merged model as a zip, ONNX, GGUF with an Ollama Modelfile, push to the Hub) with
progress, and the command that serves it behind an OpenAI-compatible endpoint.

    Part of the studio page: `studio` (ui/app.py builds it with `build_runs_tab`).
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.export.archive import archive, export_onnx, push_to_hub
from engine.errors import StudioError
from engine.export.gguf import QUANTS, export_gguf
from engine import owners as engine_owners
from ui import owners
from ui.files import servable
from ui.notify import refuse
from engine.train.runs import ACTIVE, config_diff, curves, history, stop
from engine.advise.decisions import list_decisions

COLUMNS = ["run", "status", "model", "method", "objective", "data", "final loss", "steps", "minutes"]


def finished_runs(request: gr.Request | None = None):
    """The ids of the finished runs this person may use."""
    return owners.run_ids(request, finished=True)


def history_view(request: gr.Request):
    who = owners.person(request)
    rows = history(owner=None if who.admin else who.owner)
    table = pd.DataFrame(rows, columns=COLUMNS)
    ids = [r["run"] for r in rows]
    return table, gr.update(choices=ids), gr.update(choices=ids, value=ids[0] if ids else None)


def overlay(run_ids, request: gr.Request):
    who = owners.person(request)
    run_ids = [owners.run_of(who, r).id for r in run_ids or []]
    # Never an empty frame: the plot keeps the axis types and colours of the first data it gets.
    points = pd.DataFrame(curves(run_ids), columns=["run", "step", "loss"]).astype(
        {"run": str, "step": int, "loss": float}) if run_ids else gr.update()
    diff = pd.DataFrame(config_diff(run_ids), columns=["field", *run_ids]) if len(run_ids) > 1 else \
        pd.DataFrame(columns=["field"])
    note = ("Pick two or more runs to see the settings they differ in." if len(run_ids) < 2 else
            "The runs have the same settings." if diff.empty else f"{len(diff)} settings differ.")
    return points, diff, note


def _progress(progress):
    return lambda fraction, text: progress(fraction, desc=text)


def export(run_id, what, request: gr.Request, progress=gr.Progress()):
    """A zip of the adapter (or the merged model) to download."""
    if not run_id:
        return None, refuse("Pick a run first.")
    run = owners.run_of(request, run_id)
    try:
        zipped = archive(run, what, _progress(progress))
        return servable(zipped), f"Zip of the {what} is ready."
    except (StudioError, OSError) as err:
        return None, refuse(err)


def onnx(run_id, request: gr.Request, progress=gr.Progress()):
    if not run_id:
        return None, refuse("Pick a run first.")
    run = owners.run_of(request, run_id)
    try:
        path, gap = export_onnx(run, _progress(progress))
    except (StudioError, OSError) as err:
        return None, refuse(err)
    return None, f"ONNX model written to `{Path(path).relative_to(run.dir)}` in run {run.id}; ONNX Runtime's logits differ from PyTorch's by at most {gap:.1e}."


def gguf(run_id, quant, request: gr.Request, progress=gr.Progress()):
    """A GGUF for llama.cpp / Ollama with its Modelfile, checked by loading it back."""
    if not run_id:
        return None, refuse("Pick a run first.")
    run = owners.run_of(request, run_id)
    try:
        path, check = export_gguf(run, quant, _progress(progress))
    except (StudioError, OSError) as err:
        return None, refuse(err)
    return servable(path), (f"GGUF ({quant}) written to `{Path(path).name}`, with a `Modelfile` beside it "
                            f"(`ollama create {run_id.lower()} -f Modelfile`). Round trip through transformers: "
                            f"{check.describe()}.")


def serve_command(run_id, request: gr.Request = None) -> str:
    """How to serve the picked run (or the base model) behind an OpenAI-compatible endpoint."""
    run_id = owners.run_of(request, run_id).id if run_id else None
    target = f" {run_id}" if run_id else ""
    model = run_id or "the base model's id"
    return (f"Serve it for any OpenAI client (one copy of the base weights; more run ids may follow):\n\n"
            f"```sh\nstudio serve{target} --port 8000\n```\n\nthen `base_url=\"http://127.0.0.1:8000/v1\"`, "
            f"`model=\"{model}\"`.")


def push(run_id, repo, what, request: gr.Request, progress=gr.Progress()):
    run = owners.run_of(request, run_id)
    if run is None or not (repo or "").strip():
        return None, refuse("Pick a run and type a repository as user/name.")
    if not os.environ.get("HF_TOKEN"):
        return None, refuse("Set HF_TOKEN (a Space secret, or the environment) to push to the Hub.")
    try:
        url = push_to_hub(run, repo.strip(), what=what, progress=_progress(progress))
    # The Hub's own errors (a bad token, a repository of someone else) are HTTP errors: OSError, ValueError.
    except (StudioError, OSError, ValueError) as err:
        return None, refuse(err)
    return None, f"Pushed to {url} (private)."


def stop_picked(run_id, request: gr.Request):
    """Stop the picked run (an admin: anyone's, to free the machine)."""
    if not run_id:
        return None, refuse("Pick a run first.")
    run = owners.run_of(request, run_id)
    if run.status() not in ACTIVE:
        return None, refuse(f"Run {run.id} is {run.status()}; there is nothing to stop.")
    stop(run, wait=False)
    return None, f"Run {run.id} is stopping: it saves a checkpoint and ends; Resume continues from it."


def give_run(run_id, new_owner, request: gr.Request):
    """An admin hands the picked run to another owner (runs made before owners existed are the local owner's)."""
    who = owners.person(request)
    if not who.admin:
        return None, refuse("Only an admin can hand a run over.")
    run = owners.run_of(who, run_id)
    if run is None:
        return None, refuse("Pick a run first.")
    new_owner = (new_owner or "").strip()
    if not engine_owners.valid(new_owner):
        return None, refuse(f"{new_owner!r} is not an owner: local, user:NAME (an account) or hf:NAME "
                            "(a Hugging Face user).")
    engine_owners.claim(run.dir, new_owner)
    return None, f"Run {run.id} is now {new_owner}'s."


def decision_ids(request: gr.Request = None):
    """The person's saved decision reports, newest first, with their status."""
    found = list_decisions(owners.person(request).owner)
    return gr.update(choices=[(f"{d.id} ({d.status()})", d.id) for d in found], value=found[0].id if found else None)


def decision_markdown(decision_id: str | None, request: gr.Request = None) -> str:
    mine = {d.id: d for d in list_decisions(owners.person(request).owner)}
    d = mine.get(decision_id or "")
    if d is None:
        return ""
    return d.markdown() or f"{d.id} is {d.status()}; its report is written when it ends."


def build_runs_tab():
    """The Runs tab's layout and events; returns (Open-in-Compare button, run picked for export) and
    (the history function, its outputs) for the page to wire."""
    gr.Markdown("Your runs on this machine, newest first (they survive a restart). Pick runs to draw their "
                "loss curves together and see the settings they differ in; export one below.")
    refresh = gr.Button("Refresh", scale=0, elem_id="runs-refresh")
    table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), interactive=False, elem_id="runs-table")
    picked = gr.Dropdown([], multiselect=True, label="Runs to compare", elem_id="runs-picked")
    plot = gr.LinePlot(x="step", y="loss", color="run", title="Training loss", height=300, elem_id="runs-plot")
    note = gr.Markdown()
    diff = gr.Dataframe(pd.DataFrame(columns=["field"]), interactive=False, label="Settings that differ",
                        elem_id="runs-diff")
    gr.Markdown("### Export\nDownload the adapter or the merged model, write an ONNX model, or push to the "
                "Hugging Face Hub (token from `HF_TOKEN`; the repository is private).")
    gr.Markdown("GGUF runs in llama.cpp, Ollama and LM Studio: the merged model is converted with llama.cpp's own "
                "converter and checked by loading it back. Every export carries a README model card.")
    with gr.Row():
        one = gr.Dropdown([], label="Run", elem_id="export-run")
        what = gr.Radio(["adapter", "merged"], value="adapter", label="What")
        repo = gr.Textbox("", label="Hub repository (user/name)")
        quant = gr.Dropdown(list(QUANTS), value="f16", label="GGUF number format", elem_id="export-quant")
    with gr.Row():
        open_btn = gr.Button("Open in Compare", elem_id="open-compare")
        zip_btn = gr.Button("Zip for download", elem_id="export-zip")
        onnx_btn = gr.Button("ONNX")
        gguf_btn = gr.Button("GGUF for llama.cpp / Ollama", elem_id="export-gguf")
        push_btn = gr.Button("Push to the Hub")
        stop_btn = gr.Button("Stop this run", variant="stop", elem_id="runs-stop")
    with gr.Accordion("Admin: hand the picked run to someone", open=False):
        with gr.Row():
            new_owner = gr.Textbox("", label="New owner (user:NAME, hf:NAME or local)", elem_id="give-owner")
            give_btn = gr.Button("Hand it over", scale=0, elem_id="give-run")
    file = gr.File(label="Download", elem_id="export-file")
    done = gr.Markdown(elem_id="export-status")
    serve = gr.Markdown(serve_command(None), elem_id="serve-command")
    with gr.Accordion("Measured decisions: fine-tune, RAG, or both? (Method tab)", open=False) as decided:
        decisions = gr.Dropdown([], label="Decision", elem_id="decisions-picked")
        decision_report = gr.Markdown(elem_id="decision-report")
    decided.expand(decision_ids, None, decisions)  # read when opened (Refresh stays the runs' own)
    decisions.change(decision_markdown, decisions, decision_report)

    refresh.click(history_view, None, [table, picked, one])
    picked.change(overlay, picked, [plot, diff, note])
    zip_btn.click(export, [one, what], [file, done])
    onnx_btn.click(onnx, one, [file, done])
    gguf_btn.click(gguf, [one, quant], [file, done])
    one.change(serve_command, one, serve)
    push_btn.click(push, [one, repo, what], [file, done])
    stop_btn.click(stop_picked, one, [file, done], concurrency_limit=None)
    give_btn.click(give_run, [one, new_owner], [file, done])
    return (open_btn, one), (history_view, [table, picked, one])
