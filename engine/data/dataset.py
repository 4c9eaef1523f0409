"""Training data: read any supported file, report every problem by line and field, and tokenize.

`check_files(paths)` reads JSONL, JSON, CSV/TSV, Parquet or TXT files in any of the formats
of engine/data/formats.py and returns a `DataReport`: the examples in one internal chat form,
errors (which block training) and warnings (which do not), each naming the file, the line
or row, and the field. `token_stats` adds lengths under a model's tokenizer;
`tokenize_example` renders an example with the model's chat template and marks which
tokens the loss uses (assistant turns by default, or all tokens).

    python -m engine.data.dataset FILE [FILE ...]       # the same report as `studio data check`
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.data.formats import (Example, FileError, RecordError, SUFFIXES, hub_records, iter_records,
                                 looks_like_hub_id, parse_mapping, to_example)
from engine.errors import StudioError
from engine.models import hub_reachable, load_tokenizer

MIN_EXAMPLES = 1
FEW_EXAMPLES = 20
MAX_LISTED = 50  # problems listed per kind; the rest are counted
# Memory budget of token counting: one example is tokenized on at most STATS_CHARS characters (a longer one
# is scaled from that prefix), so token statistics and the token view cost about the same for any example.
# An example over MAX_EXAMPLE_CHARS (about a million tokens, past any max_length) is refused when read.
STATS_CHARS = 64 * 1024
MAX_EXAMPLE_CHARS = 4 * 1024 * 1024


class DataError(StudioError, ValueError):
    """A problem in a dataset, said in one sentence that names the line and field."""


@dataclass
class Issue:
    where: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}." if self.where else f"{self.message}."


@dataclass
class DataReport:
    files: list[str]
    examples: list[Example] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.examples)

    def formats(self) -> Counter:
        return Counter(e.format for e in self.examples)

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {fmt}" for fmt, n in self.formats().most_common())
        text = f"{len(self.examples)} examples ({kinds or 'none'}) from {self.rows} rows in {len(self.files)} file(s)"
        return f"{text}; {len(self.errors)} errors, {len(self.warnings)} warnings"

    def lines(self) -> list[str]:
        out = [self.summary()]
        for label, items in (("error", self.errors), ("warning", self.warnings)):
            shown = items[:MAX_LISTED]
            out += [f"{label}: {i}" for i in shown]
            if len(items) > len(shown):
                out.append(f"{label}: ... and {len(items) - len(shown)} more")
        return out

    def first_error(self) -> str:
        more = f" (and {len(self.errors) - 1} more problems)" if len(self.errors) > 1 else ""
        return f"{self.errors[0]}{more}" if self.errors else ""


def _decode(path: Path, raw: bytes, report: DataReport) -> str | None:
    name = path.name
    if raw.startswith(b"\xef\xbb\xbf"):
        report.warnings.append(Issue(name, "starts with a byte-order mark (BOM); it was ignored"))
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1)
        report.errors.append(Issue(f"{name} line {line}", f"byte {exc.start} (column {col + 1}) is not UTF-8 "
                                   "text; save the file as UTF-8"))
        return None
    crlf = text.count("\r\n")
    if crlf:
        report.warnings.append(Issue(name, f"{crlf} lines end with Windows line ends (\\r\\n); "
                                     "they were read as plain line ends"))
        text = text.replace("\r\n", "\n")
    return text


def _check_conversation(ex: Example, objective: str | None = None) -> str | None:
    """What is wrong with one conversation, or None. A conversation ending with the user's turn is a prompt
    for objective grpo (a {"prompt"} record is one for any objective: data_refusal says which takes it)."""
    msgs = ex.messages
    for i, m in enumerate(msgs):
        if not m["content"].strip():
            return f"messages[{i}].content is empty"
    if ex.kind == "prompts" and (objective == "grpo" or ex.format == "prompts"):
        return None
    problem = None
    if not any(m["role"] == "assistant" for m in msgs):
        problem = "the conversation has no assistant message"
    elif not any(m["role"] == "user" for m in msgs):
        problem = "the conversation has no user message"
    elif msgs[-1]["role"] != "assistant":
        problem = "the conversation must end with an assistant message"
    if problem and ex.kind == "prompts" and objective is None:
        problem += " (a prompt for GRPO, answered by the model, is read with objective grpo)"
    if problem:
        return problem
    if all(m["weight"] == 0 for m in msgs if m["role"] == "assistant"):
        return "every assistant message has weight 0, so nothing would be trained"
    return None


def check_files(paths, mapping: dict | None = None, min_examples: int = MIN_EXAMPLES,
                objective: str | None = None) -> DataReport:
    """Every record of `paths` checked, by line; `objective` (when known) decides how a conversation ending with
    the user's turn reads: a prompt for grpo, a conversation missing its answer for the others."""
    paths = [Path(p) for p in paths]
    report = DataReport([str(p) for p in paths])
    seen: dict[str, str] = {}
    for path in paths:
        suffix = path.suffix.lower()
        if looks_like_hub_id(str(path)):

            if not hub_reachable():
                report.errors.append(Issue(str(path), "is not a file here, and the Hugging Face Hub cannot be "
                                           "reached to load it as a dataset id"))
                continue
            try:
                _read_records(hub_records(str(path)), mapping, report, seen, objective)
            except FileError as err:
                report.errors.append(Issue("", str(err).rstrip(".")))
            continue
        if suffix not in SUFFIXES:
            report.errors.append(Issue(path.name, f"{suffix or 'a file without an extension'} cannot be read; "
                                       f"use one of {', '.join(SUFFIXES)}"))
            continue
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            report.errors.append(Issue(str(path), "no such file"))
            continue
        text = None if suffix == ".parquet" else _decode(path, raw, report)
        if text is None and suffix != ".parquet":
            continue
        try:
            _read_records(iter_records(path.name, text, raw, suffix), mapping, report, seen, objective)
        except FileError as err:
            report.errors.append(Issue("", str(err).rstrip(".")))
    if len(report.examples) < min_examples and not report.errors:
        report.errors.append(Issue("", f"no examples found in {', '.join(Path(f).name for f in report.files)}"))
    elif 0 < len(report.examples) < FEW_EXAMPLES:
        report.warnings.append(Issue("", f"only {len(report.examples)} examples; fine-tuning usually needs "
                                     f"{FEW_EXAMPLES} or more (a hundred or more is better)"))
    return report


def _read_records(records, mapping, report: DataReport, seen: dict, objective: str | None = None) -> None:
    """Check each (where, record) of one source and add its examples and problems to `report`."""
    formats: dict[str, str] = {}
    kinds: dict[str, str] = {}
    labels: dict[bool, str] = {}
    for where, record in records:
        report.rows += 1
        try:
            if isinstance(record, RecordError):
                raise record
            ex = to_example(record, mapping)
        except RecordError as err:
            report.errors.append(Issue(where, err.message, err.field))
            continue
        ex.where = where
        problem = _check_conversation(ex, objective) if ex.messages is not None else (
            "text is empty" if not ex.text.strip() else None)
        size = example_chars(ex)
        if problem is None and size > MAX_EXAMPLE_CHARS:
            problem = (f"this example is {size:,} characters (about {size // 4:,} tokens), over the limit of "
                       f"{MAX_EXAMPLE_CHARS:,} characters for one example; split it into smaller examples")
        if problem:
            report.errors.append(Issue(where, problem))
            continue
        for key in ex.unknown_keys:
            report.warnings.append(Issue(where, f"unknown key {key!r} was ignored", key))
        first = seen.setdefault(ex.key(), where)
        if first != where:
            report.warnings.append(Issue(where, f"repeats {first}; duplicates weigh an example twice"))
        formats.setdefault(ex.format, where)
        kinds.setdefault(ex.kind, where)
        if ex.label is not None:
            labels.setdefault(ex.label, where)
        report.examples.append(ex)
    if len(kinds) > 1:  # an objective trains on one kind: SFT examples, preference pairs, or unpaired labels
        (main, first), *others = sorted(kinds.items(), key=lambda kv: _line_order(kv[1]))
        for kind, where in others:
            said = "the conversation must end with an assistant message" if {kind, main} == {"prompts", "sft"} \
                and kind == "prompts" else f"a {KIND_NAMES[kind]} example"
            report.errors.append(Issue(where, f"{said} in a file that began with {KIND_NAMES[main]} examples "
                                              f"({first}); one file holds one kind"))
    if labels and len(labels) == 1:
        (only, where), = labels.items()
        report.errors.append(Issue(where.split(" ")[0], f"every unpaired example has label {str(only).lower()}; "
                                                        "KTO needs both good (true) and bad (false) answers"))
    if len(formats) > 1 and len(kinds) == 1:
        (main, _), *others = sorted(formats.items(), key=lambda kv: kv[1])
        for fmt, where in others:
            issue = Issue(where, f"mixed formats in one file: this is {fmt}, the file began as {main}")
            # chat-like formats convert to one form; plain text next to chat would change the loss.
            (report.errors if "text" in (fmt, main) else report.warnings).append(issue)


KIND_NAMES = {"sft": "supervised (one answer)", "pairs": "preference pair", "unpaired": "unpaired (KTO label)",
              "prompts": "prompt-only (GRPO)"}


def _line_order(where: str) -> tuple:
    """Sort key of a location like "f.jsonl line 12" / "f.csv row 3" / "f.json item 2"."""
    parts = where.rsplit(" ", 1)
    return (parts[0], int(parts[1])) if len(parts) == 2 and parts[1].isdigit() else (where, 0)


def load_examples(paths, mapping: dict | None = None, objective: str | None = None) -> list[Example]:
    """The examples of files that have no errors; otherwise DataError with the first problem."""
    report = check_files([paths] if isinstance(paths, (str, Path)) else paths, mapping, objective=objective)
    if report.errors:
        raise DataError(report.first_error())
    return report.examples


def split_examples(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded train / validation split; `fraction` of the examples (at least one) go to validation."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    val = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val], [e for i, e in enumerate(examples) if i in val]


def export_chat_jsonl(examples: list[Example], path: str | Path) -> int:
    """Write the chat examples as {"messages": [...]} lines, the format hosted services accept."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            if ex.messages is None:
                continue
            fh.write(json.dumps(ex.to_chat(), ensure_ascii=False) + "\n")
            n += 1
    return n


# ---- tokens ---------------------------------------------------------------------------

def _render(tokenizer, messages, generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_example(ex: Example, tokenizer, train_on: str = "assistant") -> dict:
    """input_ids and assistant_masks (1 = the loss uses this token) for one example.

    A chat is rendered with the model's own template; the span of each assistant message
    (its content and end-of-turn marker, not the role header) is found by rendering the
    conversation up to it, so this works for any template that renders prefixes as
    prefixes. Messages with weight 0 are not trained.
    """
    if ex.messages is None:
        ids = tokenizer(ex.text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
    chat = [{"role": m["role"], "content": m["content"]} for m in ex.messages]
    full = _render(tokenizer, chat)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if train_on == "all":
        return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
    spans = []
    for i, m in enumerate(ex.messages):
        if m["role"] != "assistant" or m.get("weight", 1) == 0:
            continue
        # A chat that opens with the assistant: nothing comes before it (templates refuse an empty chat).
        before = _render(tokenizer, chat[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, chat[: i + 1])
        start, end = len(before), len(upto)
        if not (full.startswith(before) and full.startswith(upto)):
            raise DataError("the model's chat template does not render conversations as prefixes of each "
                            "other, so assistant turns cannot be found; train on all tokens instead")
        spans.append((start, end))
    mask = [int(any(s <= a < e for s, e in spans)) for a, _ in offsets]
    return {"input_ids": ids, "assistant_masks": mask}


def trained_pieces(ex: Example, tokenizer, train_on: str = "assistant") -> list[tuple[str, bool]]:
    """(token text, trained?) pairs: what the loss sees, for a coloured view."""
    if example_chars(ex) > STATS_CHARS:  # the view shows the start of a giant example, within the budget
        ex = clipped(ex, STATS_CHARS)
    t = tokenize_example(ex, tokenizer, train_on)
    return [(tokenizer.decode([i]), bool(m)) for i, m in zip(t["input_ids"], t["assistant_masks"])]


def length_histogram(lengths: list[int], bins: int = 20) -> list[tuple[int, int]]:
    """(bin start, count) pairs over token lengths."""
    if not lengths:
        return []
    hi = max(lengths)
    width = max(1, -(-hi // bins))
    counts = Counter(n // width for n in lengths)
    return [(b * width, counts.get(b, 0)) for b in range(hi // width + 1)]


@dataclass
class TokenStats:
    lengths: list[int]
    max_length: int
    population: int | None = None  # when `lengths` is a sample: how many examples there are in all

    @property
    def scale(self) -> float:
        return (self.population or len(self.lengths)) / max(1, len(self.lengths))

    @property
    def total(self) -> int:
        return round(sum(self.lengths) * self.scale)

    @property
    def truncated(self) -> list[int]:
        return [n - self.max_length for n in self.lengths if n > self.max_length]

    def histogram(self, bins: int = 20) -> list[tuple[int, int]]:
        return length_histogram(self.lengths, bins)

    def trained_tokens(self) -> int:
        return round(sum(min(n, self.max_length) for n in self.lengths) * self.scale)

    def sentences(self, tokens_per_s: float | None = None) -> list[str]:
        n = self.population or len(self.lengths)
        sampled = f" (estimated from a seeded sample of {len(self.lengths)})" if self.population else ""
        out = [f"{n} examples, {self.total} tokens{sampled}; shortest {min(self.lengths)}, median "
               f"{sorted(self.lengths)[len(self.lengths) // 2]}, longest {max(self.lengths)} tokens"]
        per_epoch = self.trained_tokens()
        if tokens_per_s:
            out.append(f"{per_epoch} tokens per epoch: about {per_epoch / tokens_per_s / 60:.1f} min per epoch at "
                       f"the {tokens_per_s:.0f} tokens/s measured on this machine")
        else:
            out.append(f"{per_epoch} tokens per epoch (no throughput measured yet for a time estimate)")
        return out

    def truncation_issue(self) -> Issue | None:
        cut = self.truncated
        if not cut:
            return None
        return Issue("", f"{len(cut)} examples are longer than max_length {self.max_length} and would be cut, "
                         f"by {sum(cut) / len(cut):.0f} tokens on average (at most {max(cut)})", "max_length")


def example_chars(ex: Example) -> int:
    return len(ex.text) if ex.messages is None else sum(len(m["content"]) for m in ex.messages)


def clipped(ex: Example, limit: int) -> Example:
    """The example cut to its first `limit` characters of content (whole messages, then part of one)."""
    if ex.messages is None:
        return dataclasses.replace(ex, text=ex.text[:limit])
    out, left = [], limit
    for m in ex.messages:
        if left <= 0:
            break
        out.append({**m, "content": m["content"][:left]})
        left -= len(m["content"])
    return dataclasses.replace(ex, messages=out)


def token_length(ex: Example, tokenizer) -> int:
    """Tokens in the example; one longer than STATS_CHARS is measured on its first STATS_CHARS characters
    and scaled by its length, so one giant example costs the memory of a short one."""
    size = example_chars(ex)
    if size <= STATS_CHARS:
        return len(tokenize_example(ex, tokenizer, "all")["input_ids"])
    head = clipped(ex, STATS_CHARS)
    return round(len(tokenize_example(head, tokenizer, "all")["input_ids"]) * size / max(example_chars(head), 1))


@lru_cache(maxsize=2)
def cached_tokenizer(model: str):
    """The model's tokenizer, loaded once per model for the views that count tokens."""
    return load_tokenizer(model)


def _stamp(path: str):
    try:
        st = Path(path).stat()
        return path, st.st_mtime_ns, st.st_size
    except OSError:
        return path, None, None


@lru_cache(maxsize=4)
def _cached_report(stamps: tuple, columns: str, objective: str | None = None) -> DataReport:
    return check_files([s[0] for s in stamps], parse_mapping(columns), objective=objective)


def dataset_report(files: list[str], columns: str = "", objective: str | None = None) -> DataReport:
    """The report of `files`, read once per version of the files: the views of one upload share it."""
    return _cached_report(tuple(_stamp(f) for f in files), columns, objective)


def dataset_tokens(files: list[str], columns: str, model: str, max_length: int, sample: int = 2000) -> int | None:
    """Tokens one epoch trains (each example cut to max_length), from a sample; None when it cannot be counted."""
    try:
        report = dataset_report(files, columns)
        stats = token_stats(report.examples, cached_tokenizer(model), int(max_length), sample=sample)
    except (StudioError, OSError, ValueError):  # no tokenizer offline, unreadable data: no time estimate
        return None
    return sum(min(n, int(max_length)) for n in stats.lengths) * stats.scale


def token_stats(examples: list[Example], tokenizer, max_length: int, sample: int | None = None) -> TokenStats:
    """Token lengths of every example, or of a seeded sample of `sample` when there are more."""
    population = None
    if sample and len(examples) > sample:
        population, examples = len(examples), random.Random(0).sample(examples, sample)
    lengths = [token_length(ex, tokenizer) for ex in examples]
    return TokenStats(lengths, max_length, population)


# ---- kept for the simple callers of issue #2 --------------------------------------------

@dataclass
class ChatDataset:
    path: str
    examples: list[dict]

    def __len__(self) -> int:
        return len(self.examples)

    def preview(self, n: int = 20) -> list[list[str]]:
        rows = []
        for ex in self.examples[:n]:
            first = {}
            for m in ex["messages"]:
                first.setdefault(m["role"], m["content"])
            rows.append([first.get("system", ""), first.get("user", ""), first.get("assistant", "")])
        return rows


def read_chat_jsonl(path: str | Path) -> ChatDataset:
    """Chat examples of one file (any supported format), or DataError naming the first bad line."""
    examples = load_examples(path)
    texts = [e for e in examples if e.messages is None]
    if texts:
        raise DataError(f"{texts[0].where}: plain text cannot be read as a chat example.")
    return ChatDataset(str(path), [e.to_chat() for e in examples])


if __name__ == "__main__":
    rep = check_files(sys.argv[1:])
    print("\n".join(rep.lines()))
    sys.exit(1 if rep.errors else 0)
