"""Answering chat messages with a base model and the same model with a trained adapter, in batches.

`ChatModel` loads the base weights once. With an adapter attached by peft, base and fine-tuned
rows share one copy of the weights: a plain LoRA adapter answers both kinds of row in the same
batch, its update added under a per-row mask (engine/infer/kernels.py); other adapters answer their base
rows in a batch of their own with the adapter switched off (`disable_adapter()`); adapters that add
virtual tokens keep transformers' `generate` and peft's mixed batches (`adapter_names`).

Every request goes through the executor (engine/infer/batching.py), which hands each model its waiting
jobs; `ChatModel.answer_jobs` answers them in batched generations no larger than the memory estimate
allows, through its own decoding loop (`_run_loop`: prompts read in groups of equal length, their
caches stacked left-padded, ended rows leaving the batch). Batched greedy answers equal
one-at-a-time answers in fp32 (tests/test_batching.py). On a CPU the fp32 linear layers are packed
for oneDNN (engine/infer/kernels.py).

Precision: fp32, unless this machine's measured capability says bf16 (fp16 on a GPU without bf16)
multiplies faster *and* greedy answers to the sample questions come out token for token the same
as fp32's (adapter off); the check runs once per base model and machine, cached beside the
capability figures.

    python -m engine.infer.chat MODEL [ADAPTER] "question"
"""

from __future__ import annotations

import copy
import json
import os
import queue
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine import capability
from engine.infer.batching import (COMPUTE, MAX_ROWS, Generation, Job, Request, RowsDone, RowStreamer, drain,
                                   run_here, serve_forever, submit)
from engine.infer.decoding import Decoding
from engine.infer.kernels import RowMask, masked_lora, pack_linears
from engine.models import ModelShape, load_causal_lm, load_tokenizer, shape_of
from engine.train.config import SAMPLE_EVAL

__all__ = ["Answerer", "Answerers", "ChatModel", "Generation", "Request", "answerers", "get_chat_model",
           "run_answerers", "run_here", "serve_forever"]

PRECISION_PROMPTS = 20  # sample questions the lower-precision check answers (all the bundled ones)
PRECISION_TOKENS = 32


def generation_row_bytes(shape: ModelShape, tokens: int, dtype_bytes: int = 4) -> int:
    """Memory one row of a batched `generate` holds at `tokens` (prompt + answer): its key/value cache
    (2 x layers x kv width per token), one layer's prefill activations (about 4 h + 3 i numbers per token,
    freed layer by layer) and the last position's logits in fp32 with their processed copy."""
    kv = 2 * shape.layers * shape.kv_dim * tokens * dtype_bytes
    activations = tokens * (4 * shape.hidden + 3 * shape.intermediate) * dtype_bytes
    return kv + activations + 2 * shape.vocab * 4


def generation_batch_rows(shape: ModelShape, tokens: int, budget_bytes: float, dtype_bytes: int = 4,
                          cap: int = 32) -> int:
    """How many rows one batched `generate` may take within `budget_bytes` (at least 1, at most `cap`)."""
    return max(1, min(cap, int(budget_bytes // generation_row_bytes(shape, max(1, tokens), dtype_bytes))))


def _precision_cache() -> Path:
    return capability.cache_path().with_name("generation-precision.json")


class ChatModel:
    def __init__(self, model: str, adapter: str | Path | None = None, precision: str | None = None,
                 more_adapters: dict[str, str | Path] | None = None):
        """`precision`: "auto" (default, or STUDIO_GENERATE_PRECISION), "fp32", "bf16" or "fp16".
        `more_adapters`: further adapters of the same base by name, beside `adapter` (named "default"), on the
        same copy of the weights; a request picks one with `Request.adapter`."""
        import torch

        self._torch = torch
        self.model_name = model
        self.adapter = str(adapter) if adapter else None
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"  # new tokens follow every prompt directly
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        adapter_config = json.loads((Path(self.adapter) / "adapter_config.json").read_text()) if self.adapter else {}
        # Prefix-tuning adapters need eager attention (SDPA rejects their past key/values).
        eager = adapter_config.get("peft_type") == "PREFIX_TUNING"
        base = load_causal_lm(model, dtype=torch.float32,
                              **({"attn_implementation": "eager"} if eager else {})).to(self.device)
        if self.adapter:
            from peft import PeftModel

            base = PeftModel.from_pretrained(base, self.adapter)
            for name, path in (more_adapters or {}).items():
                base.load_adapter(str(path), adapter_name=name)
        self.model = base.eval()
        self.adapter_names = ["default", *(more_adapters or {})] if self.adapter else []
        # peft answers base and adapter rows in one batch for one LoRA (not DoRA) adapter only
        self.mixed_batches = (adapter_config.get("peft_type") == "LORA" and not adapter_config.get("use_dora")
                              and len(self.adapter_names) == 1)
        tok = self.tokenizer
        # Never emit role markers or padding as answer text; only the end-of-turn token ends an answer.
        ends = self.model.generation_config.eos_token_id
        self._ends = set(ends if isinstance(ends, list) else [ends]) | {tok.eos_token_id}
        self._suppress = [i for i in tok.all_special_ids if i not in self._ends] or None
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.precision, self.precision_note = "fp32", "fp32"
        self._shape = None  # the model's shape for the memory estimate, read on first use
        # peft's own layers and transformers' generate while the precision is checked
        self._mask, self.masked, self.own_loop = RowMask(), False, False
        self._choose_precision(precision or os.environ.get("STUDIO_GENERATE_PRECISION", "auto"))
        self.kernels = pack_linears(self.model) if self.device == "cpu" and self.precision == "fp32" else "plain"
        import inspect

        forward = inspect.signature(self.model.get_base_model().forward if self.has_adapter else self.model.forward)
        self._cache_arg = "cache" if "cache" in forward.parameters else "past_key_values"  # renamed in transformers 5.x
        # the own decoding loop (see _run_loop) needs plain key/value caches and adapters without virtual tokens
        config = self.model.config
        eligible = (os.environ.get("STUDIO_OWN_LOOP", "1") != "0"
                    and adapter_config.get("peft_type") not in ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")
                    and not getattr(config, "sliding_window", None)
                    and all(t == "full_attention" for t in (getattr(config, "layer_types", None) or [])))
        self.masked = bool(eligible and self.mixed_batches and os.environ.get("STUDIO_MASKED_LORA", "1") != "0"
                           and masked_lora(self.model, self._mask))
        self.own_loop = eligible and (self.masked or not self.mixed_batches or not self.has_adapter)
        if self.masked:
            self.kernels += "; LoRA rows masked in one batch"

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None

    # ---- precision -------------------------------------------------------------------------------------

    def _choose_precision(self, asked: str) -> None:
        torch = self._torch
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if asked in dtypes:
            self._cast(asked, f"{asked} (asked for)")
            return
        if asked != "auto":
            self.precision_note = "fp32 (asked for)" if asked == "fp32" else f"fp32 ({asked!r} is not a precision)"
            return

        cap = capability.capability(self.model_name)
        candidate = "bf16" if not cap.cuda or torch.cuda.is_bf16_supported() else "fp16"
        if not cap.faster(candidate):
            self.precision_note = f"fp32: {cap.describe(candidate)}"
            return
        # once per base model and machine: how far greedy decoding of these weights survives lower precision
        # (an adapter's small update changes little of that, and checking each new run would cost every
        # run's first Compare question the check)
        key = f"{cap.key} | {self.model_name} | {PRECISION_PROMPTS}x{PRECISION_TOKENS}"
        path = _precision_cache()
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        if key not in cache:
            cache[key] = self._same_answers(candidate)
            capability.save_cache(path, cache)
        same, checked = cache[key]["same"], cache[key]["prompts"]
        if same:
            self._cast(candidate, f"{candidate}: {cap.describe(candidate)}, and greedy answers to {checked} sample "
                                  f"questions match fp32's token for token")
        else:
            self.precision_note = (f"fp32: {candidate} is faster here but its greedy answers to {checked} sample "
                                   f"questions differ from fp32's")

    def _same_answers(self, candidate: str) -> dict:
        """Greedy answers to the sample questions in fp32 and in `candidate`, token for token."""
        questions = [json.loads(line)["question"] for line in SAMPLE_EVAL.read_text().splitlines() if line.strip()]
        requests = [Request([{"role": "user", "content": q}], False, PRECISION_TOKENS)
                    for q in questions[:PRECISION_PROMPTS]]
        fp32 = self._direct(requests)
        kept = self.model
        self.model = copy.deepcopy(kept).to({"bf16": self._torch.bfloat16, "fp16": self._torch.float16}[candidate])
        try:
            lower = self._direct(requests)
        finally:
            self.model = kept
        return {"same": fp32 == lower, "prompts": len(requests)}

    def _direct(self, requests: list[Request]) -> list[list[int]]:
        out: queue.Queue = queue.Queue()
        job = Job(requests, out, left=len(requests))
        streamer = self._run([(job, i, r) for i, r in enumerate(requests)])
        return streamer.ids

    def _cast(self, precision: str, note: str) -> None:
        dtype = {"bf16": self._torch.bfloat16, "fp16": self._torch.float16}[precision]
        self.model = self.model.to(dtype)
        self.precision, self.precision_note = precision, note

    # ---- answering -------------------------------------------------------------------------------------

    def generate(self, messages: list[dict], use_adapter: bool = True, max_new_tokens: int = 96) -> Generation:
        """The whole answer at once: the last thing `stream` yields."""
        *_, final = self.stream(messages, use_adapter, max_new_tokens)
        return final

    def stream(self, messages: list[dict], use_adapter: bool = True, max_new_tokens: int = 96):
        """Yield the answer's text as it grows, then a final Generation with its counts and time."""
        for _, item in self.stream_many([Request(messages, use_adapter, max_new_tokens)]):
            yield item

    def generate_many(self, requests: list[Request]) -> list[Generation]:
        finals: list[Generation | None] = [None] * len(requests)
        for row, item in self.stream_many(requests):
            if isinstance(item, Generation):
                finals[row] = item
        return finals  # type: ignore[return-value]

    def stream_many(self, requests: list[Request], cancel: threading.Event | None = None
                    ) -> Iterator[tuple[int, str | Generation]]:
        """(row, text so far) as each answer grows, and (row, Generation) when it is done. Setting `cancel`,
        or closing this iterator early, ends the rows at their next token."""
        out: queue.Queue = queue.Queue()
        job = self.submit(requests, out, cancel=cancel)
        try:
            for _, row, item in drain(out, 1):
                yield row, item
        finally:
            if job is not None:
                job.cancelled.set()  # a caller that stopped reading: no more tokens for it

    def submit(self, requests: list[Request], out: queue.Queue, tag=None,
               cancel: threading.Event | None = None) -> Job | None:
        """Queue `requests` for the batcher; answers arrive on `out` (see Job); returns the job."""
        for r in requests:
            refused = self.refusal(r)
            if refused:
                raise ValueError(refused)
            if r.use_adapter and not self.has_adapter:
                raise ValueError("This model has no adapter to switch on; pick a finished run.")
            if r.use_adapter and r.adapter not in self.adapter_names:
                raise ValueError(f"This model has no adapter named {r.adapter!r}.")
        if not requests:
            out.put((tag, None, None))
            return None
        job = Job(list(requests), out, tag, left=len(requests), cancelled=cancel or threading.Event())
        submit(self, job)
        return job

    def template_takes_tools(self) -> bool:
        """Whether the model's chat template renders a list of tools (it names `tools`)."""
        return "tools" in str(self.tokenizer.chat_template or "")

    def window(self) -> int:
        """The model's context window in tokens (prompt and answer together)."""
        return getattr(self.model.config, "max_position_embeddings", None) or 2048

    def max_prompt_tokens(self, max_new_tokens: int = 96) -> int:
        """How long a prompt may be so the answer still fits the model's context window."""
        return max(64, self.window() - max_new_tokens)

    def batch_rows(self, tokens: int = 1024) -> int:
        """Rows one generate takes at `tokens` (prompt + answer), from the memory estimate: a quarter of the
        memory free now (on a GPU, of its free memory), at most MAX_ROWS."""
        import psutil

        if self.device == "cuda":
            free = self._torch.cuda.mem_get_info()[0]
        else:
            free = psutil.virtual_memory().available
        dtype_bytes = 4 if self.precision == "fp32" else 2
        if self._shape is None:
            try:
                self._shape = shape_of(self.model_name)  # read once: this runs before every batch
            except Exception:  # a model whose shape cannot be read: batch small rather than fail
                self._shape = False
        if not self._shape:
            return 4
        return generation_batch_rows(self._shape, tokens, free / 4, dtype_bytes, MAX_ROWS)

    def answer_jobs(self, jobs: list[Job]) -> None:
        """Answer `jobs` in as few generates as their rows allow (one sampling setting and, without mixed
        batches, one adapter switch per generate; no more rows than memory allows)."""
        rows = [(job, i, r) for job in jobs for i, r in enumerate(job.requests)]
        groups: dict[tuple, list] = {}
        for row in rows:
            mixed = self.mixed_batches or not self.has_adapter
            which = row[2].adapter if row[2].use_adapter and not mixed else None
            groups.setdefault((row[2].sampling(), mixed or row[2].use_adapter, which), []).append(row)
        for group in groups.values():
            group.sort(key=lambda row: self.prompt_tokens(row[2]))  # like lengths pad least
            size = self.batch_rows(self.prompt_tokens(group[-1][2]) + max(r.max_new_tokens for _, _, r in group))
            for start in range(0, len(group), size):
                chunk = group[start:start + size]
                try:
                    self._run(chunk)
                except Exception as exc:  # the callers raise it; the batcher keeps serving
                    for job, row, _ in chunk:
                        job.out.put((job.tag, row, exc))

    def refusal(self, request: Request) -> str | None:
        """One sentence when this model cannot answer `request` as asked (None when it can)."""
        option = request.needs_own_loop()
        if option and not self.own_loop:
            return (f"{option}: this model is answered by transformers' generate (an adapter with virtual tokens, "
                    "or a sliding-window model), which does not give it here; leave it out.")
        return None

    def _ids(self, request: Request) -> list[int]:
        if request.ids is None:
            tools = {"tools": request.tools} if request.tools else {}
            request.ids = list(self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                                  return_dict=True, **tools)["input_ids"])
        return request.ids

    def prompt_tokens(self, request: Request) -> int:
        """Tokens of the request's prompt under the chat template (counted once per request)."""
        return len(self._ids(request))

    def _run(self, rows: list[tuple[Job, int, Request]]) -> RowStreamer:
        """One batched generation over `rows` (one sampling setting), streaming each row back to its job."""
        return self._run_loop(rows) if self.own_loop else self._run_generate(rows)

    def _run_loop(self, rows: list[tuple[Job, int, Request]]) -> RowStreamer:
        """The decoding loop transformers' `generate` runs, with two changes that only save work: prompts are
        read in groups of equal length (no padding read through the model) and their caches stacked, left
        padded, under an attention mask; and a row that has ended leaves the batch (the cache drops it with
        `batch_select_indices`) instead of being decoded to the longest row's end. The logits go through
        transformers' own processors (the request's repetition penalty, 1.1 for a chat; suppressed special
        tokens; temperature and top-p when sampling) and what `Decoding` adds (presence and frequency
        penalties, a JSON grammar), then argmax or a draw (from the request's seeded generator)."""
        torch = self._torch
        from transformers import (DynamicCache, LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                  SuppressTokensLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper)

        dev = self.device
        ids = [self._ids(r) for _, _, r in rows]
        lens = [len(i) for i in ids]
        width, n = max(lens), len(rows)
        streamer = RowStreamer(self.tokenizer, rows, lens, self._ends, prompts_first=False)
        if max(r.max_new_tokens for _, _, r in rows) == 0:  # scoring only (completions with echo, max_tokens 0)
            return self._score_only(rows, ids, streamer)
        asked = rows[0][2]  # the batch decodes alike (Request.sampling)
        temperature, top_p = asked.sampling()[:2]
        penalise = LogitsProcessorList()
        if asked.repetition_penalty != 1.0:
            penalise.append(RepetitionPenaltyLogitsProcessor(asked.repetition_penalty))
        if self._suppress and asked.suppress_special:
            penalise.append(SuppressTokensLogitsProcessor(self._suppress, device=dev))
        warp = LogitsProcessorList()
        if temperature > 0:
            warp.append(TemperatureLogitsWarper(temperature))
            if top_p < 1:
                warp.append(TopPLogitsWarper(top_p))
        decode = self._decoding(rows, ids)
        adapter = torch.tensor([[[float(r.use_adapter)]] for _, _, r in rows], device=dev)
        switch = self._switch(rows)
        max_new = max(r.max_new_tokens for _, _, r in rows)
        with COMPUTE, torch.inference_mode(), switch, self._rows_cleared():
            # prompts of equal length together, unpadded
            last = [None] * n
            by_len: dict[int, list[int]] = {}
            for r, length in enumerate(lens):
                by_len.setdefault(length, []).append(r)
            parts = []  # (length, rows, their cache)
            for length, members in by_len.items():
                self._set_rows(adapter[members])
                part = DynamicCache(config=self.model.config)
                echo = any(rows[r][2].echo_logprobs for r in members)  # every position's logits, to score the prompt
                out = self.model(input_ids=torch.tensor([ids[r] for r in members], device=dev),
                                 **{self._cache_arg: part}, use_cache=True, logits_to_keep=0 if echo else 1)
                for j, r in enumerate(members):
                    last[r] = out.logits[j, -1]
                    if rows[r][2].echo_logprobs:
                        streamer.prompt_logprobs[r] = decode.prompt_logprobs(out.logits[j], ids[r], rows[r][2])
                del out
                parts.append((length, members, part))
            # one cache for the batch: each row's keys and values at the right, zeros (masked out) before them
            cache = DynamicCache(config=self.model.config)
            for layer in range(len(parts[0][2].layers)):
                first = parts[0][2].layers[layer].keys
                k = first.new_zeros((n, first.shape[1], width, first.shape[3]))
                v = torch.zeros_like(k)
                for length, members, part in parts:
                    k[members, :, width - length:] = part.layers[layer].keys
                    v[members, :, width - length:] = part.layers[layer].values
                cache.update(k, v, layer)
            del parts
            seqs = torch.tensor([[self._pad] * (width - len(i)) + list(i) for i in ids], device=dev)
            attention = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=dev)
            positions = torch.tensor(lens, device=dev)
            logits = torch.stack(last)
            alive = list(range(n))
            self._set_rows(adapter)
            for step in range(max_new):
                raw = logits.float()
                scores = decode.constrain(alive, decode.penalise(alive, penalise(seqs, raw)))
                chosen = decode.choose(alive, warp(seqs, scores), temperature > 0)
                decode.record(alive, raw, chosen, streamer)
                every = torch.full((n,), self._pad, dtype=chosen.dtype)
                every[alive] = chosen.cpu()
                streamer.put(every)
                keep = [j for j, r in enumerate(alive) if not streamer.done[r]]
                if not keep or step == max_new - 1:
                    break
                if len(keep) < len(alive):  # ended rows leave the batch
                    index = torch.tensor(keep, device=dev)
                    cache.batch_select_indices(index)
                    seqs, attention, positions = seqs[index], attention[index], positions[index]
                    chosen, adapter = chosen[index], adapter[index]
                    self._set_rows(adapter)
                    alive = [alive[j] for j in keep]
                seqs = torch.cat([seqs, chosen[:, None]], dim=1)
                attention = torch.cat([attention, attention.new_ones((len(alive), 1))], dim=1)
                out = self.model(input_ids=chosen[:, None], attention_mask=attention, position_ids=positions[:, None],
                                 **{self._cache_arg: cache}, use_cache=True, logits_to_keep=1,
                                 cache_position=torch.tensor([attention.shape[1] - 1], device=dev))
                positions = positions + 1
                logits = out.logits[:, -1]
        streamer.end()
        return streamer

    def _decoding(self, rows, ids) -> Decoding:
        return Decoding([r for _, _, r in rows], ids, self._torch, self.model.config.vocab_size, self.tokenizer,
                        sorted(self._ends), self.device)

    def _score_only(self, rows, ids, streamer: RowStreamer) -> RowStreamer:
        """The prompts' log-probabilities and no answer: one forward pass per prompt."""
        torch = self._torch
        decode = self._decoding(rows, ids)
        with COMPUTE, torch.inference_mode(), self._switch(rows), self._rows_cleared():
            for r, (_, _, request) in enumerate(rows):
                self._set_rows(torch.tensor([[[float(request.use_adapter)]]], device=self.device))
                logits = self.model(input_ids=torch.tensor([ids[r]], device=self.device)).logits[0]
                streamer.prompt_logprobs[r] = decode.prompt_logprobs(logits, ids[r], request)
        streamer.end()
        return streamer

    def _switch(self, rows):
        """The adapter state for a batch of one switch setting and adapter (see _answer): off, or the one asked."""
        if not self.has_adapter or self.masked:
            return nullcontext()
        if not rows[0][2].use_adapter:
            return self.model.disable_adapter()
        if len(self.adapter_names) > 1 and self.model.active_adapter != rows[0][2].adapter:
            self.model.set_adapter(rows[0][2].adapter)  # only the executor's thread runs batches
        return nullcontext()

    def _set_rows(self, adapter) -> None:
        self._mask.value = adapter.to(self.model.dtype)
        self._mask.any = bool(adapter.any())

    @contextmanager
    def _rows_cleared(self):
        try:
            yield
        finally:
            self._mask.value, self._mask.any = None, True

    def _run_generate(self, rows: list[tuple[Job, int, Request]]) -> RowStreamer:
        """One `generate` over `rows`, left padded: for adapters that add virtual tokens (prompt learning)
        and models with sliding-window caches, which the own loop does not stack."""
        torch = self._torch
        from transformers import StoppingCriteriaList

        ids = [self._ids(r) for _, _, r in rows]
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([[self._pad] * (width - len(i)) + list(i) for i in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=self.device)
        streamer = RowStreamer(self.tokenizer, rows, [len(i) for i in ids], self._ends)
        temperature, top_p = rows[0][2].sampling()[:2]
        kwargs = dict(do_sample=False) if temperature <= 0 else dict(do_sample=True, temperature=temperature,
                                                                     top_p=top_p)
        switch = nullcontext()
        if self.has_adapter and self.mixed_batches:
            kwargs["adapter_names"] = ["default" if r.use_adapter else "__base__" for _, _, r in rows]
        else:
            switch = self._switch(rows)
        with COMPUTE, torch.inference_mode(), switch:
            self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max(r.max_new_tokens for _, _, r in rows),
                repetition_penalty=rows[0][2].repetition_penalty, pad_token_id=self._pad,
                suppress_tokens=self._suppress if rows[0][2].suppress_special else None,
                streamer=streamer, stopping_criteria=StoppingCriteriaList([RowsDone(streamer)]), **kwargs,
            )
        streamer.end()  # rows generate stopped at its overall limit
        return streamer


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


@dataclass
class Answerers:
    """The base and fine-tuned answerers of a comparison, and the batch answer callable rag/ takes:
    `answerers(jobs)` with jobs [(side, messages)], side "base" or "fine-tuned", yields (job index, text so far)
    and (job index, Generation). Rows for one set of weights go to its batcher together; after a full
    fine-tune, base and tuned models each batch their own rows."""
    base: Answerer
    tuned: Answerer | None
    max_new_tokens: int = 96

    def __iter__(self):  # base, tuned = answerers(...)
        return iter((self.base, self.tuned))

    @property
    def sides(self) -> tuple[str, ...]:
        return ("base", "fine-tuned") if self.tuned else ("base",)

    @property
    def chat(self) -> ChatModel:
        return self.base.chat

    def batch_rows(self, tokens: int = 1024) -> int:
        return self.chat.batch_rows(tokens)

    def batching(self) -> str:
        """How the columns are answered, in a few words."""
        if self.tuned is None:
            return "The base columns in one batch"
        if self.tuned.chat is not self.base.chat:
            return "Base and fine-tuned models, each answering its columns in one batch"
        if self.chat.masked or (self.chat.mixed_batches and not self.chat.own_loop):
            return "All four columns in one batch"
        return "Base and fine-tuned columns in two batches (this kind of adapter cannot share one)"

    def precision(self) -> str:
        notes = {a.chat.precision_note for a in (self.base, self.tuned) if a}
        return "; ".join(sorted(notes))

    def __call__(self, jobs: list[tuple[str, list[dict]]]) -> Iterator[tuple[int, str | Generation]]:
        by_model: dict[int, tuple[ChatModel, list[int], list[Request]]] = {}
        for i, (side, messages) in enumerate(jobs):
            who = self.tuned if side == "fine-tuned" else self.base
            if who is None:
                raise ValueError("There is no fine-tuned model to answer with; pick a finished run.")
            _, index, requests = by_model.setdefault(id(who.chat), (who.chat, [], []))
            index.append(i)
            requests.append(Request(messages, who.use_adapter, self.max_new_tokens))
        out: queue.Queue = queue.Queue()
        for key, (chat, _, requests) in by_model.items():
            chat.submit(requests, out, tag=key)
        for key, row, item in drain(out, len(by_model)):
            yield by_model[key][1][row], item


def answerers(model: str, adapter=None, tuned_model=None) -> Answerers:
    """The base and fine-tuned answerers: one set of weights with the adapter switched off and on,
    or, after full fine-tuning, the base and the fine-tuned model side by side."""
    if tuned_model:
        return Answerers(Answerer(get_chat_model(model)), Answerer(get_chat_model(str(tuned_model))))
    chat = get_chat_model(model, adapter)
    return Answerers(Answerer(chat, False), Answerer(chat, True) if chat.has_adapter else None)


def run_answerers(run, model: str | None = None) -> Answerers:
    """Answerers for a run from the registry (adapter or full model), or for `model` alone."""
    if run is None:
        return answerers(model)
    return answerers(run.base_model, run.adapter, run.model_dir)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    chat = ChatModel(args[0], args[1] if len(args) == 3 else None)
    print(f"({chat.precision_note})", file=sys.stderr)
    print(chat.generate([{"role": "user", "content": args[-1]}], use_adapter=chat.has_adapter).text)
