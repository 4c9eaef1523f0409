"""The Data tab: upload, validation report, token statistics, what gets trained, export.

Layout and wiring only; reading and checking is engine/data/dataset.py. The dataset chosen here
is one `gr.State` dict (files, column mapping, validation split, train_on) that the Train
tab turns into a RunConfig.
"""

from __future__ import annotations

import html
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.train.config import SAMPLE_TRAIN, RunConfig, grpo_prompt_limit, prompt_limit
from engine.data.dataset import cached_tokenizer, dataset_report, export_chat_jsonl, token_stats, trained_pieces
from engine.data.pairs import pair_stats
from engine.data.prompts import prompt_stats
from engine.data.formats import SUFFIXES, columns_of, guess_mapping, mapping_text
from engine.infer.playground import examples_path
from engine.train.runs import measured_throughput
from engine.data.uploads import UploadError
from engine.errors import StudioError
from ui import owners
from ui.files import accept, generated_folder
from rag.documents import SUFFIXES as DOC_SUFFIXES
from rag.generate import Options, generate
from ui.notify import refuse

SHOWN = 10  # problems listed on the page per kind; the CLI lists more


def default_dataset() -> dict:
    return {"files": [str(SAMPLE_TRAIN)], "columns": "", "val_fraction": 0.0, "val_data": "", "train_on": "assistant"}


MAX_COLUMN_CHOICES = 100  # columns offered in a mapping dropdown; any other can be typed
STATS_SAMPLE = 20_000  # token statistics of bigger datasets come from a seeded sample


def _report(dataset: dict):
    """The dataset's report, read once per file version: the three views of one upload share it."""
    return dataset_report(dataset["files"], dataset["columns"])


def _report_markdown(report, files) -> str:
    names = "the bundled Zorvane sample" if files == [str(SAMPLE_TRAIN)] else ", ".join(Path(f).name for f in files)
    if report.errors:
        head = f"**Cannot train on {names} yet: {len(report.errors)} error(s).** Errors block training; warnings do not."
    else:
        head = (f"**{len(report.examples)} examples** in {names}. Next: the **Method** tab to choose how to train "
                "(or straight to **Train** for LoRA).")
    lines = [head, "", report.summary() + "."]
    kinds = {e.kind for e in report.examples}
    if kinds == {"prompts"} and not report.errors:
        refs = sum(e.reference is not None for e in report.examples)
        lines.append(f"Read as prompts for GRPO ({refs} of {len(report.examples)} with a reference answer): the "
                     "model writes the answers and reward functions score them; train it with **Train > "
                     "Objective** `grpo`.")
    elif kinds and kinds != {"sft"} and not report.errors:
        lines.append("Read as preference data: train it with **Train > Objective** "
                     + ("`kto`." if kinds == {"unpaired"} else "`dpo`, `orpo` or `simpo` (or `kto` with "
                                                                "kto_from_pairs)."))
    for label, items in (("Error", report.errors), ("Warning", report.warnings)):
        lines += [f"- {label}: {html.escape(str(i))}" for i in items[:SHOWN]]
        if len(items) > SHOWN:
            lines.append(f"- ... and {len(items) - SHOWN} more {label.lower()}s (`studio data check` lists them all)")
    return "\n".join(lines)


def _preview_html(examples, n: int = 20) -> str:
    """A table whose cells set their own direction, so Arabic, Persian and Hebrew read right to left."""
    def cell(text):
        text = text if len(text) <= 300 else text[:300] + " ..."
        return f'<td dir="auto" style="white-space:pre-wrap;vertical-align:top">{html.escape(text)}</td>'

    rows = []
    for ex in examples[:n]:
        if ex.messages is None:
            rows.append(f"<tr><td>{html.escape(ex.where)}</td>{cell('')}{cell(ex.text)}{cell('')}</tr>")
            continue
        first = {}
        for m in ex.messages:
            first.setdefault(m["role"], m["content"])
        turns = sum(m["role"] == "assistant" for m in ex.messages)
        extra = f" (+{turns - 1} more turns)" if turns > 1 else ""
        answer = first.get("assistant", "") + extra if ex.kind != "prompts" else \
            f"(reference) {ex.reference}" if ex.reference else "(the model writes it)"
        rows.append(f"<tr><td>{html.escape(ex.where)}</td>{cell(first.get('system', ''))}"
                    f"{cell(first.get('user', ''))}{cell(answer)}</tr>")
    return ('<table class="data-preview"><thead><tr><th>where</th><th>system</th><th>user (or text)</th>'
            f'<th>assistant</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def read_data(files, prompt_col, completion_col, system_col, val_fraction, val_file, train_on,
              request: gr.Request = None):
    try:  # only what this session uploaded, or the sample: a client can name any server path here
        files = accept([str(f) for f in (files or [])] or [str(SAMPLE_TRAIN)], request, SUFFIXES)
        val_file = accept([str(val_file)], request, SUFFIXES)[0] if val_file else None
    except (UploadError, OSError) as err:
        return (None, refuse(err), "", gr.update(visible=False), *[gr.update()] * 3,
                gr.update(interactive=False))
    mapping = {"prompt": prompt_col, "completion": completion_col, "system": system_col} \
        if prompt_col and completion_col else None
    report = dataset_report(files, mapping_text(mapping))
    dataset = {"files": files, "columns": mapping_text(mapping), "val_fraction": float(val_fraction or 0),
               "val_data": str(val_file) if val_file else "", "train_on": train_on}
    unmatched = [e.where.split(" ")[0] for e in report.errors if "no known format" in e.message]
    table = next((f for f in files if Path(f).name in unmatched), None) or (files[0] if mapping else None)
    unknown = bool(unmatched)
    columns = columns_of(table) if table else []
    guess = guess_mapping(columns) or {}
    mapping_row = gr.update(visible=bool(columns))
    choices = [""] + columns[:MAX_COLUMN_CHOICES]  # a wider table: type the column's name
    picks = [gr.update(choices=choices, value=(mapping or guess).get(k) or "") for k in ("prompt", "completion", "system")]
    if unknown and guess and not mapping:
        note = "\n\n**The columns fit no known format.** A mapping was guessed below: check it and press *Apply mapping*."
    else:
        note = ""
    ok = not report.errors
    return (dataset if ok else None, _report_markdown(report, files) + note, _preview_html(report.examples),
            mapping_row, *picks, gr.update(interactive=ok))


def use_sample(request: gr.Request = None):
    return read_data([str(SAMPLE_TRAIN)], "", "", "", 0.0, None, "assistant", request)


def use_saved(request: gr.Request = None):
    """The exchanges this person saved from the Chat tab, as a dataset."""
    path = examples_path(owners.person(request).owner)
    if not path.exists():
        return (None, refuse("No chat examples of yours are saved yet; save some from the Chat tab first."), "",
                gr.update(visible=False), *[gr.update()] * 3, gr.update(interactive=False))
    return read_data([str(path)], "", "", "", 0.0, None, "assistant", request)


def from_documents(files, phrasings, raft, request: gr.Request = None, progress=gr.Progress()):
    """Question-answer pairs from this person's documents (rag/generate.py), into their own folder."""
    if not files:
        return refuse("Add documents first (.txt, .md, .html, .pdf, .docx, or text columns of .jsonl / .csv)."), ""
    try:
        docs = accept([str(f) for f in files], request, DOC_SUFFIXES)
        out = generated_folder(request) / time.strftime("%Y%m%d-%H%M%S") / "pairs.jsonl"
        report = generate(docs, out, Options(phrasings=int(phrasings), raft=bool(raft)),
                          progress=lambda i, n, w: progress(i / max(n, 1), desc=w))
    except (UploadError, StudioError, OSError) as err:
        return refuse(err), ""
    lines = report.lines()
    text = f"**{lines[0]}**\n\n" + "\n".join(f"- {line.strip()}" for line in lines[1:])
    text += (f"\n\nThe held-out questions (for Compare or `studio eval --questions`) are kept as "
             f"`{Path(report.files['heldout']).name}` beside the pairs. "
             + ("Training on the RAFT prompts below." if raft else ""))
    if not report.train:
        return refuse("No pair passed the checks; the report above says why.") + "\n\n" + text, ""
    return text, report.files["raft" if raft else "train"]


def read_generated(path: str, request: gr.Request = None):
    if not path:
        return (gr.update(),) * 8
    return read_data([path], "", "", "", 0.0, None, "assistant", request)


def token_view(dataset, model, max_length, request: gr.Request = None):
    if not dataset:
        return "", pd.DataFrame({"tokens": [], "examples": []})
    report = _report(dataset)
    try:
        tokenizer = cached_tokenizer(model := owners.model_of(request, model))
    except gr.Error as err:
        return err.message, pd.DataFrame({"tokens": [], "examples": []})
    except (StudioError, OSError, ValueError) as err:  # ValueError: transformers on a model it cannot read
        return f"Token statistics need the model's tokenizer: {err}", pd.DataFrame({"tokens": [], "examples": []})
    if report.examples and report.examples[0].kind == "prompts":  # GRPO: the prompts, and the room left to answer
        preset = RunConfig.preset()  # the form's starting values, as for pairs below
        completion = preset.max_completion_length
        limit = grpo_prompt_limit(preset.max_prompt_length, int(max_length), completion)
        stats = prompt_stats(report.examples[:STATS_SAMPLE], tokenizer, limit)
        hist = pd.DataFrame(stats.histogram(), columns=["tokens", "examples"])
        return "\n".join(f"- {line}" for line in stats.lines(limit, completion)), hist
    if report.examples and report.examples[0].kind != "sft":  # preference data: prompt and both answers
        limit = prompt_limit(RunConfig.preset().max_prompt_length, int(max_length))
        stats = pair_stats(report.examples[:STATS_SAMPLE], tokenizer, int(max_length), limit)
        hist = pd.DataFrame(stats.histogram(), columns=["tokens", "examples"])
        return "\n".join(f"- {line}" for line in stats.lines(int(max_length), limit)), hist
    stats = token_stats(report.examples, tokenizer, int(max_length), sample=STATS_SAMPLE)
    lines = stats.sentences(measured_throughput(model))
    issue = stats.truncation_issue()
    if issue:
        lines.append(f"Warning: {issue}")
    hist = pd.DataFrame(stats.histogram(), columns=["tokens", "examples"])
    return "\n".join(f"- {line}" for line in lines), hist


def trained_view(dataset, model, index, train_on, request: gr.Request = None):
    if not dataset:
        return []
    report = _report(dataset)
    if not report.examples:
        return []
    try:
        model = owners.model_of(request, model)
    except gr.Error as err:
        return [(err.message, None)]
    ex = report.examples[min(max(int(index or 0), 0), len(report.examples) - 1)]
    if ex.kind != "sft":  # a pair: the prompt as the model reads it, then each answer, marked
        try:
            prompt = cached_tokenizer(model).apply_chat_template(
                [{"role": m["role"], "content": m["content"]} for m in ex.prompt], tokenize=False,
                add_generation_prompt=True)
        except Exception as err:
            return [(f"{err}", None)]
        if ex.kind == "prompts":
            return [(prompt, None), (ex.reference or "(no reference answer)", "reference answer")]
        answer = ex.messages[-1]["content"]
        if ex.kind == "unpaired":
            return [(prompt, None), (answer, "good answer" if ex.label else "bad answer")]
        return [(prompt, None), (answer, "chosen"), ("\n\n(the same prompt, answered instead with)\n\n", None),
                (ex.rejected, "rejected")]
    try:
        pieces = trained_pieces(ex, cached_tokenizer(model), train_on)
    except Exception as err:  # a template that cannot be split is reported, not raised
        return [(f"{err}", None)]
    return [(text, "trained" if used else None) for text, used in pieces]


def export(dataset):
    if not dataset:
        refuse("Load a dataset without errors first.")
        return None
    report = _report(dataset)
    out = Path(tempfile.mkdtemp(prefix="studio-export-")) / "train.chat.jsonl"
    n = export_chat_jsonl(report.examples, out)
    gr.Info(f"Exported {n} chat examples.")
    return str(out)


def build_data_tab(model, max_len):
    """The Data tab's layout and events; returns the dataset State the Train tab reads."""
    dataset = gr.State(default_dataset())
    with gr.Row():
        upload = gr.File(label=f"Training data ({', '.join(SUFFIXES)}); several files at once are fine",
                         file_count="multiple", file_types=list(SUFFIXES), type="filepath", elem_id="data-upload")
        with gr.Column():
            sample_btn = gr.Button("Use the bundled sample", variant="secondary")
            saved_btn = gr.Button("Use the chat examples saved from the Chat tab", variant="secondary",
                                  elem_id="use-saved")
            val_fraction = gr.Slider(0, 0.5, value=0.0, step=0.05, label="Validation split",
                                     info="Share held out (seeded) to measure evaluation loss")
            val_file = gr.File(label="...or a validation file", file_types=list(SUFFIXES), type="filepath")
    with gr.Accordion("From documents: write questions and answers with their evidence", open=False):
        gr.Markdown("Only documents? The studio writes question-answer pairs from them, each with a quote from "
                    "the passage it comes from, and keeps only the pairs that pass its checks (the report says "
                    "what was dropped and why). Some passages are held out, never trained on, to test with.")
        with gr.Row():
            docs = gr.File(label="Documents", file_count="multiple", file_types=list(DOC_SUFFIXES),
                           type="filepath", elem_id="gen-docs")
            with gr.Column():
                phrasings = gr.Slider(1, 3, value=2, step=1, label="Phrasings of each question",
                                      elem_id="gen-phrasings")
                raft = gr.Checkbox(False, label="Train with retrieval (RAFT): the passage among distractors in "
                                                "each prompt", elem_id="gen-raft")
                gen_btn = gr.Button("Write questions and answers", elem_id="gen-start")
        gen_status = gr.Markdown(elem_id="gen-status")
        gen_file = gr.State("")
    with gr.Row(visible=False) as mapping_row:
        prompt_col = gr.Dropdown(label="Column with the question / prompt", choices=[], allow_custom_value=True)
        completion_col = gr.Dropdown(label="Column with the answer", choices=[], allow_custom_value=True)
        system_col = gr.Dropdown(label="System prompt column (optional)", choices=[], allow_custom_value=True)
        apply_btn = gr.Button("Apply mapping")
    status = gr.Markdown(elem_id="data-status")
    preview = gr.HTML(elem_id="data-preview", label="Preview (first 20 examples)")
    with gr.Row():
        stats = gr.Markdown(elem_id="token-stats")
        hist = gr.BarPlot(x="tokens", y="examples", title="Tokens per example", height=240, elem_id="token-hist")
    with gr.Accordion("What gets trained", open=False):
        with gr.Row():
            index = gr.Number(0, label="Example number", precision=0, minimum=0)
            train_on = gr.Radio(["assistant", "all"], value="assistant", label="The loss uses",
                                info="assistant: only the answers (default); all: every token")
        pieces = gr.HighlightedText(label="The example as the model sees it, with the chat template",
                                    color_map={"trained": "green", "chosen": "green", "good answer": "green",
                                               "rejected": "red", "bad answer": "red"}, combine_adjacent=True, elem_id="trained-view")
    with gr.Row():
        export_btn = gr.Button("Export as chat JSONL (for hosted fine-tuning services)", elem_id="export")
        export_file = gr.File(label="Exported file", interactive=False, elem_id="export-file")

    read_inputs = [upload, prompt_col, completion_col, system_col, val_fraction, val_file, train_on]
    read_outputs = [dataset, status, preview, mapping_row, prompt_col, completion_col, system_col, export_btn]
    after = dict(fn=token_view, inputs=[dataset, model, max_len], outputs=[stats, hist])
    view = dict(fn=trained_view, inputs=[dataset, model, index, train_on], outputs=pieces)
    for event in (upload.upload, apply_btn.click, val_fraction.release, val_file.change, train_on.change):
        event(read_data, read_inputs, read_outputs).then(**after).then(**view)
    upload.clear(use_sample, None, read_outputs)
    sample_btn.click(use_sample, None, read_outputs).then(**after).then(**view)
    saved_btn.click(use_saved, None, read_outputs).then(**after).then(**view)
    index.change(**view)
    gen_btn.click(from_documents, [docs, phrasings, raft], [gen_status, gen_file]).then(
        read_generated, gen_file, read_outputs).then(**after).then(**view)
    export_btn.click(export, dataset, export_file)
    return dataset, (use_sample, read_outputs, after, view)
