"""The `studio` command.

    studio                                  start the web UI (http://127.0.0.1:7860)
    studio --auth [--admin NAME ...]        the web UI behind sign-in with the accounts below; each person
                                            sees only their own work, an admin every run
    studio ... [--runs-per-person N] [--over-limit refuse|wait]
                                            a person's runs queued or training at once (default 1), and
                                            whether one more is refused or waits behind others' (sharing.py)
    studio users add NAME [--admin]         make an account (password from a prompt or standard input)
    studio users list | remove NAME         the accounts; take one away
    studio train CONFIG.yaml [--field value ...]
                                            train without the UI; same process, files and events
    studio train --resume RUN_ID            continue a stopped or interrupted run from its last checkpoint
    studio train CONFIG.yaml --print-command [--machines N --machine-rank R --main-ip IP]
                                            create the run and print its `accelerate launch` command
                                            (ZeRO / several processes; run it on each machine)
    studio export RUN_ID [--merge] [--archive] [--onnx] [--gguf [--quant f16|bf16|q8_0]] [--push USER/REPO]
                         [--what adapter|merged]
                                            merged model, zip, ONNX (checked under ONNX Runtime), GGUF and an
                                            Ollama Modelfile (checked through transformers), Hub upload (token
                                            from HF_TOKEN; the repo is private unless --public); each with a
                                            README model card
    studio serve [RUN_ID ...] [--port 8000] [--host 127.0.0.1] [--api-key KEY]
                                            an OpenAI-compatible endpoint (/v1/models, /v1/chat/completions)
                                            for the base model and each run's adapter, on one copy of the base
    studio runs                             list runs, with their owners (the operator sees every run)
    studio runs give RUN_ID OWNER           hand a run over (OWNER: local, user:NAME, hf:NAME)
    studio advise [SCENARIO ...]            the scenario matrix with the project's readings; methods ranked
    studio advise --probe [--model M] [--data FILE] [--methods lora,dora,...] [--steps N]
                                            a few measured steps of each method on your model and data
    studio advise --check [--model M] [--methods ...]
                                            memory estimate against the measured peak of real CPU runs
    studio data check FILE [FILE ...] [--model M] [--max-length N] [--map prompt=COL,completion=COL]
                                            the validation report; exit 1 when there is an error
    studio data export FILE [FILE ...] -o OUT.jsonl
                                            the cleaned examples as chat JSONL for hosted services
    studio data bench [--rows N]            rows per second the validator reads
    studio data generate DOCS... -o OUT.jsonl [--phrasings 2] [--held-out 0.2] [--raft]
                         [--teacher URL --teacher-model NAME]
                                            question-answer pairs with their evidence quotes from documents,
                                            offline by rules or by a teacher endpoint; a held-out split by
                                            chunk and a report of what was dropped and why (rag/generate.py)
    studio decide DOCS... [--questions FILE] [--budget-minutes N]
                                            fine-tune, RAG, or both? generate, train plain and RAFT, score the
                                            grid with intervals and say which (studio/decide.py)
    studio rag index PATH [PATH ...] --name NAME    add documents to a saved collection
    studio rag search NAME "question" [--k K]       the top passages with scores
    studio rag bench [--sizes 10000,100000]         ingest cost and query latency / recall
    studio bench [--methods lora,full] [--steps N] [--data FILE --train-on assistant] [--run RUN_ID] [--json FILE]
                                            training speed against a bare TRL script, MFU, Compare
                                            against a sequential loop, app start (see studio/bench.py)
    studio eval [RUN_ID] [--questions FILE] [--limit N] [--batch N] [--summary-csv FILE]
                                            score base / base+RAG / fine-tuned / fine-tuned+RAG
                                            on held-back questions, in batches, with 95% bootstrap
                                            intervals and paired differences between the columns
    studio eval RUN_ID --tasks zorvane_mc,general_mc [--tasks-dir DIR] [--url URL]
                                            evaluation-harness tasks on the base and the run through
                                            the OpenAI-compatible endpoint; the forgetting line

`studio train` starts the very process the UI starts (studio/train_process.py) and prints its
events; Ctrl-C asks it to save and stop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from engine.advise import advisor, probe
from engine.data.bench import main as data_bench
from engine.data.dataset import Issue, check_files, export_chat_jsonl, load_examples, token_stats
from engine.data.formats import parse_mapping
from engine.data.pairs import OBJECTIVES as PREFERENCE, data_refusal, pair_stats
from engine.data.prompts import missing_references, prompt_stats
from engine.errors import StudioError
from engine.export import archive as export
from engine.export.gguf import export_gguf
from engine.infer.batching import serve_forever
from engine.infer.chat import run_answerers
from engine.infer.preference import add_to_evaluation, append_summary_rows
from engine.infer.reward_scores import reward_scores
from engine.infer import benchmarks
from engine.infer.batching import run_here
from engine.infer.serve import load_models, start as start_server
from engine.infer.serve_vllm import load_vllm_models
from engine.models import load_tokenizer
from engine.train.config import ASSETS, SAMPLE_PROMPTS_EVAL, ConfigError, RunConfig, choices, grpo_prompt_limit, prompt_limit
from engine.train.distributed import launch_command, write_deepspeed_config
from engine.train.events import Event, Failed, Finished, Interrupted, Logged, Started, Stopping, Warned
from engine.train.preflight import create_run
from engine.train.runs import ACTIVE, Run, launch, list_runs, runs_root, stop, storage_problem
from rag.bench import main as rag_bench
from studio.decide import main as decide_main
from rag.generate import Options as GenerateOptions, generate as generate_pairs
from studio import sharing
from rag.embeddings import ServedEmbedder
from rag.evaluate import (evaluate, format_confidence, format_summary, load_questions, write_csv, write_json,
                          write_summary_csv)
from rag.pipeline import RagPipeline, Reranker, sample_pipeline

SAMPLE_QUESTIONS = ASSETS / "sample" / "eval.jsonl"
SAMPLE_PAIRS = ASSETS / "sample" / "preference-eval.jsonl"


def train_parser() -> argparse.ArgumentParser:
    """`studio train`'s options, one per RunConfig field with its help, type, choices and default
    (transformers' HfArgumentParser reads them off the dataclass). Only the options given override the
    YAML; numbers are passed on as typed, for RunConfig to check with a sentence naming the field."""
    from transformers import HfArgumentParser

    p = HfArgumentParser(RunConfig, prog="studio train", usage="studio train CONFIG.yaml [--field value ...]\n"
                         "       studio train --resume RUN_ID", description="Train without the UI: the run CONFIG.yaml "
                         "describes, each option given overriding that field.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for action in p._actions:
        if action.dest != "help":
            action.help = f"{action.help} (default: {_shown(action.default)})"
            action.default = argparse.SUPPRESS  # only what is given overrides the YAML
            if action.type in (int, float):
                action.type = None
    p.formatter_class = argparse.HelpFormatter
    return p


def _shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value) if value not in ("", None) else "-"


def _overrides(args: list[str]) -> dict:
    """The fields given on the command line (`--max_steps 7`, `--learning-rate=0.01`), as RunConfig reads them."""
    namespace, unknown = train_parser().parse_known_args(args)
    if unknown:
        name = unknown[0].lstrip("-").split("=")[0]
        raise ConfigError(f"{name}: not a setting; `studio train --help` lists them." if unknown[0].startswith("--")
                          else f"{unknown[0]}: expected --field value.")
    return vars(namespace)


def _follow(run: Run) -> int:
    seen = 0

    def show_new() -> None:
        nonlocal seen
        session = run.state().session  # the events of the process just launched, read as they come
        for e in session[seen:]:
            _print_event(e)
        seen = len(session)

    try:
        while True:
            show_new()
            status = run.status()
            if status not in ACTIVE:
                show_new()
                return 0 if status in ("finished", "stopped") else 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping: the trainer finishes its step and saves a checkpoint first (Ctrl-C again ends it now) ...",
              flush=True)
        try:
            stop(run)
        except KeyboardInterrupt:
            stop(run, grace_s=0)
        show_new()
        return 130


def _print_event(e: Event) -> None:
    if isinstance(e, Logged):
        eta = f"{e.eta_s:.0f}s" if e.eta_s is not None else "?"
        reward = f"  reward {e.reward:.3f} ± {e.reward_std or 0:.3f}" if isinstance(e.reward, (int, float)) else ""
        print(f"step {e.step}/{e.total_steps}  loss {e.loss}{reward}  {e.tokens_per_s} tok/s  eta {eta}", flush=True)
    elif isinstance(e, (Failed, Interrupted)):
        print(f"{e.kind}: {e.reason}", flush=True)
    elif isinstance(e, Finished):  # and Stopped
        where = f"at step {e.step}; adapter in {e.adapter}" if e.adapter else ""
        print(" ".join(x for x in (e.kind, where, e.reason or "") if x), flush=True)
    elif isinstance(e, Warned):
        print(f"warning: {e.message.removeprefix('warning: ')}", flush=True)
    elif isinstance(e, Stopping) and e.training:
        print(f"stopping: finishing step {e.step} and saving, about {e.expected_s or 0:.0f} s "
              f"(ended after {e.grace_s or 0:.0f} s)", flush=True)
    elif isinstance(e, Started):
        print(f"started: {e.total_steps} steps" + (f"; GRPO completions sampled by {e.rollouts}" if e.rollouts else ""),
              flush=True)


def cmd_train(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        train_parser().print_help()
        return 0 if args else 2
    if args[:1] == ["--resume"]:
        if len(args) != 2:
            raise ConfigError("--resume needs a run id (see `studio runs`).")
        run = Run(runs_root() / args[1])
        if not (run.dir / "config.yaml").exists():
            raise ConfigError(f"{args[1]}: no such run in {runs_root()}.")
    else:
        if not args or args[0].startswith("--"):
            raise ConfigError("usage: studio train CONFIG.yaml [--field value ...]")
        if "--print-command" in args:
            return _print_command(args)
        run = create_run(RunConfig.from_yaml(args[0], _overrides(args[1:])))
    print(f"run {run.id} in {run.dir}", flush=True)
    launch(run)
    return _follow(run)


def _print_command(args: list[str]) -> int:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--machines", type=int, default=1)
    where.add_argument("--machine-rank", "--machine_rank", dest="machine_rank", type=int, default=0)
    where.add_argument("--main-ip", "--main_ip", dest="main_ip", default=None)
    spots, rest = where.parse_known_args([a for a in args[1:] if a != "--print-command"])
    machines, machine_rank, main_ip = spots.machines, spots.machine_rank, spots.main_ip
    cfg = RunConfig.from_yaml(args[0], _overrides(rest))
    if not cfg.distributed():
        raise ConfigError("--print-command: this config trains in one process; set zero_stage or num_processes.")
    run = create_run(cfg)
    ds = write_deepspeed_config(run.config, run.dir)
    cmd = launch_command(run.config, run.dir / "config.yaml", ds, port=29500, machines=machines,
                         machine_rank=machine_rank, main_ip=main_ip)
    print(f"# run {run.id}: the same folder must exist at {run.dir} on every machine (copy it, or share it)")
    if machines > 1:
        print("# on each machine, with --machine_rank 0 .. " f"{machines - 1} (rank 0 writes events and outputs):")
    print(" ".join(cmd))
    return 0


def cmd_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="studio export")
    p.add_argument("run_id")
    p.add_argument("--merge", action="store_true")
    p.add_argument("--archive", action="store_true")
    p.add_argument("--onnx", action="store_true")
    p.add_argument("--gguf", action="store_true", help="GGUF for llama.cpp / Ollama, with a Modelfile")
    p.add_argument("--quant", choices=("f16", "bf16", "q8_0"), default="f16", help="the GGUF's number format")
    p.add_argument("--push", metavar="USER/REPO")
    p.add_argument("--what", choices=("adapter", "merged"), default="adapter")
    p.add_argument("--public", action="store_true")
    p.add_argument("--endpoint", help="another Hub endpoint (a mirror, or a test server)")
    a = p.parse_args(argv)
    run = Run(runs_root() / a.run_id)
    if not (run.dir / "config.yaml").exists():
        raise ConfigError(f"{a.run_id}: no such run in {runs_root()}.")
    if not (a.merge or a.archive or a.onnx or a.gguf or a.push):
        raise ConfigError("studio export: say what to make: --merge, --archive, --onnx, --gguf or --push USER/REPO.")

    def show(fraction: float, text: str) -> None:
        print(f"[{fraction:4.0%}] {text}", flush=True)

    if a.merge:
        print(f"merged model: {export.merge(run, show)}")
    if a.archive:
        print(f"archive: {export.archive(run, a.what, show)}")
    if a.onnx:
        path, diff = export.export_onnx(run, show)
        print(f"ONNX: {path} (largest logit difference under ONNX Runtime {diff:.2e})")
    if a.gguf:
        path, check = export_gguf(run, a.quant, show)
        print(f"GGUF: {path} (round trip: {check.describe()})")
        print(f"Modelfile: {path.parent / 'Modelfile'}  (ollama create {run.id.lower()} -f Modelfile)")
    if a.push:
        url = export.push_to_hub(run, a.push, what=a.what, private=not a.public, endpoint=a.endpoint, progress=show)
        print(f"pushed: {url}")
    return 0


def cmd_advise(argv: list[str]) -> int:
    if not argv or not argv[0].startswith("--"):
        return advisor.main(argv)
    p = argparse.ArgumentParser(prog="studio advise")
    p.add_argument("--probe", action="store_true")
    p.add_argument("--check", action="store_true")
    p.add_argument("--model", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--methods", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    a = p.parse_args(argv)
    model = a.model or probe.DEFAULT_MODEL
    if a.probe:
        args = ["--model", model, "--batch-size", str(a.batch_size), "--steps", str(a.steps or 8)]
        args += ["--data", a.data] if a.data else []
        args += ["--methods", a.methods] if a.methods else []
        return probe.main(args)
    if not a.check:
        raise ConfigError("studio advise: say --probe or --check (or list scenarios).")
    methods = a.methods.split(",") if a.methods else ["lora", "dora", "ia3", "qlora", "full"]
    rows = probe.check_estimates(model, methods, a.batch_size, a.seq, a.steps or 3,
                                 progress=lambda f, t: print(f"[{f:4.0%}] {t}", flush=True))
    import torch

    where = f"GPU ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "CPU fp32"
    print(f"\n{model}, {where}, batch {a.batch_size} x {a.seq} tokens:")
    print("| method | trained (measured) | trained (formula) | peak GiB measured | estimate GiB | error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r.get("error") is None:
            print(f"| {r['method']} | {r['status']}: {r.get('reason') or ''} | | | | |")
            continue
        print(f"| {r['method']} | {r['trainable_params']:,} | {r['estimated_trainable']:,} | "
              f"{r['peak_memory_gb']:.3f} | {r['estimate_gb']:.3f} | {r['error']:+.1%} |")
    return 0


def _mapping(text: str | None) -> dict | None:
    try:
        return parse_mapping(text)
    except ValueError as err:
        raise ConfigError(str(err).replace("columns:", "--map:") + ".") from None


def cmd_data(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="studio data")
    p.add_argument("action", choices=["check", "export", "bench", "generate"])
    p.add_argument("files", nargs="*")
    p.add_argument("--model", help="count tokens with this model's tokenizer")
    p.add_argument("--max-length", type=int, default=RunConfig.max_length)
    p.add_argument("--max-prompt-length", type=int, default=RunConfig.max_prompt_length,
                   help="preference pairs: the prompt tokens kept (0: half of max length)")
    p.add_argument("--map", help="column mapping for tables of no known format (pairs: prompt=,chosen=,rejected=; "
                                 "GRPO prompts: prompt=[,answer=])")
    p.add_argument("--objective", choices=choices()["objective"],
                   help="check the data as a run of this objective reads it (grpo: prompts, a conversation ending "
                        "with the user's turn among them)")
    p.add_argument("--max-completion-length", type=int, default=RunConfig.max_completion_length,
                   help="grpo: the tokens each completion gets; the prompt gets max length minus this")
    p.add_argument("-o", "--output", help="export: the chat JSONL to write")
    p.add_argument("--rows", type=int, default=100_000, help="bench: rows in the generated file")
    g = p.add_argument_group("generate (documents in, question-answer pairs out)")
    g.add_argument("--phrasings", type=int, default=GenerateOptions.phrasings, help="questions kept per fact")
    g.add_argument("--held-out", type=float, default=GenerateOptions.held_out,
                   help="share of chunks never trained on (their questions are held out)")
    g.add_argument("--round-trip-k", type=int, default=GenerateOptions.round_trip_k,
                   help="a question must retrieve its own chunk among this many passages")
    g.add_argument("--raft", action="store_true", help="also write OUT.raft.jsonl: each question in the \"+ RAG\" "
                                                       "prompt with its chunk among hard distractors (RAFT)")
    g.add_argument("--raft-p", type=float, default=GenerateOptions.raft_p, help="RAFT: share of prompts with the oracle chunk")
    g.add_argument("--raft-k", type=int, default=GenerateOptions.raft_k, help="RAFT: passages per prompt")
    g.add_argument("--teacher", default="", help="an OpenAI-compatible endpoint (.../v1) to write the pairs "
                                                 "(default: the offline rules)")
    g.add_argument("--teacher-model", default="", help="the model name the teacher serves")
    g.add_argument("--teacher-key-env", default=GenerateOptions.teacher_key_env,
                   help="the environment variable holding the teacher's API key")
    g.add_argument("--teacher-max-tokens", type=int, default=0,
                   help="the length of the teacher's answers in tokens (default: the server's own)")
    a = p.parse_args(argv)
    if a.action == "bench":
        return data_bench(a.rows)
    if a.action == "generate":
        return _generate(a)
    if not a.files:
        raise ConfigError(f"studio data {a.action}: name at least one file.")
    report = check_files(a.files, _mapping(a.map), objective=a.objective)
    kinds = {e.kind for e in report.examples}
    refused = data_refusal(a.objective, kinds) if a.objective else None
    if refused:
        report.errors.append(Issue("", refused))
    if report.examples and (kinds == {"prompts"} or a.objective == "grpo"):
        print("\n".join(report.lines()))
        missing = missing_references(report.examples)
        print(f"read as prompts for GRPO; {'every prompt has a' if not missing else f'{missing} has no'} reference "
              "answer" + ("" if not missing else " (rewards that compare with one cannot score it)"))
        if a.model:
            limit = grpo_prompt_limit(a.max_prompt_length, a.max_length, a.max_completion_length)
            stats = prompt_stats(report.examples, load_tokenizer(a.model), limit)
            print("\n".join(f"tokens: {line}" for line in stats.lines(limit, a.max_completion_length)))
    elif report.examples and kinds != {"sft"}:
        print("\n".join(report.lines()))
        shapes = ", ".join(f"{n} {fmt}" for fmt, n in report.formats().most_common())
        print(f"read as preference data: {shapes}; train it with objective "
              + ("kto" if kinds == {"unpaired"} else "dpo, orpo or simpo (kto with kto_from_pairs: true)"))
        if a.model:
            limit = prompt_limit(a.max_prompt_length, a.max_length)
            stats = pair_stats(report.examples, load_tokenizer(a.model), a.max_length, limit)
            print("\n".join(f"tokens: {line}" for line in stats.lines(a.max_length, limit)))
    elif a.model and report.examples:
        stats = token_stats(report.examples, load_tokenizer(a.model), a.max_length)
        issue = stats.truncation_issue()
        if issue:
            report.warnings.append(issue)
        print("\n".join(report.lines()))
        print("\n".join(f"tokens: {line}" for line in stats.sentences()))
    else:
        print("\n".join(report.lines()))
    if report.errors:
        return 1
    if a.action == "export":
        if not a.output:
            raise ConfigError("studio data export: give the output file with -o OUT.jsonl.")
        n = export_chat_jsonl(report.examples, a.output)
        print(f"wrote {n} chat examples to {a.output}")
    return 0


def _generate(a) -> int:
    if not a.files:
        raise ConfigError("studio data generate: name the documents (files or folders).")
    if not a.output:
        raise ConfigError("studio data generate: give the output file with -o OUT.jsonl.")
    options = GenerateOptions(phrasings=a.phrasings, held_out=a.held_out, round_trip_k=a.round_trip_k, raft=a.raft,
                              raft_p=a.raft_p, raft_k=a.raft_k, teacher=a.teacher, teacher_model=a.teacher_model,
                              teacher_key_env=a.teacher_key_env, teacher_max_tokens=a.teacher_max_tokens)
    try:
        report = generate_pairs(a.files, a.output, options, progress=lambda i, n, w: print(
            f"\r{i}/{n} chunks {w[:50]:<50}", end="", file=sys.stderr, flush=True))
    finally:
        print(file=sys.stderr)  # the progress line ends before anything else is said
    print("\n".join(report.lines()))
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 0 if report.train else 1


def cmd_rag(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="studio rag")
    p.add_argument("action", choices=["index", "search", "bench"])
    p.add_argument("args", nargs="*")
    p.add_argument("--name", default="my-documents")
    p.add_argument("--column", help="text column of .jsonl / .csv files")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--embedder", help="sentence-transformers model id or folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--reranker", help="cross-encoder model id or folder to re-rank the passages")
    p.add_argument("--sizes", default="10000,100000")
    a = p.parse_args(argv)
    if a.action == "bench":
        return rag_bench(tuple(int(x) for x in a.sizes.split(",")))

    if a.action == "index":
        if not a.args:
            raise ConfigError("studio rag index: name at least one file or folder.")
        pipeline = RagPipeline.open(a.name, a.embedder)
        report = pipeline.index(a.args, column=a.column,
                                progress=lambda i, n, f: print(f"\r{i}/{n} {f[:40]:<40}", end="", file=sys.stderr))
        print(file=sys.stderr)
        print(report.sentence())
        return 0
    if len(a.args) != 2:
        raise ConfigError('studio rag search NAME "question"')

    pipeline = RagPipeline.open(a.args[0], a.embedder, k=a.k, reranker=Reranker(a.reranker) if a.reranker else None)
    if not len(pipeline.store):
        raise ConfigError(f"no collection {a.args[0]!r} with documents; index some first.")
    for h in pipeline.retrieve(a.args[1]):
        print(f"{h.score:.3f}  {h.chunk.source}  {h.chunk.location()}  {h.chunk.text[:100]!r}")
    return 0


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
    a = p.parse_args(argv)
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
        batch_questions=a.batch or None,
    )
    print(file=sys.stderr)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0].startswith("--"):
            return sharing.cmd_page(argv)
        command, rest = argv[0], argv[1:]
        if command == "train":
            return cmd_train(rest)
        if command == "runs":
            return sharing.cmd_runs(rest)
        if command == "users":
            return sharing.cmd_users(rest)
        if command == "export":
            return cmd_export(rest)
        if command == "advise":
            return cmd_advise(rest)
        if command == "eval":
            return cmd_eval(rest)
        if command == "serve":
            return cmd_serve(rest)
        if command == "data":
            return cmd_data(rest)
        if command == "rag":
            return cmd_rag(rest)
        if command == "decide":
            return decide_main(rest)
        if command == "bench":
            from studio.bench import main as bench  # deferred: it imports the UI, and with it gradio

            return bench(rest)
        print(__doc__)
        return 0 if command in ("-h", "--help", "help") else 2
    except StudioError as exc:  # what a person can cause: one sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise  # not a disk or folder a person can fix: a bug, with its traceback
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run(argv: list[str] | None = None) -> int:
    """`main`, and for anything that is not a StudioError the traceback with a request to report it."""
    try:
        return main(argv)
    except Exception:
        traceback.print_exc()
        print("error: this is a bug in the studio, not in what you gave it; please report it with the "
              "traceback above.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
