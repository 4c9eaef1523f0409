"""The `studio` command.

    studio                                  start the web UI (http://127.0.0.1:7860)
    studio --auth [--admin NAME ...]        the web UI behind sign-in with the accounts below; each person
                                            sees only their own work, an admin every run
    studio ... [--runs-per-person N] [--over-limit refuse|wait] [--models-dir DIR ...]
                                            a person's runs queued or training at once (default 1), and
                                            whether one more is refused or waits behind others' (sharing.py);
                                            folders of models everyone of a shared page may load
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
import sys
import time
import traceback

from engine.advise import advisor, probe
from engine.errors import StudioError
from engine.export import archive as export
from engine.export.gguf import export_gguf
from engine.train.config import ConfigError, RunConfig
from engine.train.distributed import launch_command, write_deepspeed_config
from engine.train.events import Event, Failed, Finished, Interrupted, Logged, Started, Stopping, Warned
from engine.train.preflight import create_run
from engine.train.runs import ACTIVE, Run, launch, runs_root, stop, storage_problem
from studio import sharing
from studio.data_commands import cmd_data, cmd_rag
from studio.decide import main as decide_main
from studio.model_commands import cmd_eval, cmd_serve


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
