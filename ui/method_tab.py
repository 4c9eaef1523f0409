"""The Method tab: scenario matrix, memory / time / cost estimate, the probe, and RAG-or-fine-tune advice.

Layout and wiring only: the matrix and advice come from engine/advise/advisor.py, the numbers from
engine/advise/plan.py (the formulas of engine/advise/estimate.py), the measurements from
engine/advise/probe.py.
"""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from engine.advise import advisor, estimate
from engine.advise.plan import CPU, plan
from engine.advise.probe import probe
from engine.data.dataset import dataset_tokens
from engine.data.pairs import OBJECTIVES as PREFERENCE_OBJECTIVES
from engine.train.config import choices
from engine.models import ShapeError
from engine.train.methods import METHODS
from ui import owners
from ui.decide_panel import build_decide_panel
from ui.notify import refuse

PARTS = ("weights", "gradients", "optimizer", "activations", "overhead")


PROBE_COLUMN = {"LoRA": "lora", "QLoRA": "qlora", "PEFT": "ia3", "DoRA": "dora", "DeepSpeed": "full", "ZeRO": "full"}


def _measured_cell(row: dict | None) -> str:
    if not row:
        return "<td>-</td>"
    if row.get("status") != "finished":
        return f"<td class='no'>{html.escape(row.get('status', ''))}</td>"
    return (f"<td>{row['tokens_per_s'] or 0:.0f} tok/s<br>{row['peak_memory_gb'] or 0:.2f} GiB peak<br>"
            f"{row['trainable_share'] or 0:.2%} trained<br>loss {row['loss_change']:+.3f}</td>")


def matrix_html(chosen: list[str], model: str, probed: list[dict] | None = None, request: gr.Request = None) -> str:
    """The published matrix with the chosen scenarios highlighted, the project's reading under arguable cells,
    and a last row measured by the probe (DeepSpeed / ZeRO columns show full fine-tuning, what they run)."""
    refused = ""
    try:
        rows = advisor.matrix_rows(chosen, owners.model_of(request, model))
    except ShapeError:
        rows = advisor.matrix_rows(chosen)
    except gr.Error as err:  # shown above the table, which still reads without the model's shape
        rows, refused = advisor.matrix_rows(chosen), f"<p class='refused'>{html.escape(err.message)}</p>"
    head = "".join(f"<th>{c}</th>" for c in advisor.COLUMNS)
    body = []
    for row in rows:
        cells = []
        for c in advisor.COLUMNS:
            ours = row.get(c + " (ours)")
            note = f"<div class='ours'>ours: {html.escape(ours)}</div>" if ours else ""
            cells.append(f"<td class='{row[c].lower()}'><b>{row[c]}</b>{note}</td>")
        mark = " class='chosen'" if row["chosen"] else ""
        body.append(f"<tr{mark}><td>{html.escape(row['scenario'])}</td>{''.join(cells)}</tr>")
    if probed:
        by_method = {r["method"]: r for r in probed}
        cells = "".join(_measured_cell(by_method.get(PROBE_COLUMN[c])) for c in advisor.COLUMNS)
        body.append(f"<tr class='measured'><td><b>Measured here by the probe</b> ({html.escape(model)})</td>"
                    f"{cells}</tr>")
    style = ("<style>#matrix table{border-collapse:collapse;font-size:13px}#matrix td,#matrix th{border:1px solid "
             "#ddd;padding:4px 6px;vertical-align:top}#matrix tr.chosen{background:#fff6d5}#matrix td.yes b{color:"
             "#187a3a}#matrix td.no b{color:#a11}#matrix .ours{font-size:11px;color:#555;max-width:260px}</style>")
    return f"{style}{refused}<table><tr><th>Scenario (published matrix)</th>{head}</tr>{''.join(body)}</table>"


def ranking_markdown(chosen: list[str]) -> tuple[str, str]:
    if not chosen:
        return "Tick the scenarios that describe your need; the methods are ranked for them.", "lora"
    ranked = advisor.rank(chosen)
    lines = [f"{i + 1}. **{col}**: serves {score:g} of {len(chosen)} (studio: `method: {run['method']}`"
             + (f", `zero_stage: {run['zero_stage']}`" if "zero_stage" in run else "") + ")"
             for i, (col, score, run) in enumerate(ranked)]
    return "Ranked for your scenarios (the project's reading where it differs):\n\n" + "\n".join(lines), \
        ranked[0][2]["method"]


def estimate_view(model, method, objective, device, gpus, zero_stage, offload, batch_size, seq_len, checkpointing,
                  rank, epochs, price, dataset, request: gr.Request = None):
    """The plan engine/advise/plan.py makes for these settings, as sentences and a bar chart."""
    try:
        model = owners.model_of(request, model)
    except gr.Error as err:
        return err.message, pd.DataFrame({"config": [], "part": [], "GiB": []})
    tokens = dataset_tokens(dataset["files"], dataset["columns"], model, int(seq_len)) if dataset else None
    try:
        p = plan(model, method, device, gpus, zero_stage, offload, batch_size, seq_len, checkpointing,
                          rank, epochs, price, tokens, objective=objective or "sft")
    except (ShapeError, estimate.EstimateError) as err:
        return str(err), pd.DataFrame({"config": [], "part": [], "GiB": []})
    return "\n\n".join(p.sentences()), pd.DataFrame(p.bars())


def run_probe(model, dataset, methods, steps, request: gr.Request = None, progress=gr.Progress()):
    """A few steps of each method, as runs of the person who asked: counted by the fair use of the slot."""
    if not dataset:
        refuse("The data chosen on the Data tab has errors; fix them or use the bundled sample.")
        return pd.DataFrame(), []
    who = owners.person(request)
    model = owners.model_of(who, model)
    busy = owners.may_start(who)
    if busy:
        refuse(busy)
        return pd.DataFrame(), []
    rows = probe(model, ",".join(dataset["files"]), methods or ["lora"], int(steps), owner=who.owner,
                 progress=lambda f, t: progress(f, desc=t), columns=dataset.get("columns", ""))
    table = [{"method": r["method"], "status": r["status"], "tokens/s": r.get("tokens_per_s"),
              "peak GiB": r.get("peak_memory_gb"), "trained params": r.get("trainable_params"),
              "share": f"{r['trainable_share']:.2%}" if r.get("trainable_share") else None,
              "loss change": r.get("loss_change"), "note": r.get("reason") or ""} for r in rows]
    return pd.DataFrame(table), rows


def preference_markdown(chosen: list[str], model: str, request: gr.Request = None) -> str:
    """The preference objectives for the chosen scenarios: the data each takes, its trade-off and evidence."""
    try:
        model = owners.model_of(request, model)
    except gr.Error as err:
        return err.message
    pick = advisor.recommend_objective(chosen or [])
    lines = [f"**Recommended: `objective: {pick}`**" if pick else
             "Tick a scenario to get an objective; the trade-offs:", ""]
    for r in advisor.preference_rows(chosen, model):
        mark = "" if r["fits"] else " (not for your data)"
        lines.append(f"- **{r['objective']}** takes {r['takes']}{mark}: {r['reading']} *Evidence: {r['evidence']}*")
    return "\n".join(lines)


def advice_markdown(changing, style, examples, traceable, prompting) -> str:
    a = advisor.recommend(changing == "yes", style == "yes", examples, traceable == "yes", prompting)
    reasons = "\n".join(f"- {r}" for r in a.reasons)
    return (f"### Recommendation: {a.route}\n\n{reasons}\n\n**Next:** {a.next_step}\n\n"
            f"**Two ways to fine-tune**\n\n- {a.self_managed}\n- {a.hosted}")


def build_method_tab(model, dataset, method_out, tabs):
    """Widgets of the Method tab; `method_out` (the Train tab's method box) receives the pick; `tabs` is
    switched to Train or Compare by the buttons that say so."""
    gr.Markdown("Decide **how** to fine-tune (or whether RAG is the better answer) before anything trains. "
                "Next step: the **Train** tab, with the method picked here.")
    with gr.Accordion("RAG, fine-tuning, or both?", open=True):
        with gr.Row():
            changing = gr.Radio(["yes", "no"], value="no", label=advisor.QUESTIONS["changing"])
            style = gr.Radio(["yes", "no"], value="yes", label=advisor.QUESTIONS["style"])
            traceable = gr.Radio(["yes", "no"], value="no", label=advisor.QUESTIONS["traceable"])
        with gr.Row():
            examples = gr.Radio(list(advisor.EXAMPLE_CHOICES), value="100-1,000", label=advisor.QUESTIONS["examples"])
            prompting = gr.Radio(list(advisor.PROMPTING_CHOICES), value="close but inconsistent",
                                 label=advisor.QUESTIONS["prompting"])
        advice = gr.Markdown(elem_id="advice")
        compare_btn = gr.Button("Check it on your own questions in Compare", elem_id="to-compare", size="sm")
        build_decide_panel(model)
    scenarios = gr.CheckboxGroup([(text, key) for key, (text, _) in advisor.SCENARIOS.items()],
                                 value=["domain", "chatbot", "memory"], label="Your scenarios", elem_id="scenarios")
    with gr.Row():
        ranking = gr.Markdown(elem_id="ranking")
        best = gr.State("lora")
        use_btn = gr.Button("Use the top method on the Train tab", elem_id="use-method", scale=0)
    matrix = gr.HTML(elem_id="matrix")
    with gr.Accordion("Preferences and rewards: DPO, ORPO, KTO, SimPO, GRPO (the studio's own rows)", open=False):
        pref_scenarios = gr.CheckboxGroup([(text, key) for key, (text, _) in advisor.PREFERENCE_SCENARIOS.items()],
                                          value=[], label="Preference scenarios", elem_id="preference-scenarios")
        pref_advice = gr.Markdown(elem_id="preference-advice")
    with gr.Accordion("Memory, time and cost estimate", open=True):
        with gr.Row():
            est_method = gr.Dropdown(list(METHODS), value="lora", label="Method")
            est_objective = gr.Dropdown(list(choices()["objective"]), value="sft", label="Objective",
                                        elem_id="estimate-objective")
            device = gr.Dropdown([CPU, *estimate.GPUS], value="NVIDIA A10G (24 GB)", label="Device")
            gpus = gr.Number(1, label="GPUs", precision=0, minimum=1)
            zero = gr.Dropdown(list(choices()["zero_stage"]), value=0, label="ZeRO stage")
            offload = gr.Dropdown(list(choices()["offload"]), value="none", label="Offload")
        with gr.Row():
            batch = gr.Number(4, label="Batch size", precision=0, minimum=1)
            seq = gr.Number(512, label="Sequence length", precision=0, minimum=16)
            rank = gr.Number(16, label="LoRA rank", precision=0, minimum=1)
            ckpt = gr.Checkbox(False, label="Gradient checkpointing")
            epochs = gr.Number(3, label="Epochs", minimum=0.1)
            price = gr.Number(1.0, label="Price per GPU-hour", minimum=0)
        est_btn = gr.Button("Estimate", elem_id="estimate")
        est_text = gr.Markdown(elem_id="estimate-text")
        est_plot = gr.BarPlot(x="config", y="GiB", color="part", title="Peak memory per device", height=280,
                              elem_id="estimate-plot")
    with gr.Accordion("Probe: measure a few steps of each method on your model and data", open=False):
        with gr.Row():
            probe_methods = gr.CheckboxGroup(list(METHODS) + [f"lora+{o}" for o in (*PREFERENCE_OBJECTIVES, "grpo")],
                                             value=["lora", "dora", "ia3"], label="Methods", elem_id="probe-methods",
                                             info="lora+dpo etc.: LoRA with a preference objective (the data "
                                                  "must be pairs); lora+grpo samples answers to the data's prompts "
                                                  "and scores them against its answers")
            probe_steps = gr.Number(6, label="Steps each", precision=0, minimum=2)
        probe_btn = gr.Button("Run the probe", elem_id="probe")
        probe_table = gr.DataFrame(elem_id="probe-table")
    probed = gr.State([])

    questions = [changing, style, examples, traceable, prompting]
    for q in questions:
        q.change(advice_markdown, questions, advice)
    for event in (scenarios.change, model.change, probed.change):
        event(matrix_html, [scenarios, model, probed], matrix)
    scenarios.change(ranking_markdown, scenarios, [ranking, best])
    for event in (pref_scenarios.change, model.change):
        event(preference_markdown, [pref_scenarios, model], pref_advice)
    use_btn.click(lambda m: (m, gr.Tabs(selected="train")), best, [method_out, tabs])
    compare_btn.click(lambda: gr.Tabs(selected="compare"), None, tabs)
    est_inputs = [model, est_method, est_objective, device, gpus, zero, offload, batch, seq, ckpt, rank, epochs,
                  price, dataset]
    est_btn.click(estimate_view, est_inputs, [est_text, est_plot])
    probe_btn.click(run_probe, [model, dataset, probe_methods, probe_steps], [probe_table, probed])
    return questions, advice, scenarios, ranking, best, matrix, probed
