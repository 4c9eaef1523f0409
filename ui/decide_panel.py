"""The Method tab's "Measure it on my documents": start a measured decision, follow it, stop it, see the grid.

Layout and wiring only. The measurement runs as its own process (studio/decide.py, started through
engine/advise/decisions.py), so closing the page loses nothing; the panel shows the newest decision of the
person looking, polled every two seconds: its stage and time left, then the grid, a chart and the verdict.
The Runs tab lists every saved decision report.

    Part of the studio page (ui/method_tab.py builds it).
"""

from __future__ import annotations

import shutil

import gradio as gr
import pandas as pd

from engine.advise.decisions import STAGES, Decision, launch, list_decisions, new_folder
from engine.data.uploads import UploadError
from rag.documents import SUFFIXES as DOC_SUFFIXES
from ui import owners
from ui.files import accept
from ui.notify import refuse

DEFAULT_BUDGET = 20  # minutes: studio/decide.py's default; the README says what it buys on 2 cores


def newest(request) -> Decision | None:
    found = list_decisions(owners.person(request).owner)
    return found[0] if found else None


def start(files, budget, model, request: gr.Request = None):
    who = owners.person(request)
    try:
        model = owners.model_of(who, model)
    except gr.Error as err:
        return refuse(err.message)
    if not files:
        return refuse("Add your documents first (.txt, .md, .html, .pdf, .docx, or text columns of .jsonl / .csv).")
    try:
        docs = accept([str(f) for f in files], request, DOC_SUFFIXES)
    except (UploadError, OSError) as err:
        return refuse(err)
    current = newest(request)
    if current is not None and current.status() in ("running", "starting"):
        return refuse(f"Your measurement {current.id} is still running; stop it or wait for its report.")
    busy = owners.may_start(who)
    if busy:
        return refuse(busy)
    folder = new_folder(who.owner)
    (folder / "docs").mkdir()
    copies = []
    for path in docs:
        target = folder / "docs" / path.rsplit("/", 1)[-1]
        shutil.copyfile(path, target)
        copies.append(str(target))
    launch(folder, copies, float(budget or DEFAULT_BUDGET), model=model, owner=who.owner)
    return f"Started {folder.name}: {len(copies)} documents, a {float(budget):g}-minute budget."


def stop(request: gr.Request = None) -> str:
    current = newest(request)
    if current is None or current.status() not in ("running", "starting"):
        return "Nothing of yours is being measured."
    current.ask_stop()
    return f"Stopping {current.id}: the part under way ends at its next check; what was measured is kept."


def chart_frame(report: dict | None) -> pd.DataFrame:
    """Each cell's primary score: the share of held-out questions answered correctly."""
    rows = []
    for column, splits in (report or {}).get("grid", {}).items():
        cell = splits.get("all")
        if cell:
            rows.append({"cell": column, "setting": "with retrieval" if column.endswith("RAG") else "closed-book",
                         "share correct": round(cell["mean"], 3)})
    return pd.DataFrame(rows, columns=["cell", "setting", "share correct"])


def view(request: gr.Request = None):
    """(progress line, report Markdown, chart, the poll timer) of the person's newest decision; the timer
    runs only while it does, so an idle page asks nothing."""
    d = newest(request)
    if d is None:
        return "No measurement yet.", "", chart_frame(None), gr.Timer(active=False)
    status = d.status()
    return (*_shown(d, status), gr.Timer(active=status in ("running", "starting")))


def _shown(d: Decision, status: str):
    p = d.progress()
    if status in ("running", "starting"):
        stage = p.get("stage") or "starting"
        n = STAGES.index(stage) + 1 if stage in STAGES else 0
        step = f" ({p['done']}/{p['total']})" if p.get("total") else ""
        line = (f"**{d.id}: stage {n} of {len(STAGES)}, {stage}**{step}: {p.get('message', '')}  \n"
                f"{p.get('elapsed_s', 0):.0f} s spent, about {p.get('left_s', 0) / 60:.0f} min of the budget left")
        return line, "", chart_frame(None)
    report = d.report()
    if status == "interrupted":
        return f"**{d.id}** ended without a report (the process stopped); its log: {d.log()[-300:]}", "", \
            chart_frame(None)
    return f"**{d.id}: {status}.** {report['verdict']['sentence']}", d.markdown(), chart_frame(report)


def build_decide_panel(model):
    gr.Markdown("### Measure it on my documents\nWrites questions and answers from your documents, trains a plain "
                "and a retrieval-aware (RAFT) fine-tune, and scores base, fine-tuned and RAFT, each with and "
                "without retrieval, on questions held out: the answer with its intervals.")
    with gr.Row():
        docs = gr.File(label="Your documents", file_count="multiple", file_types=list(DOC_SUFFIXES),
                       type="filepath", elem_id="decide-docs")
        with gr.Column():
            budget = gr.Slider(5, 120, value=DEFAULT_BUDGET, step=5, label="Time budget (minutes)",
                               elem_id="decide-budget")
            with gr.Row():
                start_btn = gr.Button("Measure it on my documents", variant="primary", elem_id="decide-start")
                stop_btn = gr.Button("Stop the measurement", elem_id="decide-stop")
    status = gr.Markdown(elem_id="decide-status")
    chart = gr.BarPlot(x="cell", y="share correct", color="setting", title="Held-out questions answered correctly",
                       height=260, elem_id="decide-chart")
    report = gr.Markdown(elem_id="decide-report")
    timer = gr.Timer(2.0)  # its first tick shows the newest decision after a page load, then it stops if idle
    shown = [status, report, chart, timer]
    start_btn.click(start, [docs, budget, model], status).then(view, None, shown)
    stop_btn.click(stop, None, status)
    timer.tick(view, None, shown)
    return docs, budget, start_btn, stop_btn, status, report
