"""The Compare tab: a document collection, four streamed answers side by side, and batch evaluation.

Layout and wiring only: retrieval and scoring are rag/, the model is engine/infer/chat.py.
Collections are saved on disk (rag.pipeline.collections_root) and listed at start.
"""

from __future__ import annotations

import html
import re
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.data.dataset import load_examples
from engine.infer import benchmarks
from engine.infer.chat import run_answerers
from engine.infer.preference import add_to_evaluation, append_summary_rows, preference_accuracy
from engine.infer.reward_scores import reward_scores
from engine.data.pairs import OBJECTIVES as PREFERENCE
from engine.train.config import (SAMPLE_EVAL as SAMPLE_QUESTIONS, SAMPLE_PAIRS_EVAL as SAMPLE_PAIRS,
                                 SAMPLE_PROMPTS_EVAL)
from engine.data.uploads import UploadError
from engine.errors import StudioError
from ui import owners
from ui.files import accept
from ui.notify import refuse
from rag.compare import COLUMNS, stream_compare
from rag.documents import SUFFIXES
from rag.evaluate import (NAMES, SCORES, evaluate, groundedness, load_questions, write_csv, write_json,
                          write_summary_csv)
from rag.pipeline import RagPipeline, Reranker, sample_pipeline
from ui.owners import SAMPLE_COLLECTION

STREAM_EVERY_S = 0.15  # how often the page redraws the growing answers
ASK_CONCURRENCY = 8  # questions answered together at most: 8 x 4 columns = the batcher's 32 rows
METRIC_NAMES = {"correct": "correct", "f1": "token F1", "em": "exact match", "rouge_l": "ROUGE-L",
                "semantic": "semantic", "grounded": "grounded", "hit": "retrieval hit", "seconds": "latency s"}

COMPARE_INTRO = ("Ask one question of four answerers side by side: the base model and the fine-tuned run, each "
                 "alone and with retrieval from a document collection. Next step: **Runs and export**, to "
                 "download or publish the model.")


def collections(request: gr.Request | None = None) -> list[str]:
    """This person's collections, the bundled sample first."""
    return owners.collections(request)


@lru_cache(maxsize=2)
def _reranker(name: str) -> Reranker:
    return Reranker(name)


_OPEN = threading.Lock()  # two questions at once must not index and save the same collection together


def _pipeline(name: str, k, min_score, mmr, reranker: str = "", request: gr.Request | None = None) -> RagPipeline:
    """The collection `name` of the person asking (the bundled sample for none), with these settings."""
    folder = owners.collection_of(request, name)
    with _OPEN:
        pipe = sample_pipeline() if folder is None else RagPipeline.open(folder)
    pipe.k, pipe.min_score, pipe.mmr = int(k), float(min_score), float(mmr)
    pipe.reranker = _reranker(reranker.strip()) if (reranker or "").strip() else None
    return pipe


def _describe(pipe: RagPipeline, name: str) -> str:
    sources = pipe.store.sources()
    return (f"Collection **{name}**: {len(pipe.store)} passages from {len(sources)} documents "
            f"({pipe.store.kind} index).")


def index_documents(files, name, column, request: gr.Request = None, progress=gr.Progress()):
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", str(name or "").strip()) or "my-documents"
    if not files:
        refuse("Choose documents to index first.")
        return gr.update(), gr.update(), gr.update()
    try:
        files = accept(files, request, SUFFIXES)  # only what this person uploaded: any server path can be named
        folder = owners.collection_of(request, name, create=True)
    except (UploadError, OSError) as err:
        return gr.update(), refuse(err), gr.update()
    except gr.Error as err:  # a name that cannot be a collection of theirs
        return gr.update(), refuse(err.message), gr.update()
    pipe = RagPipeline.open(folder)
    report = pipe.index(files, column=column or None,
                        progress=lambda i, n, f: progress((i, n), desc=f"reading {f}"))
    return (gr.update(choices=collections(request), value=name), f"{report.sentence()}\n\n{_describe(pipe, name)}",
            gr.update(choices=pipe.store.sources(), value=None))


def choose_collection(name, request: gr.Request = None):
    pipe = _pipeline(name, 3, 0, 0, request=request)
    return _describe(pipe, name), gr.update(choices=pipe.store.sources(), value=None)


def remove_document(name, source, request: gr.Request = None):
    folder = owners.collection_of(request, name)
    if not source or folder is None:
        refuse("Pick a document of one of your own collections to remove.")
        return gr.update(), gr.update()
    pipe = RagPipeline.open(folder)
    n = pipe.remove(source)
    return f"Removed {n} passages of {source}. {_describe(pipe, name)}", gr.update(choices=pipe.store.sources(),
                                                                                   value=None)


def _sources_markdown(answer) -> str:
    """Sources with the passages the answer cites highlighted (or, citing none, the one it overlaps most)."""
    cited, label = answer.cited(), "cited"
    if not cited and answer.hits and answer.text:
        overlaps = [groundedness(h.chunk.text, answer.text) for h in answer.hits]
        if max(overlaps) > 0:
            cited, label = {overlaps.index(max(overlaps)) + 1}, "closest to the answer"
    lines = []
    for i, h in enumerate(answer.hits, start=1):
        passage = html.escape(h.chunk.text[:240])
        if i in cited:
            passage = f"<mark>{passage}</mark>"
        where = f" · {h.chunk.location()}" if h.chunk.location() else ""
        lines.append(f"{i}. <code>{html.escape(h.chunk.source)}</code>{html.escape(where)} "
                     f"(score {h.score:.2f}){f' · {label}' if i in cited else ''}: {passage}")
    return "\n\n**Sources**\n\n" + "\n".join(lines) if lines else ""


def _column_markdown(answer, done: bool) -> str:
    text = answer.text or ("_(empty answer)_" if done else "_thinking ..._")
    md = f"#### {answer.column}\n\n{html.escape(text)}"
    if done:
        md += f"\n\n<small>{answer.seconds:.1f} s · {answer.prompt_tokens} prompt + {answer.answer_tokens} " \
              "answer tokens</small>"
    else:
        md += f"\n\n<small>{answer.seconds:.1f} s ...</small>"
    return md + (_sources_markdown(answer) if done else "")


def _answerers(run_id, model, request: gr.Request | None):
    # both are names from the API: checked against who is asking, never taken as paths
    return run_answerers(owners.run_of(request, run_id), owners.model_of(request, model))


def ask(question, run_id, model, collection, k, min_score, mmr, reranker, request: gr.Request = None):
    if not (question or "").strip():
        refuse("Type a question first.")
        yield [gr.update()] * 5
        return
    shown = [f"#### {c}\n\n_waiting ..._" for c in COLUMNS] + [""]
    yield shown
    try:
        answer = _answerers(run_id, model, request)
        pipe = _pipeline(collection, k, min_score, mmr, reranker, request)
    # transformers says a model folder or id it cannot read with OSError or ValueError: the person's to fix
    except (StudioError, OSError, ValueError) as err:
        said = refuse(err)
        yield [f"#### {c}\n\n{said}" for c in COLUMNS] + [""]
        return
    if answer.tuned is None:
        for i in (2, 3):
            shown[i] = f"#### {COLUMNS[i]}\n\n_Pick a finished run above to see the fine-tuned answers._"
    fit = (answer.chat.tokenizer, answer.chat.max_prompt_tokens())
    shown[4] = f"<small>{answer.batching()} · generation in {html.escape(answer.precision())}</small>"
    last = 0.0
    for column, done in stream_compare(question, pipe, answer, fit=fit):
        shown[COLUMNS.index(column.column)] = _column_markdown(column, done)
        if done or time.monotonic() - last > STREAM_EVERY_S:  # four columns grow at once: redraw a few times a second
            last = time.monotonic()
            yield list(shown)
    yield list(shown)


def run_evaluation(questions_file, run_id, model, collection, k, min_score, mmr, reranker,
                   request: gr.Request = None, progress=gr.Progress()):
    who = owners.person(request)  # once per request; the helpers take the person as well
    try:
        if questions_file:  # only what this session uploaded: a client can name any server path here
            questions_file = accept([str(questions_file)], request, (".jsonl", ".csv"))[0]
        questions = load_questions(questions_file or SAMPLE_QUESTIONS)
        answer = _answerers(run_id, model, who)
        pipe = _pipeline(collection, k, min_score, mmr, reranker, who)
    except gr.Error:  # a run, model or collection that is not theirs: the error its client receives
        raise
    except (StudioError, OSError, ValueError) as err:  # ValueError: transformers on a model it cannot read
        refuse(str(err))
        return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
    progress((0, len(questions)), desc="answering, several questions per batch")
    result = evaluate(questions, pipe, answer, fit=(answer.chat.tokenizer, answer.chat.max_prompt_tokens()),
                      progress=lambda i, n: progress((i, n), desc=f"question {i} of {n}"))
    summary = pd.DataFrame([{"column": c, **{METRIC_NAMES[m]: _with_interval(v, result["intervals"][c].get(m))
                                             for m, v in s.items() if m in METRIC_NAMES}}
                            for c, s in result["summary"].items()])
    verdicts = pd.DataFrame([{"compared": f"{d['a']} vs {d['b']}", "metric": NAMES[d["metric"]],
                              "difference": round(d["difference"], 3),
                              "95% interval": "" if d["low"] is None else f"[{d['low']:.3f}, {d['high']:.3f}]",
                              "verdict": d["verdict"]} for d in result["differences"]])
    rows = pd.DataFrame([{k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in r.items() if k2 != "sources"}
                         for r in result["rows"]])
    note = (f"{result['questions']} questions · the primary score is {NAMES[result['primary']]}, checked offline "
            "(numbers with their units, names and most other words of the reference in the answer); token F1, "
            "ROUGE-L and semantic similarity are secondary · intervals are 95% bootstrap intervals over the "
            f"questions · {answer.precision()}")
    run = owners.run_of(who, run_id)
    if run is not None and run.config.objective in PREFERENCE:  # a preference run: its held-out pairs too
        try:
            note += " · " + add_to_evaluation(result, run, SAMPLE_PAIRS).sentence()
        except StudioError as err:
            note += f" · no preference accuracy: {err}"
    out = Path(tempfile.mkdtemp(prefix="studio-eval-"))
    write_csv(result["rows"], out / "evaluation.csv")
    write_summary_csv(result, out / "evaluation-summary.csv")
    append_summary_rows(out / "evaluation-summary.csv", result)
    write_json(result, out / "evaluation.json")
    return (summary, _chart(result), verdicts, note, rows,
            [str(out / "evaluation.csv"), str(out / "evaluation-summary.csv"), str(out / "evaluation.json")])


def _with_interval(value, box) -> str | None:
    if value is None:
        return None
    return f"{value:.3f} [{box[0]:.3f}, {box[1]:.3f}]" if box else f"{value:.3f}"


def _chart(result):
    """Bars per metric and column with the 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in (result.get("primary", "correct"), "f1", "rouge_l", "semantic", "grounded") if m in SCORES]
    columns = list(result["summary"])
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    width = 0.8 / max(1, len(columns))
    for ci, column in enumerate(columns):
        xs, ys, lo, hi = [], [], [], []
        for mi, m in enumerate(metrics):
            v, box = result["summary"][column].get(m), result["intervals"].get(column, {}).get(m)
            if v is None:
                continue
            xs.append(mi + (ci - (len(columns) - 1) / 2) * width)
            ys.append(v)
            lo.append(v - box[0] if box else 0)
            hi.append(box[1] - v if box else 0)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=column)
    ax.set_xticks(range(len(metrics)), [METRIC_NAMES[m] for m in metrics])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% interval)")
    ax.legend(fontsize=8, ncols=len(columns), loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def score_preferences(pairs_file, run_id, request: gr.Request = None):
    """Preference accuracy of the picked run on held-out pairs, before (adapter off) and after."""
    if not run_id:
        return pd.DataFrame(), refuse("Pick a finished run first.")
    run = owners.run_of(request, run_id)
    try:
        files = accept([str(pairs_file)], request, (".jsonl", ".json", ".csv", ".parquet")) if pairs_file \
            else [str(SAMPLE_PAIRS)]
        result = preference_accuracy(run, load_examples(files))
    except (StudioError, UploadError, OSError) as err:
        return pd.DataFrame(), refuse(err)
    table = pd.DataFrame([{"model": "base (adapter off)", "preference accuracy": result.before},
                          {"model": f"fine-tuned ({run_id})", "preference accuracy": result.after}])
    return table, result.sentence()


def score_rewards(prompts_file, run_id, request: gr.Request = None):
    """A GRPO run's reward on held-out prompts, base (adapter off) and fine-tuned, with 95% intervals."""
    if not run_id:
        return pd.DataFrame(), refuse("Pick a finished GRPO run first.")
    run = owners.run_of(request, run_id)
    try:
        files = accept([str(prompts_file)], request, (".jsonl", ".json", ".csv", ".parquet")) if prompts_file \
            else [str(SAMPLE_PROMPTS_EVAL)]
        result = reward_scores(run, load_examples(files, objective="grpo"))
    except (StudioError, UploadError, OSError) as err:
        return pd.DataFrame(), refuse(err)
    return pd.DataFrame(result.rows()), result.sentence()


def run_benchmarks(tasks, limit, run_id, request: gr.Request = None):
    """Evaluation-harness tasks on the base (adapter off) and the picked run, through the endpoint."""
    if not run_id:
        return pd.DataFrame(), refuse("Pick a finished run first.")
    if not tasks:
        return pd.DataFrame(), refuse("Tick at least one task.")
    run = owners.run_of(request, run_id)
    try:
        report = benchmarks.compare(run, list(tasks), limit=int(limit) or None)
    except StudioError as err:
        return pd.DataFrame(), refuse(err)
    table = pd.DataFrame(report.rows())
    note = ("**Forgetting** (outside the training data): " + "; ".join(c.sentence() for c in report.forgetting)
            if report.forgetting else "No task outside the sample's domain was ticked: no forgetting line.")
    return table, note


def build_compare_tab(run_id, model):
    """The Compare tab's layout and events; returns the run picker, its Refresh button and the collection
    picker (the page fills them with the person's own on load)."""
    gr.Markdown(COMPARE_INTRO)
    with gr.Accordion("Documents for retrieval", open=False):
        with gr.Row():
            docs = gr.File(label=f"Documents ({', '.join(SUFFIXES)}); several files at once are fine",
                           file_count="multiple", file_types=list(SUFFIXES), type="filepath", elem_id="rag-docs")
            with gr.Column():
                name = gr.Textbox("my-documents", label="Collection name")
                column = gr.Textbox("", label="Text column (for .jsonl / .csv)", placeholder="text")
                index_btn = gr.Button("Index documents", elem_id="index")
        with gr.Row():
            forget = gr.Dropdown([], label="Document in this collection", allow_custom_value=False)
            remove_btn = gr.Button("Remove it from the collection", scale=0)
    with gr.Row():
        collection = gr.Dropdown([SAMPLE_COLLECTION], value=SAMPLE_COLLECTION, label="Collection", elem_id="collection")
        run_pick = gr.Dropdown(choices=[], label="Fine-tuned run", info="A finished run's adapter",
                               elem_id="run-pick",
                               allow_custom_value=True)  # runs finished after the page was built; checked on use
        refresh_btn = gr.Button("Refresh runs", scale=0)
    index_status = gr.Markdown(elem_id="index-status")
    with gr.Accordion("Retrieval settings", open=False):
        with gr.Row():
            k = gr.Slider(1, 10, value=3, step=1, label="Passages per answer (top-k)")
            min_score = gr.Slider(0, 1, value=0.0, step=0.05, label="Minimum score")
            mmr = gr.Slider(0, 1, value=0.0, step=0.1, label="Diversity (MMR); 0 = off")
            reranker = gr.Textbox("", label="Cross-encoder reranker (optional)",
                                  placeholder="a model id (hub reachable) or a local folder")
    question = gr.Textbox(label="Question", placeholder="How heavy is the Tilly T2?", elem_id="question")
    ask_btn = gr.Button("Ask all four", variant="primary", elem_id="ask")
    with gr.Row():
        outs = [gr.Markdown(f"#### {c}", elem_id=f"answer-{i}", container=True) for i, c in enumerate(COLUMNS)]
    outs.append(gr.Markdown(elem_id="compare-note"))
    with gr.Accordion("Evaluate on questions with reference answers", open=False):
        with gr.Row():
            qfile = gr.File(label="Questions (.jsonl or .csv with question, answer); empty = the 20 held-back "
                                  "Zorvane questions", file_types=[".jsonl", ".csv"], type="filepath")
            eval_btn = gr.Button("Evaluate the four columns", elem_id="evaluate")
        summary = gr.Dataframe(label="Summary per column", interactive=False, elem_id="eval-summary")
        chart = gr.Plot(label="Scores per column, with 95% intervals", elem_id="eval-chart")
        verdicts = gr.Dataframe(label="Which column is better, and how sure (paired bootstrap over the questions)",
                                interactive=False, wrap=True, elem_id="eval-verdicts")
        eval_note = gr.Markdown(elem_id="eval-note")
        rows = gr.Dataframe(label="Per question", interactive=False, wrap=True)
        files = gr.File(label="Download (CSV, JSON)", file_count="multiple", interactive=False)
    with gr.Accordion("Preference accuracy on held-out pairs", open=False):
        gr.Markdown("How often the model gives the chosen answer a higher likelihood than the rejected one, with "
                    "the adapter off (before) and on (after): the measure of a preference run (DPO, ORPO, KTO, "
                    "SimPO).")
        with gr.Row():
            pairs_file = gr.File(label="Pairs (prompt, chosen, rejected); empty = the 12 held-back Zorvane pairs",
                                 file_types=[".jsonl", ".json", ".csv", ".parquet"], type="filepath")
            pref_btn = gr.Button("Score the preference pairs", elem_id="score-pairs")
        pref_table = gr.Dataframe(label="Preference accuracy", interactive=False, elem_id="preference-table")
        pref_note = gr.Markdown(elem_id="preference-note")

    with gr.Accordion("Reward on held-out prompts (GRPO)", open=False):
        gr.Markdown("The base (adapter off) and the GRPO run each answer every held-out prompt once (greedy); the "
                    "run's own reward functions score the answers. Totals come with 95% bootstrap intervals over "
                    "the prompts, the change with a paired one.")
        with gr.Row():
            prompts_file = gr.File(label="Prompts (prompt, answer); empty = the 16 held-back sums",
                                   file_types=[".jsonl", ".json", ".csv", ".parquet"], type="filepath")
            reward_btn = gr.Button("Score the rewards before and after", elem_id="score-rewards")
        reward_table = gr.Dataframe(label="Reward", interactive=False, elem_id="reward-table")
        reward_note = gr.Markdown(elem_id="reward-note")

    with gr.Accordion("Benchmarks before and after (evaluation harness)", open=False):
        gr.Markdown("The base model (adapter off) and the run scored on evaluation-harness tasks through the "
                    "studio's OpenAI-compatible endpoint; each score with its few-shot count, prompt and 95% "
                    "interval. `general_mc` is outside the sample's domain: its change is what fine-tuning cost.")
        with gr.Row():
            bench_tasks = gr.CheckboxGroup(benchmarks.available_tasks(), value=["zorvane_mc", "general_mc"],
                                           label="Tasks", elem_id="bench-tasks")
            bench_limit = gr.Number(0, precision=0, label="Documents per task (0 = all)", minimum=0)
            bench_btn = gr.Button("Score before and after", elem_id="bench")
        bench_table = gr.Dataframe(label="Scores", interactive=False, wrap=True, elem_id="bench-table")
        bench_note = gr.Markdown(elem_id="bench-note")

    settings = [collection, k, min_score, mmr, reranker]
    index_btn.click(index_documents, [docs, name, column], [collection, index_status, forget])
    collection.change(choose_collection, collection, [index_status, forget])
    remove_btn.click(remove_document, [collection, forget], [index_status, forget])
    # Several users' questions run at once so the model's batcher can answer them in one batch (it holds
    # the cores one generate at a time, whatever the number of questions waiting).
    ask_btn.click(ask, [question, run_pick, model, *settings], outs, concurrency_limit=ASK_CONCURRENCY,
                  concurrency_id="ask")
    question.submit(ask, [question, run_pick, model, *settings], outs, concurrency_limit=ASK_CONCURRENCY,
                    concurrency_id="ask")
    eval_btn.click(run_evaluation, [qfile, run_pick, model, *settings],
                   [summary, chart, verdicts, eval_note, rows, files])
    pref_btn.click(score_preferences, [pairs_file, run_pick], [pref_table, pref_note])
    reward_btn.click(score_rewards, [prompts_file, run_pick], [reward_table, reward_note])
    bench_btn.click(run_benchmarks, [bench_tasks, bench_limit, run_pick], [bench_table, bench_note])
    return run_pick, refresh_btn, collection
