"""`studio eval` and `studio serve`: scoring a run and serving it, commands of `studio` (studio/cli.py).

    studio eval [RUN_ID] [--questions FILE] [--limit N] [--batch N] [--summary-csv FILE]
    studio eval RUN_ID --tasks zorvane_mc,general_mc [--tasks-dir DIR] [--url URL]
    studio serve [RUN_ID ...] [--port 8000] [--host 127.0.0.1] [--api-key KEY] [--engine studio|vllm]

`studio --help` says what each does; a bad run or file is one sentence (ConfigError), said by cli.main.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine.data.dataset import load_examples
from engine.data.pairs import OBJECTIVES as PREFERENCE
from engine.infer import benchmarks
from engine.infer.batching import run_here, serve_forever
from engine.infer.chat import run_answerers
from engine.infer.preference import add_to_evaluation, append_summary_rows
from engine.infer.reward_scores import reward_scores
from engine.infer.serve import load_models, start as start_server
from engine.infer.serve_vllm import load_vllm_models
from engine.train.config import (SAMPLE_EVAL as SAMPLE_QUESTIONS, SAMPLE_PAIRS_EVAL as SAMPLE_PAIRS,
                                 SAMPLE_PROMPTS_EVAL, ConfigError)
from engine.train.runs import Run, list_runs, runs_root
from rag.embeddings import ServedEmbedder
from rag.evaluate import (evaluate, format_confidence, format_summary, load_questions, write_csv, write_json,
                          write_summary_csv)
from rag.judge import Judge
from rag.pipeline import RagPipeline, sample_pipeline


def cmd_eval(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="studio eval")
    p.add_argument("run", nargs="?", help="run id (default: the newest finished run)")
    p.add_argument("--questions", default=str(SAMPLE_QUESTIONS), help="JSONL or CSV with question and answer")
    p.add_argument("--docs", nargs="*", help="documents for RAG (default: the bundled Zorvane documents)")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--hit-k", type=int, default=5)
    p.add_argument("--batch", type=int, default=0,
                   help="questions answered together (default: as many as the memory estimate allows)")
    p.add_argument("--csv", help="write the per-question table here")
    p.add_argument("--summary-csv", help="write each column's means with 95%% intervals, and the paired differences")
    p.add_argument("--json", help="write the summary and rows here")
    p.add_argument("--pairs", help="preference pairs to score (default for a preference run: the bundled "
                                   "held-back Zorvane pairs); the preference accuracy before and after")
    p.add_argument("--prompts", help="a GRPO run: held-out prompts (with answers) whose answers the run's rewards "
                                     "score, before and after (default for a grpo run: assets/sample/grpo-eval.jsonl)")
    p.add_argument("--tasks", help="evaluation-harness tasks to score before and after instead (comma-separated: "
                                   "zorvane_mc, zorvane_qa, general_mc, or yours from --tasks-dir)")
    p.add_argument("--tasks-dir", help="a folder of the harness's task YAML files with their local data")
    p.add_argument("--url", help="with --tasks: an OpenAI-compatible endpoint (.../v1) already serving the base "
                                 "and the run (default: the studio's own, started for this)")
    p.add_argument("--api-key", help="with --url: its key")
    p.add_argument("--judge", metavar="URL", help="an OpenAI-compatible endpoint (.../v1) that judges each answer "
                                                  "against its reference; its verdict is then the primary score "
                                                  "(key: JUDGE_API_KEY)")
    p.add_argument("--judge-model", metavar="NAME", help="with --judge: the model it serves")
    a = p.parse_args(argv)
    judge = Judge(a.judge, a.judge_model or "") if a.judge else None
    if a.run:
        run = Run(runs_root() / a.run)
    else:
        run = next((r for r in list_runs() if r.weights), None)
        if run is None:
            raise ConfigError("no finished run with an adapter or model; train one first.")
    if run.weights is None:
        raise ConfigError(f"{run.no_weights()}.")
    if a.prompts or (run.config.objective == "grpo" and not a.tasks):
        prompts = a.prompts or str(SAMPLE_PROMPTS_EVAL)
        scored = reward_scores(run, load_examples(prompts, objective="grpo"))
        for row in scored.rows():
            print("  ".join(f"{k}: {v}" for k, v in row.items()))
        print(scored.sentence())
        if a.json:
            Path(a.json).write_text(json.dumps({"rows": scored.rows(), "change": scored.change,
                                                "answers": scored.answers}, indent=2), encoding="utf-8")
        return 0
    if a.tasks:
        tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
        report = run_here(benchmarks.compare, run, tasks, a.tasks_dir, a.limit or None, a.url, a.api_key)
        print("\n".join(report.lines()))
        if a.json:
            Path(a.json).write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
        return 0
    try:
        questions = load_questions(a.questions)[: a.limit or None]
    except (ValueError, OSError) as err:
        raise ConfigError(str(err)) from None
    answer = run_answerers(run)
    if a.docs:
        pipeline = RagPipeline()
        report = pipeline.index(a.docs)
        print(report.sentence(), file=sys.stderr)
    else:
        pipeline = sample_pipeline()
    start = time.perf_counter()
    result = evaluate(
        questions, pipeline, answer, hit_k=a.hit_k, fit=(answer.chat.tokenizer, answer.chat.max_prompt_tokens()),
        progress=lambda i, n: print(f"\r{i}/{n} questions", end="", file=sys.stderr, flush=True),
        batch_questions=a.batch or None, judge=judge,
    )
    print(file=sys.stderr)
    if judge and judge.failures:
        print(f"warning: the judge's reply was not the JSON asked for on {judge.failures} answers; they count as "
              "not correct.", file=sys.stderr)
    print(f"run {run.id}, {len(questions)} questions from {Path(a.questions).name}, answered in "
          f"{time.perf_counter() - start:.1f} s; generation in {answer.precision()}")
    print(format_summary(result["summary"], a.hit_k))
    print(format_confidence(result))
    pairs = a.pairs or (str(SAMPLE_PAIRS) if run.config.objective in PREFERENCE else None)
    if pairs:
        print(add_to_evaluation(result, run, pairs).sentence())
    write_json(result, run.dir / "eval.json")
    if a.csv:
        write_csv(result["rows"], a.csv)
    if a.summary_csv:
        write_summary_csv(result, a.summary_csv)

        append_summary_rows(a.summary_csv, result)
    if a.json:
        write_json(result, a.json)
    return 0


def cmd_serve(argv: list[str]) -> int:
    """The OpenAI-compatible endpoint (engine/infer/serve.py) on the engine asked for."""
    p = argparse.ArgumentParser(prog="studio serve", description="An OpenAI-compatible endpoint for runs.")
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="finished runs to serve (their base is served too)")
    p.add_argument("--model", help="the base model to serve (default: the runs' base, else the default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every request (or set STUDIO_API_KEY)")
    p.add_argument("--engine", choices=("studio", "vllm"), default="studio",
                   help="vllm: serve through vLLM with LoRA adapters (a GPU with vllm installed)")
    p.add_argument("--no-embeddings", action="store_true",
                   help="do not load the RAG embedder for /v1/embeddings (studio-embedder)")
    a = p.parse_args(argv)
    if a.engine == "vllm":
        models = load_vllm_models(a.runs, a.model)
    else:
        models = load_models(a.runs, a.model)
    embedder = None if a.no_embeddings else ServedEmbedder()
    server = start_server(models, a.host, a.port, a.api_key, embedder)
    print(f"serving {', '.join([*models, *([embedder.id] if embedder else [])])} at http://{a.host}:{a.port}/v1"
          + (" (API key required)" if a.api_key else ""), flush=True)
    try:
        serve_forever()
    except KeyboardInterrupt:
        server.should_exit = True
    return 0
