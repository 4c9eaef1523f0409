"""Answering chat messages with a base model, and the same model with a trained adapter.

`ChatModel` loads the base weights once. When an adapter is given it is attached with
peft, and the base answer is produced with the adapter switched off on the same weights
(`disable_adapter()`), so "base" and "fine-tuned" never hold two copies in memory.

    python -m engine.infer MODEL [ADAPTER] "question"
"""

from __future__ import annotations

import sys
import threading
from contextlib import nullcontext
import time
from dataclasses import dataclass
from pathlib import Path

from engine.models import load_causal_lm, load_tokenizer


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    answer_tokens: int
    seconds: float


class ChatModel:
    def __init__(self, model: str, adapter: str | Path | None = None):
        import torch

        self.model_name = model
        self.adapter = str(adapter) if adapter else None
        self.tokenizer = load_tokenizer(model)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu_bf16 = self.device == "cuda" and torch.cuda.is_bf16_supported()
        # Prefix-tuning adapters need eager attention (SDPA rejects their past key/values).
        eager = self.adapter and '"PREFIX_TUNING"' in (Path(self.adapter) / "adapter_config.json").read_text()
        base = load_causal_lm(model, dtype=torch.bfloat16 if gpu_bf16 else torch.float32,
                              **({"attn_implementation": "eager"} if eager else {})).to(self.device)
        if self.adapter:
            from peft import PeftModel

            base = PeftModel.from_pretrained(base, self.adapter)
        self.model = base.eval()
        tok = self.tokenizer
        # Never emit role markers or padding as answer text; only the end-of-turn token ends an answer.
        ends = self.model.generation_config.eos_token_id
        ends = set(ends if isinstance(ends, list) else [ends]) | {tok.eos_token_id}
        self._suppress = [i for i in tok.all_special_ids if i not in ends] or None
        self._lock = threading.Lock()  # one generate at a time on shared weights
        self._torch = torch

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    def generate(self, messages: list[dict], use_adapter: bool = True, max_new_tokens: int = 96) -> Generation:
        """The whole answer at once: the last thing `stream` yields."""
        *_, final = self.stream(messages, use_adapter, max_new_tokens)
        return final

    def stream(self, messages: list[dict], use_adapter: bool = True, max_new_tokens: int = 96):
        """Yield the answer's text as it grows, then a final Generation with its counts and time."""
        from transformers import TextIteratorStreamer

        if use_adapter and not self.has_adapter:
            raise ValueError("This model has no adapter to switch on; pick a finished run.")
        tok = self.tokenizer
        inputs = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True).to(self.device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        result = {}

        def run():
            switch = self.model.disable_adapter() if self.has_adapter and not use_adapter else nullcontext()
            with self._lock, self._torch.inference_mode(), switch:
                result["out"] = self._generate(inputs, max_new_tokens, streamer)

        start = time.perf_counter()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text
        worker.join()
        n_prompt = inputs["input_ids"].shape[1]
        n_new = int(result["out"][0].shape[0] - n_prompt) if "out" in result else 0
        yield Generation(text.strip(), n_prompt, n_new, time.perf_counter() - start)

    def max_prompt_tokens(self, max_new_tokens: int = 96) -> int:
        """How long a prompt may be so the answer still fits the model's context window."""
        window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        return max(64, window - max_new_tokens)

    def _generate(self, inputs, max_new_tokens: int, streamer=None):
        return self.model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1,
            pad_token_id=self.tokenizer.pad_token_id, suppress_tokens=self._suppress, streamer=streamer,
        )


_cache: dict[tuple, ChatModel] = {}
_cache_lock = threading.Lock()
KEEP = 2  # models kept in memory: a full fine-tune needs its base beside it


def get_chat_model(model: str, adapter: str | Path | None = None) -> ChatModel:
    """A ChatModel from a small cache; loading a third replaces the least recently used."""
    key = (model, str(adapter) if adapter else None)
    with _cache_lock:
        chat = _cache.pop(key, None) or ChatModel(model, adapter)
        _cache[key] = chat  # most recently used last
        while len(_cache) > KEEP:
            _cache.pop(next(iter(_cache)))
        return chat


@dataclass
class Answerer:
    """One column's model: a ChatModel with its adapter on or off."""
    chat: ChatModel
    use_adapter: bool = False

    def generate(self, messages: list[dict], **kw) -> Generation:
        return self.chat.generate(messages, use_adapter=self.use_adapter, **kw)

    def stream(self, messages: list[dict], **kw):
        return self.chat.stream(messages, use_adapter=self.use_adapter, **kw)


def answerers(model: str, adapter=None, tuned_model=None) -> tuple[Answerer, Answerer | None]:
    """The base and fine-tuned answerers: one set of weights with the adapter switched off and on,
    or, after full fine-tuning, the base and the fine-tuned model side by side."""
    if tuned_model:
        return Answerer(get_chat_model(model)), Answerer(get_chat_model(str(tuned_model)))
    chat = get_chat_model(model, adapter)
    return Answerer(chat, False), (Answerer(chat, True) if chat.has_adapter else None)


def run_answerers(run, model: str | None = None) -> tuple[Answerer, Answerer | None]:
    """Answerers for a run from the registry (adapter or full model), or for `model` alone."""
    if run is None:
        return answerers(model)
    return answerers(run.config.model, run.adapter, run.model_dir)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    chat = ChatModel(args[0], args[1] if len(args) == 3 else None)
    print(chat.generate([{"role": "user", "content": args[-1]}], use_adapter=chat.has_adapter).text)
