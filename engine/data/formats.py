"""Dataset shapes in, one internal form out: reading files and recognising each record's format.

Files: JSONL, JSON (an array of objects), CSV / TSV, Parquet, TXT. Record formats:
    chat        {"messages": [{"role", "content", optional "name", "weight" 0/1}]}
    sharegpt    {"conversations": [{"from": "human"|"gpt"|"system", "value"}]}
    alpaca      {"instruction", "input", "output", optional "system", "history": [[q, a], ...]}
    completion  {"prompt", "completion"} (strings, or lists of chat messages)
    text        {"text"} or a .txt file (continued pre-training; paragraphs split on blank lines)
Preference records (for objective dpo, orpo, simpo; unpaired ones for kto):
    pairs            {"prompt", "chosen", "rejected"} as strings (trl's standard form)
    chat pairs       the same with message lists, or "chosen"/"rejected" whole conversations with
                     the prompt implicit in their shared beginning (trl's conversational forms)
    openai pairs     {"input": {"messages"}, "preferred_output", "non_preferred_output"}
    sharegpt pairs   {"conversations", "chosen": {"from", "value"}, "rejected": {...}} (LLaMA-Factory)
    alpaca pairs     {"instruction", "input", "chosen", "rejected"} (LLaMA-Factory)
    unpaired         {"prompt", "completion", "label": true|false} (KTO), or ShareGPT with "kto_tag"
Prompt records (for objective grpo: the model writes the answers, rewards score them):
    prompts          {"prompt"} as a string or chat messages ending with the user's turn, or {"messages"} whose
                     last turn is the user's; with an optional reference answer in "answer", "solution" or
                     "ground_truth" (tables: map prompt= and answer= columns)
Every record becomes an `Example`: a list of chat messages (role, content, weight), or a
plain `text`; a pair also carries its `rejected` answer, an unpaired one its `label`, a prompt its
`reference` answer. Problems are raised as `RecordError(field, message)`; the caller adds where
(file and line or row) it happened. Knows nothing about tokenizers or training.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "bot": "assistant", "model": "assistant"}
TOOL_TURNS = ("function_call", "observation", "tool", "function")
KNOWN_KEYS = {
    "chat": {"messages", "id", "metadata", "tools"},
    "sharegpt": {"conversations", "system", "id", "tools"},
    "alpaca": {"instruction", "input", "output", "system", "history", "id"},
    "completion": {"prompt", "completion", "system", "id"},
    "text": {"text", "id", "timestamp", "url", "meta", "metadata", "title"},
}
MESSAGE_KEYS = {"role", "content", "name", "weight", "loss_weight"}
# Column names people use for a question and its answer, tried when no format matches.
PROMPT_NAMES = ("question", "query", "input", "instruction", "prompt", "user", "human", "source")
REFERENCE_KEYS = ("answer", "solution", "ground_truth")  # a prompt record's reference answer, first found
ANSWER_NAMES = ("answer", "response", "output", "completion", "target", "assistant", "reply", "label")


class RecordError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


MAX_LINE_CHARS = 8 * 1024 * 1024  # a JSON line longer than this is refused before it is parsed
MAX_KEYS_NAMED = 10  # a report names this many of a record's fields; the rest are counted


PAIR_FORMATS = ("pairs", "chat pairs", "openai pairs", "sharegpt pairs", "alpaca pairs")
UNPAIRED_FORMATS = ("unpaired",)


@dataclass
class Example:
    messages: list[dict] | None = None  # role, content, weight; a pair's prompt and chosen answer
    text: str | None = None
    format: str = "chat"
    where: str = ""
    unknown_keys: list[str] = field(default_factory=list)
    rejected: str | None = None  # a preference pair's rejected answer
    label: bool | None = None  # an unpaired (KTO) example: is its answer a good one
    reference: str | None = None  # a prompt's reference answer (GRPO rewards compare with it)

    @property
    def kind(self) -> str:
        """sft, pairs, unpaired or prompts: what an objective can train on."""
        if self.rejected is not None:
            return "pairs"
        if self.label is not None:
            return "unpaired"
        if self.messages and self.messages[-1]["role"] == "user":
            return "prompts"
        return "sft"

    @property
    def prompt(self) -> list[dict]:
        """The messages the model answers: all of a prompt record's, all but the answer of the others."""
        return self.messages if self.kind == "prompts" else self.messages[:-1]

    def key(self) -> str:
        """A canonical string: two examples with the same key are duplicates."""
        if self.text is not None:
            return self.text
        return json.dumps([(m["role"], m["content"]) for m in self.messages] + [self.rejected, self.label,
                                                                                 self.reference], ensure_ascii=False)

    def to_chat(self) -> dict:
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in self.messages]}


def detect_format(record: dict, mapping: dict | None = None) -> str:
    """The record's format; a column mapping applies only to records of no known format."""
    if mapping and ("chosen" in mapping or "label" in mapping):
        return "mapped"
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "preferred_output" in record or "non_preferred_output" in record:
        return "openai pairs"
    if "kto_tag" in record or ("label" in record and "completion" in record):
        return "unpaired"
    for fmt, key in (("chat", "messages"), ("sharegpt", "conversations"), ("completion", "completion"),
                     ("text", "text")):
        if key in record:
            return fmt
    if "instruction" in record and "output" in record:
        return "alpaca"
    if mapping:
        return "mapped"
    if "prompt" in record:  # a prompt without an answer: the model writes it (GRPO)
        return "prompts"
    return "unknown"


def parse_mapping(text: str | dict | None) -> dict | None:
    """ "prompt=question,completion=answer[,system=sys]" (or that as a dict) as a dict; None for an empty one."""
    if isinstance(text, dict):
        if not text:
            return None
        mapping = {str(k).strip(): str(v).strip() for k, v in text.items()}
    elif not text or not text.strip():
        return None
    else:
        try:
            mapping = {k.strip(): v.strip() for k, v in (part.split("=", 1) for part in text.split(","))}
        except ValueError:
            raise ValueError("columns: write it as prompt=COLUMN,completion=COLUMN[,system=COLUMN]") from None
    keys = set(mapping)
    if not any(keys - {"system"} == want for want in ({"prompt", "completion"}, {"prompt", "chosen", "rejected"},
                                                      {"prompt", "completion", "label"}, {"prompt"},
                                                      {"prompt", "answer"})):
        raise ValueError("columns: name prompt= and completion= (pairs: prompt=, chosen=, rejected=; unpaired: "
                         "prompt=, completion=, label=; prompts: prompt= and optionally answer=), and optionally "
                         "system=, nothing else")
    return mapping


def mapping_text(mapping: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (mapping or {}).items() if v)


def guess_mapping(columns: list[str]) -> dict | None:
    """A {"prompt": col, "completion": col} guess from column names, or None."""
    lower = {c.lower(): c for c in columns}
    prompt = next((lower[n] for n in PROMPT_NAMES if n in lower), None)
    answer = next((lower[n] for n in ANSWER_NAMES if n in lower and lower[n] != prompt), None)
    if prompt and answer:
        system = next((lower[n] for n in ("system", "system_prompt") if n in lower), None)
        return {"prompt": prompt, "completion": answer, **({"system": system} if system else {})}
    return None


def _text(value, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):  # content parts
        parts = []
        for i, p in enumerate(value):
            if p.get("type", "text") != "text":
                raise RecordError(f"{field}[{i}]", f"{field}[{i}] is a {p.get('type')!r} part; only text is read")
            parts.append(p.get("text", p.get("value", "")))
        return "".join(str(x) for x in parts)
    raise RecordError(field, f"{field} must be text, got {type(value).__name__}")


def _message(role: str, content: str, weight=None, field: str = "") -> dict:
    if weight not in (None, 0, 1, 0.0, 1.0, True, False):
        raise RecordError(f"{field}.weight", f"{field}.weight must be 0 or 1, got {weight!r}")
    return {"role": role, "content": content, "weight": None if weight is None else int(weight)}


def _chat(messages, name: str) -> list[dict]:
    if not isinstance(messages, list):
        raise RecordError(name, f"\"{name}\" must be a list of messages, got {type(messages).__name__}")
    if not messages:
        raise RecordError(name, f"\"{name}\" is an empty list")
    out = []
    for i, m in enumerate(messages):
        f = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f, f"{f} must be an object with role and content")
        for key in ("role", "content"):
            if key not in m:
                raise RecordError(f"{f}.{key}", f"{f} has no \"{key}\"")
        if m["role"] in TOOL_TURNS:
            raise RecordError(f"{f}.role", f"{f}.role {m['role']!r} is a tool turn; tool calls are not trained here")
        if m["role"] not in ROLES:
            raise RecordError(f"{f}.role", f"{f}.role {m['role']!r} is not one of {', '.join(ROLES)}")
        out.append(_message(m["role"], _text(m["content"], f"{f}.content"),
                            m.get("weight", m.get("loss_weight")), f))
        out[-1]["unknown"] = [f"{f}.{k}" for k in m if k not in MESSAGE_KEYS]
    return out


def _sharegpt(turns) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise RecordError("conversations", "\"conversations\" must be a non-empty list of turns")
    out = []
    for i, t in enumerate(turns):
        f = f"conversations[{i}]"
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise RecordError(f, f"{f} needs \"from\" and \"value\"")
        if t["from"] in TOOL_TURNS:
            raise RecordError(f"{f}.from", f"{f}.from {t['from']!r} is a tool turn; tool calls are not trained here")
        role = SHAREGPT_ROLES.get(t["from"])
        if role is None:
            raise RecordError(f"{f}.from", f"{f}.from {t['from']!r} is not one of human, gpt, system")
        out.append(_message(role, _text(t["value"], f"{f}.value"), t.get("weight"), f))
    return out


def to_example(record, mapping: dict | None = None) -> Example:
    """One record (a parsed JSON object or a table row) as an Example, or a RecordError."""
    if not isinstance(record, dict):
        raise RecordError("", f"expected a JSON object, got {type(record).__name__}")
    fmt = detect_format(record, mapping)
    if fmt in ("preference", "openai pairs", "unpaired") or (fmt == "mapped" and ("chosen" in mapping
                                                                                 or "label" in mapping)):
        return _preference(record, fmt, mapping)
    if fmt == "unknown":
        names = list(record)
        keys = ", ".join(map(repr, names[:MAX_KEYS_NAMED])) or "no fields"
        if len(names) > MAX_KEYS_NAMED:
            keys += f" and {len(names) - MAX_KEYS_NAMED:,} more"
        raise RecordError("", f"no known format (found {keys}); expected \"messages\", \"conversations\", "
                              "\"instruction\"/\"output\", \"prompt\"/\"completion\" or \"text\"")
    if fmt == "prompts" or (fmt == "mapped" and "completion" not in mapping):
        return _prompts(record, mapping)
    if fmt == "mapped":
        used = {v for v in mapping.values() if v}
        missing = [c for c in used if c not in record]
        if missing:
            raise RecordError(missing[0], f"the mapped column {missing[0]!r} is missing")
        msgs = [_message("user", _text(str(record[mapping["prompt"]] if record[mapping["prompt"]] is not None
                                           else ""), mapping["prompt"])),
                _message("assistant", _text(str(record[mapping["completion"]] if record[mapping["completion"]]
                                                is not None else ""), mapping["completion"]))]
        if mapping.get("system") and record.get(mapping["system"]):
            msgs.insert(0, _message("system", str(record[mapping["system"]])))
        return Example(messages=msgs, format="mapped", unknown_keys=sorted(set(record) - used))
    unknown = sorted(set(record) - KNOWN_KEYS[fmt] - (set(REFERENCE_KEYS) if fmt == "chat" else set()))
    if fmt == "text":
        return Example(text=_text(record["text"], "text"), format="text", unknown_keys=unknown)
    if fmt == "chat":
        msgs = _chat(record["messages"], "messages")
    elif fmt == "sharegpt":
        msgs = _sharegpt(record["conversations"])
        if record.get("system"):
            msgs.insert(0, _message("system", _text(record["system"], "system")))
    elif fmt == "alpaca":
        msgs = []
        if record.get("system"):
            msgs.append(_message("system", _text(record["system"], "system")))
        for i, pair in enumerate(record.get("history") or []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise RecordError(f"history[{i}]", f"history[{i}] must be a [question, answer] pair")
            msgs += [_message("user", _text(pair[0], f"history[{i}][0]")),
                     _message("assistant", _text(pair[1], f"history[{i}][1]"))]
        instruction = _text(record["instruction"], "instruction")
        extra = _text(record.get("input") or "", "input")
        msgs += [_message("user", f"{instruction}\n\n{extra}" if extra.strip() else instruction),
                 _message("assistant", _text(record["output"], "output"))]
    else:  # completion
        prompt, completion = record.get("prompt"), record.get("completion")
        if completion is None:
            raise RecordError("completion", "has \"prompt\" but no \"completion\"")
        if prompt is None:
            raise RecordError("prompt", "has \"completion\" but no \"prompt\"")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict) and "role" in prompt[0]:
            msgs = _chat(prompt, "prompt") + _chat(completion, "completion")
        else:
            msgs = [_message("user", _text(prompt, "prompt")), _message("assistant", _text(completion, "completion"))]
            if record.get("system"):
                msgs.insert(0, _message("system", _text(record["system"], "system")))
    unknown += [k for m in msgs for k in m.pop("unknown", [])]
    if msgs[-1]["role"] == "user":  # a conversation waiting for its answer: a prompt, where the objective is grpo
        return Example(messages=msgs, format=fmt, unknown_keys=unknown, reference=_reference(record))
    return Example(messages=msgs, format=fmt, unknown_keys=unknown)


def _reference(record: dict, key: str | None = None) -> str | None:
    """A prompt record's reference answer: the mapped column, or the first of answer / solution / ground_truth."""
    for name in [key] if key else REFERENCE_KEYS:
        value = record.get(name)
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) \
                if isinstance(value, (dict, list)) else str(value)
            if not text.strip():
                raise RecordError(name, f"\"{name}\" is empty; leave it out when a prompt has no reference answer")
            return text
    return None


def _prompts(record: dict, mapping: dict | None) -> Example:
    """A prompt the model answers (objective grpo), with its reference answer where the record has one."""
    if mapping:
        missing = [c for c in mapping.values() if c and c not in record]
        if missing:
            raise RecordError(missing[0], f"the mapped column {missing[0]!r} is missing")
        prompt = _prompt(record[mapping["prompt"]], mapping["prompt"],
                         record.get(mapping["system"]) if mapping.get("system") else None)
        reference = _reference(record, mapping["answer"]) if mapping.get("answer") else None
        used = set(mapping.values())
    else:
        prompt = _prompt(record["prompt"], "prompt", record.get("system"))
        reference = _reference(record)
        used = {"prompt", "system", "id", *REFERENCE_KEYS}
    for m in prompt:
        m.pop("unknown", None)
    return Example(messages=prompt, format="prompts", reference=reference, unknown_keys=sorted(set(record) - used))


# ---- preference records ---------------------------------------------------------------

def _answer(value, name: str) -> str:
    """One side of a pair: a string, one assistant message, a list ending in one, or a ShareGPT turn."""
    if isinstance(value, dict) and "from" in value:
        value = value.get("value")
    elif isinstance(value, dict) and "content" in value:
        value = value.get("content")
    elif isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        msgs = _chat(value, name)
        if msgs[-1]["role"] != "assistant":
            raise RecordError(name, f"\"{name}\" must end with an assistant message")
        value = msgs[-1]["content"]
    if value is None:
        raise RecordError(name, f"\"{name}\" is empty")
    text = _text(value, name)
    if not text.strip():
        raise RecordError(name, f"\"{name}\" is empty")
    return text


def _prompt(value, name: str, system=None) -> list[dict]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        msgs = [{k: v for k, v in m.items() if k != "unknown"} for m in _chat(value, name)]
    else:
        text = _text(value if value is not None else "", name)
        if not text.strip():
            raise RecordError(name, f"\"{name}\" is empty")
        msgs = [_message("user", text)]
    if system:
        msgs.insert(0, _message("system", _text(system, "system")))
    if msgs[-1]["role"] != "user":
        raise RecordError(name, f"\"{name}\" must end with a user message")
    return msgs


def _side_missing(record: dict, sides: tuple[str, str]) -> None:
    for side in sides:
        if side not in record or record[side] is None:
            other = sides[1] if side == sides[0] else sides[0]
            raise RecordError(side, f"has \"{other}\" but no \"{side}\": a pair needs both answers")


def _preference(record: dict, fmt: str, mapping: dict | None) -> Example:
    """A preference pair or an unpaired (KTO) example: the prompt's messages plus its (chosen) answer."""
    if fmt == "mapped":
        record = {k: record.get(v) for k, v in mapping.items()}
        fmt = "preference" if "chosen" in mapping else "unpaired"
    if fmt == "unpaired":
        if "kto_tag" in record:
            msgs = _sharegpt(record.get("conversations"))
            if msgs[-1]["role"] != "assistant":
                raise RecordError("conversations", "the last turn must be the answer the kto_tag judges")
            prompt, answer, label = msgs[:-1], msgs[-1]["content"], record["kto_tag"]
            prompt = _prompt(prompt, "conversations", record.get("system"))
        else:
            if "prompt" not in record:
                raise RecordError("prompt", "has \"completion\" and \"label\" but no \"prompt\"")
            prompt = _prompt(record["prompt"], "prompt", record.get("system"))
            answer, label = _answer(record["completion"], "completion"), record["label"]
        if isinstance(label, str) and label.lower() in ("true", "false"):
            label = label.lower() == "true"
        if label not in (True, False, 0, 1):
            raise RecordError("label", f"label must be true or false, got {label!r}")
        return Example(messages=prompt + [_message("assistant", answer)], format="unpaired", label=bool(label))
    if fmt == "openai pairs":
        _side_missing(record, ("preferred_output", "non_preferred_output"))
        source = record.get("input")
        if not isinstance(source, dict) or "messages" not in source:
            raise RecordError("input", "\"input\" must be an object with \"messages\"")
        prompt = _prompt(source["messages"], "input.messages")
        chosen = _answer(record["preferred_output"], "preferred_output")
        rejected = _answer(record["non_preferred_output"], "non_preferred_output")
        sides = ("preferred_output", "non_preferred_output")
    else:
        _side_missing(record, ("chosen", "rejected"))
        sides = ("chosen", "rejected")
        if "conversations" in record:
            fmt, prompt = "sharegpt pairs", _prompt(_sharegpt(record["conversations"]), "conversations",
                                                    record.get("system"))
            chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
        elif "instruction" in record:
            extra = _text(record.get("input") or "", "input")
            instruction = _text(record["instruction"], "instruction")
            fmt = "alpaca pairs"
            prompt = _prompt(f"{instruction}\n\n{extra}" if extra.strip() else instruction, "instruction",
                             record.get("system"))
            chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
        elif "prompt" in record:
            conversational = isinstance(record["prompt"], list)
            fmt = "chat pairs" if conversational else "pairs"
            prompt = _prompt(record["prompt"], "prompt", record.get("system"))
            chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
        else:  # trl's implicit prompt: two whole conversations that share their beginning
            a, b = _chat(record["chosen"], "chosen"), _chat(record["rejected"], "rejected")
            if len(a) < 2 or len(b) < 2:
                raise RecordError("chosen", "without \"prompt\", chosen and rejected must be whole conversations "
                                            "(the prompt, then the answer)")
            for i, (x, y) in enumerate(zip(a[:-1], b[:-1])):
                if (x["role"], x["content"]) != (y["role"], y["content"]):
                    raise RecordError(f"rejected[{i}]", f"the two prompts differ at message {i} (chosen[{i}] and "
                                                        f"rejected[{i}]); a pair must answer the same prompt")
            if len(a) != len(b):
                raise RecordError("rejected", "the two prompts differ in length; a pair must answer the same prompt")
            fmt = "chat pairs"
            prompt = _prompt([{"role": m["role"], "content": m["content"]} for m in a[:-1]], "chosen")
            chosen, rejected = _answer(record["chosen"], "chosen"), _answer(record["rejected"], "rejected")
    if chosen.strip() == rejected.strip():
        raise RecordError(sides[1], f"\"{sides[0]}\" and \"{sides[1]}\" are the same answer; the pair teaches "
                                    "nothing")
    for m in prompt:
        m.pop("unknown", None)
    return Example(messages=prompt + [_message("assistant", chosen)], format=fmt, rejected=rejected)


# ---- files ----------------------------------------------------------------------------

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")


class FileError(ValueError):
    """A whole file that cannot be read, with where it went wrong."""


def iter_records(name: str, text: str | None, raw: bytes, suffix: str):
    """Yield (where, record-or-exception) for each record of a file; `where` names the line or row."""
    if suffix == ".jsonl":
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE_CHARS:  # refused unparsed: parsing would cost several times its size
                yield f"{name} line {n}", RecordError("", f"this line is {len(line):,} characters, over the limit of "
                                                          f"{MAX_LINE_CHARS:,} for one example; split it into "
                                                          "smaller examples")
                continue
            try:
                yield f"{name} line {n}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"{name} line {n}", RecordError("", f"not valid JSON ({exc.msg} at column {exc.colno})")
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileError(f"{name} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise FileError(f"{name}: the top level must be a list of objects, got {type(data).__name__}.")
        for i, record in enumerate(data, start=1):
            yield f"{name} item {i}", record
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            if None in row:
                yield f"{name} row {n}", RecordError("", f"has {len(reader.fieldnames) + len(row[None])} "
                                                         f"cells but the header has {len(reader.fieldnames)}")
                continue
            yield f"{name} row {n}", _cells(row)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise FileError(f"{name}: not a readable Parquet file ({str(exc).splitlines()[0]}).") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"{name} row {i}", _cells(row)
    elif suffix == ".txt":  # paragraphs, split on blank lines; each is one example
        start, lines = None, []
        for n, line in enumerate(text.split("\n") + [""], start=1):
            if line.strip():
                start = start or n
                lines.append(line)
            elif lines:
                yield f"{name} line {start}", {"text": "\n".join(lines)}
                start, lines = None, []
    else:
        raise FileError(f"{name}: {suffix or 'files without an extension'} cannot be read; "
                        f"use {', '.join(SUFFIXES)}.")


def _cells(row: dict) -> dict:
    """A table row as a record: empty cells left out, except an empty completion, which stays (as None) so that
    the row reads as an answer missing, not as a prompt without one."""
    return {k: (None if v == "" else v) for k, v in row.items() if v not in (None, "") or k == "completion"}


def looks_like_hub_id(name: str) -> bool:
    parts = str(name).split("/")
    return len(parts) == 2 and all(parts) and not Path(name).suffix and not Path(name).exists()


def hub_records(dataset_id: str, split: str = "train"):
    """Yield (where, record) from a Hugging Face dataset; the caller checks the hub is reachable."""
    from datasets import load_dataset

    try:
        data = load_dataset(dataset_id, split=split)
    except Exception as exc:  # datasets raises many types for a missing or private dataset
        raise FileError(f"{dataset_id}: the dataset could not be loaded ({str(exc).splitlines()[0]}).") from None
    for i, record in enumerate(data, start=1):
        yield f"{dataset_id} row {i}", record


def columns_of(path: str | Path) -> list[str]:
    """Column names of a table or the keys of the first JSON record, for a mapping form."""
    path = Path(path)
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    text = None if suffix == ".parquet" else raw.decode("utf-8-sig", errors="replace").replace("\r\n", "\n")
    for _, record in iter_records(path.name, text, raw, suffix):
        if isinstance(record, dict):
            return list(record)
    return []
