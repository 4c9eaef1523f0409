"""The chat playground's model side: which weights answer, a chat widget's turns as plain messages, and
saving an exchange as a training example the Data tab reads (the prompt with retrieved sources is
rag.pipeline.chat_prompt).

A chat is answered by the base model or a finished run, adapter on or off, through the same executor
as Compare (engine/infer/chat.py). Saved exchanges are appended, one chat JSON line each
(`{"messages": [...]}`), to `examples_path()`: `$STUDIO_EXAMPLES`, else `chat-examples.jsonl` beside
the runs folder (on a Space, under /data, so they persist). That file is an ordinary chat JSONL:
pick it on the Data tab to train on it.

    python -m engine.infer.playground RUN_ID|MODEL "question"     # one answer, streamed to the terminal
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from engine import owners
from engine.errors import StudioError
from engine.infer.chat import Generation, Request, get_chat_model
from engine.train.runs import Run, runs_root

BASE = "base model"


class PlaygroundError(StudioError, ValueError):
    """A chat that cannot be answered or saved as asked, in one sentence."""


def examples_path(owner: str = owners.LOCAL) -> Path:
    """The file `owner`'s saved exchanges go to: the local owner's is the one file it always was, anyone
    else's a file of their own beside it."""
    path = Path(os.environ["STUDIO_EXAMPLES"]) if os.environ.get("STUDIO_EXAMPLES") else \
        runs_root().parent / "chat-examples.jsonl"
    if owner == owners.LOCAL:
        return path
    return path.with_name(f"{path.stem}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}{path.suffix}")


def chat_for(choice: str | None, base_model: str, adapter_on: bool = True):
    """(ChatModel, use_adapter) for the picker's choice: BASE (or empty) or a run id."""
    if not choice or choice == BASE:
        return get_chat_model(base_model), False
    run = Run(runs_root() / choice)
    if run.model_dir is not None:  # a full fine-tune: its own weights, or the base it started from
        return (get_chat_model(str(run.model_dir)), False) if adapter_on else (get_chat_model(run.base_model), False)
    if run.weights is None:
        raise PlaygroundError(f"{run.no_weights().capitalize()}; pick a finished run.")
    return get_chat_model(run.base_model, run.adapter), adapter_on


def text_of(content) -> str | None:
    """A chat message's text: a string, or the text parts of a list of parts (the shape a chat widget
    sends back); None for a message with no text (a file, an image)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") if isinstance(content.get("text"), str) else None
    if isinstance(content, list):
        texts = [t for t in map(text_of, content) if t is not None]
        return "".join(texts) if texts else None
    return None


def turns(history: list[dict]) -> list[dict]:
    """The user and assistant turns of a chat widget's history, as plain text messages."""
    turns = []
    for m in history:
        text = text_of(m.get("content"))
        if m.get("role") in ("user", "assistant") and text is not None:
            turns.append({"role": m["role"], "content": text})
    return turns


def answer(chat, use_adapter: bool, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.7,
           top_p: float = 1.0, cancel=None) -> Iterator[str | Generation]:
    """The reply as it grows, then its Generation; setting `cancel` (a threading.Event: Stop) ends it at the
    next token."""
    window = chat.max_prompt_tokens(max_new_tokens)
    request = Request(messages, use_adapter, int(max_new_tokens), float(temperature), float(top_p))
    if chat.prompt_tokens(request) > window:
        raise PlaygroundError(f"The chat is longer than the model's context allows with {max_new_tokens} new "
                              f"tokens ({window} tokens); clear it or lower max tokens.")
    for _, item in chat.stream_many([request], cancel=cancel):
        yield item


def save_exchange(history: list[dict], system: str = "", path: Path | None = None) -> tuple[Path, int]:
    """Append the chat (system prompt, then its turns up to the last answer) as one training example;
    returns the file and how many examples it now holds."""
    kept = [t for t in turns(history) if t["content"].strip()]
    while kept and kept[-1]["role"] != "assistant":
        kept.pop()
    if not any(t["role"] == "user" for t in kept):
        raise PlaygroundError("There is no answered question to save yet; ask something first.")
    messages = ([{"role": "system", "content": system.strip()}] if system.strip() else []) + kept
    path = Path(path or examples_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    with path.open(encoding="utf-8") as f:
        count = sum(1 for line in f if line.strip())
    return path, count


if __name__ == "__main__":
    from engine.models import DEFAULT_MODEL

    if len(sys.argv) != 3:
        sys.exit(__doc__)
    who = sys.argv[1]
    is_run = (runs_root() / who / "config.yaml").exists()
    chat, on = chat_for(who if is_run else BASE, DEFAULT_MODEL if is_run else who)
    shown = ""
    for item in answer(chat, on, [{"role": "user", "content": sys.argv[2]}]):
        if isinstance(item, str):
            print(item[len(shown):], end="", flush=True)
            shown = item
    print()
