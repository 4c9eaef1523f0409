"""Reading chat training data and saying exactly what is wrong with it.

A chat dataset is a JSONL file, one example a line:
    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
`read_chat_jsonl` returns the examples and raises `DataError` with one sentence naming
the first bad line and field. `to_prompt_completion` turns an example into the
conversational prompt/completion form trl trains on, so the loss covers only the final
assistant answer.

    python -m engine.data FILE.jsonl     # prints the count or the first problem
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROLES = ("system", "user", "assistant")
MIN_EXAMPLES = 1


class DataError(ValueError):
    """A problem in a dataset, said in one sentence that names the line and field."""


@dataclass
class ChatDataset:
    path: str
    examples: list[dict]

    def __len__(self) -> int:
        return len(self.examples)

    def preview(self, n: int = 20) -> list[list[str]]:
        """Rows of (system, user, assistant) text for a table, the first n examples."""
        rows = []
        for ex in self.examples[:n]:
            by_role = {r: "" for r in ROLES}
            for m in ex["messages"]:
                by_role[m["role"]] = by_role[m["role"]] or m["content"]
            rows.append([by_role["system"], by_role["user"], by_role["assistant"]])
        return rows


def _check_example(obj, where: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with a \"messages\" list, got {type(obj).__name__}.")
    messages = obj.get("messages")
    if messages is None:
        raise DataError(f"{where}: no \"messages\" field (found {', '.join(map(repr, obj)) or 'no fields'}).")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list.")
    for i, m in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{where}: {field} must be an object with role and content.")
        for key in ("role", "content"):
            if key not in m:
                raise DataError(f"{where}: {field} has no \"{key}\".")
        if m["role"] not in ROLES:
            raise DataError(f"{where}: {field}.role {m['role']!r} is not one of {', '.join(ROLES)}.")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: {field}.content must be text, got {type(m['content']).__name__}.")
        if not m["content"].strip():
            raise DataError(f"{where}: {field}.content is empty.")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the conversation must end with an assistant message.")
    if not any(m["role"] == "user" for m in messages):
        raise DataError(f"{where}: the conversation has no user message.")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


def read_chat_jsonl(path: str | Path) -> ChatDataset:
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{name} line {line}: byte {exc.start} is not UTF-8 text.") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {number}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        examples.append(_check_example(obj, f"{name} line {number}"))
    if len(examples) < MIN_EXAMPLES:
        raise DataError(f"{name}: no examples found; expected one JSON object per line.")
    return ChatDataset(str(path), examples)


def to_prompt_completion(example: dict) -> dict:
    """Split a chat at its last assistant message: the loss is taken on that answer only."""
    messages = example["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


if __name__ == "__main__":
    try:
        ds = read_chat_jsonl(sys.argv[1])
    except DataError as err:
        sys.exit(f"error: {err}")
    print(f"{len(ds)} examples in {ds.path}")
