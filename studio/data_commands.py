"""`studio data` and `studio rag`: the data and documents commands of the `studio` command (studio/cli.py).

    studio data check FILE [FILE ...] [--model M] [--max-length N] [--map prompt=COL,completion=COL]
    studio data export FILE [FILE ...] -o OUT.jsonl
    studio data bench [--rows N]
    studio data generate DOCS... -o OUT.jsonl [--phrasings 2] [--held-out 0.2] [--raft]
                         [--teacher URL --teacher-model NAME]
    studio rag index PATH [PATH ...] --name NAME
    studio rag search NAME "question" [--k K]
    studio rag bench [--sizes 10000,100000]

`studio --help` says what each does; a bad file or flag is one sentence (ConfigError), said by cli.main.
"""

from __future__ import annotations

import argparse
import sys

from engine.data.bench import main as data_bench
from engine.data.dataset import Issue, check_files, export_chat_jsonl, token_stats
from engine.data.formats import parse_mapping
from engine.data.pairs import data_refusal, pair_stats
from engine.data.prompts import missing_references, prompt_stats
from engine.models import load_tokenizer
from engine.train.config import ConfigError, RunConfig, choices, grpo_prompt_limit, prompt_limit
from rag.bench import main as rag_bench
from rag.generate import Options as GenerateOptions, generate as generate_pairs
from rag.pipeline import RagPipeline, Reranker


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
    g.add_argument("--raft-p", type=float, default=GenerateOptions.raft_p,
                   help="RAFT: share of prompts with the oracle chunk")
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
