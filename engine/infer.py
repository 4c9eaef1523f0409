"""Answering chat messages with a base model and the same model with a trained adapter, in batches.

`ChatModel` loads the base weights once. With an adapter attached by peft, base and fine-tuned
rows share one copy of the weights: a plain LoRA adapter answers both kinds of row in the same
batch, its update added under a per-row mask (`masked_lora`); other adapters answer their base
rows in a batch of their own with the adapter switched off (`disable_adapter()`); adapters that add
virtual tokens keep transformers' `generate` and peft's mixed batches (`adapter_names`).

Every request goes through one executor: it takes the requests waiting, waits at most
`BATCH_WINDOW_S` for companions (other users' questions) when others are about, and answers each
model's requests in one batched generation no larger than the memory estimate allows: prompts read
in groups of equal length, their caches stacked left-padded, ended rows leaving the batch (see
`_run_loop`). A streamer splits the new tokens by row, so each caller still sees its own answer
grow token by token. Batched greedy answers equal one-at-a-time answers in fp32 (tested).

On a CPU, fp32 linear layers are packed once for oneDNN (`PackedLinear`): the stock kernel repacks
each weight at every call, so a 4-row step costs about 3x a 1-row step; packed, 4 rows cost what 1
does and 1 row runs about 2x faster. Packing is checked against the plain layer's output first and
skipped where oneDNN is missing or memory is short (STUDIO_PACKED=0 turns it off). The LoRA row
mask replaces peft's mixed batches, which split and regroup the batch in every layer. Every
generate runs on the process's main thread where it can (see "the executor" below): off it, each of
torch's parallel ops costs about 40 us more, which halves a small model's decoding speed.

Precision: fp32, unless this machine's measured capability says bf16 (fp16 on a GPU without bf16)
multiplies faster *and* greedy answers to the sample questions come out token for token the same
as fp32's (adapter off); the check runs once per base model and machine, cached beside the
capability figures.

    python -m engine.infer MODEL [ADAPTER] "question"
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from engine.models import load_causal_lm, load_tokenizer

BATCH_WINDOW_S = float(os.environ.get("STUDIO_BATCH_WINDOW_MS", "150")) / 1000  # wait for companions
MAX_ROWS = 32  # rows per generate at most, whatever memory allows: padding waste grows with the batch
# Growing texts go to their caller at most this often: every caller woken for every token of every row
# took the main thread's interpreter lock often enough to slow the decoding loop itself.
STREAM_EVERY_S = 0.1
PRECISION_PROMPTS = 20  # sample questions the lower-precision check answers (all the bundled ones)
PRECISION_TOKENS = 32
_COMPUTE = threading.Lock()  # one generate at a time on this machine, whichever model: they share the cores


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    answer_tokens: int
    seconds: float  # from the request to its last token (in a batch: its own row's last token)
    finish_reason: str = "stop"  # "stop" (an end token or a stop string) or "length"


@dataclass
class Request:
    messages: list[dict]
    use_adapter: bool = False
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    ids: list[int] | None = field(default=None, repr=False, compare=False)  # the prompt's tokens, once worked out

    def sampling(self) -> tuple:
        """Rows batch together only when they decode alike."""
        return (0.0, 1.0) if self.temperature <= 0 else (float(self.temperature), float(self.top_p))


@dataclass
class _Job:
    """One caller's requests; the worker answers them on `out` as (tag, row, text or Generation or error),
    then (tag, None, None) when all its rows are done."""
    requests: list[Request]
    out: queue.Queue
    tag: object = None
    submitted: float = field(default_factory=time.perf_counter)
    left: int = 0


class _RowStreamer:
    """A transformers streamer for a batch: keeps each row's new tokens, says each row's text as it grows,
    and marks a row done at its end token, its own token limit or a stop string (read by `_RowsDone`)."""

    def __init__(self, tok, rows: list[tuple[_Job, int, Request]], prompt_lens: list[int], ends: set[int]):
        self.tok, self.rows, self.ends, self.prompt_lens = tok, rows, ends, prompt_lens
        self.ids: list[list[int]] = [[] for _ in rows]
        self.text = [""] * len(rows)
        self.done = [False] * len(rows)
        self.reason = ["length"] * len(rows)
        self._said: dict[int, float] = {}
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate first hands over the prompts
            self._prompt_seen = True
            return
        for r, token in enumerate(value.reshape(-1).tolist()):
            if self.done[r]:
                continue
            job, row, req = self.rows[r]
            self.ids[r].append(token)
            if token in self.ends:
                self._finish(r, "stop")
                continue
            text = self.tok.decode(self.ids[r], skip_special_tokens=True)
            cut = min((text.find(s) for s in req.stop if s and s in text), default=-1)
            if cut >= 0:
                self._finish(r, "stop", text[:cut])
                continue
            if not text.endswith("\ufffd") and text != self.text[r]:  # half a character: wait for the rest
                self.text[r] = text
                now = time.perf_counter()
                if now - self._said.get(r, 0.0) >= STREAM_EVERY_S:  # a waiting caller wakes a few times a second
                    self._said[r] = now
                    job.out.put((job.tag, row, text))
            if len(self.ids[r]) >= req.max_new_tokens:
                self._finish(r, "length")

    def _finish(self, r: int, reason: str, cut: str | None = None) -> None:
        """The row's answer: all its tokens but the end token decoded (or the text before a stop string)."""
        job, row, _ = self.rows[r]
        self.done[r], self.reason[r] = True, reason
        ids = self.ids[r][:-1] if self.ids[r] and self.ids[r][-1] in self.ends else self.ids[r]
        self.text[r] = cut if cut is not None else self.tok.decode(ids, skip_special_tokens=True)
        job.out.put((job.tag, row, Generation(self.text[r].strip(), self.prompt_lens[r], len(self.ids[r]),
                                              time.perf_counter() - job.submitted, reason)))
        job.left -= 1
        if job.left == 0:
            job.out.put((job.tag, None, None))

    def end(self) -> None:
        for r in range(len(self.rows)):
            if not self.done[r]:
                self._finish(r, "length")


class _RowsDone:
    """Stopping criterion: each row ends when its streamer says so (its own limit, stop string or end)."""

    def __init__(self, streamer: _RowStreamer):
        self.streamer = streamer

    def __call__(self, input_ids, scores, **kw):
        import torch

        return torch.tensor(self.streamer.done, dtype=torch.bool, device=input_ids.device)


class PackedLinear:
    """Builds a module that computes `linear` with its weight packed once for oneDNN (CPU, fp32)."""

    def __new__(cls, linear):
        import torch

        class _Packed(torch.nn.Module):
            def __init__(self, lin):
                super().__init__()
                self.in_features, self.out_features = lin.in_features, lin.out_features
                self.weight, self.bias = lin.weight, lin.bias  # kept: peft and dtype checks read them
                self.packed = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach(), 4)

            def forward(self, x):
                flat = x.reshape(-1, x.shape[-1])
                y = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
                return y.reshape(*x.shape[:-1], self.out_features)

        return _Packed(linear)


def pack_linears(model) -> str:
    """Swap every fp32 nn.Linear of `model` (on a CPU) for a packed one; says what it did."""
    import psutil
    import torch

    if os.environ.get("STUDIO_PACKED", "1") == "0":
        return "plain linear layers (STUDIO_PACKED=0)"
    linears = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear and child.weight.dtype == torch.float32
               and child.weight.device.type == "cpu"]
    if not linears:
        return "plain linear layers"
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return "plain linear layers (this torch has no oneDNN linear)"
    size = sum(c.weight.numel() * 4 for _, _, c in linears)
    if size > psutil.virtual_memory().available / 4:
        return "plain linear layers (too little free memory for a packed copy)"
    with torch.inference_mode():
        probe = linears[0][2]
        x = torch.randn(3, probe.in_features)
        if not torch.allclose(PackedLinear(probe)(x), probe(x), rtol=1e-4, atol=1e-5):
            return "plain linear layers (oneDNN's packed layer disagreed with the plain one)"
        for parent, name, child in linears:
            setattr(parent, name, PackedLinear(child))
    return f"{len(linears)} linear layers packed for oneDNN"


class _RowMask:
    """Which rows of the batch running now take the adapter: a (rows, 1, 1) tensor of 0/1 and whether any
    row does; None outside a batched generation (every row takes it unless peft's switch is off)."""
    value = None
    any = True


def masked_lora(model, mask: _RowMask) -> bool:
    """Give each of peft's LoRA linear layers a forward that adds the adapter's update row by row under
    `mask`: y = W x + scaling * B (A x) * mask, the sum peft computes (dropout is off in eval), without
    peft's per-layer split and regroup of a mixed batch, which made a 4-row step cost 3x a 1-row step
    here. The layers stay peft's (`disable_adapter()` still switches them off). Only plain LoRA (one
    adapter, no DoRA, no LoRA bias, linear layers); False leaves the model as it was."""
    import types

    import torch
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    plain = all(type(m) is LoraLinear and list(m.lora_A) == ["default"] and not m.use_dora.get("default")
                and not getattr(m, "lora_bias", {}).get("default") and not m.merged for m in layers)
    if not layers or not plain:
        return False
    linear = torch.nn.functional.linear

    def forward(self, x, *args, **kw):
        y = self.base_layer(x, *args, **kw)
        if self.disable_adapters or not mask.any:
            return y
        a, b, scaling = self._masked
        delta = linear(linear(x, a), b) * scaling
        return y + (delta if mask.value is None else delta * mask.value)

    for m in layers:
        # a plain attribute, not a registered parameter: the weights stay peft's own, under their own names
        m.__dict__["_masked"] = (m.lora_A["default"].weight, m.lora_B["default"].weight, float(m.scaling["default"]))
        m.forward = types.MethodType(forward, m)
    return True


def _precision_cache() -> Path:
    from engine.capability import cache_path

    return cache_path().with_name("generation-precision.json")


class ChatModel:
    def __init__(self, model: str, adapter: str | Path | None = None, precision: str | None = None):
        """`precision`: "auto" (default, or STUDIO_GENERATE_PRECISION), "fp32", "bf16" or "fp16"."""
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
        self.model = base.eval()
        # peft answers base and adapter rows in one batch for LoRA (not DoRA) only
        self.mixed_batches = adapter_config.get("peft_type") == "LORA" and not adapter_config.get("use_dora")
        tok = self.tokenizer
        # Never emit role markers or padding as answer text; only the end-of-turn token ends an answer.
        ends = self.model.generation_config.eos_token_id
        self._ends = set(ends if isinstance(ends, list) else [ends]) | {tok.eos_token_id}
        self._suppress = [i for i in tok.all_special_ids if i not in self._ends] or None
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.precision, self.precision_note = "fp32", "fp32"
        # peft's own layers and transformers' generate while the precision is checked
        self._mask, self.masked, self.own_loop = _RowMask(), False, False
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
        from engine.capability import capability

        cap = capability(self.model_name)
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
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(cache, indent=1))
                os.replace(tmp, path)
            except OSError:
                pass
        same, checked = cache[key]["same"], cache[key]["prompts"]
        if same:
            self._cast(candidate, f"{candidate}: {cap.describe(candidate)}, and greedy answers to {checked} sample "
                                  f"questions match fp32's token for token")
        else:
            self.precision_note = (f"fp32: {candidate} is faster here but its greedy answers to {checked} sample "
                                   f"questions differ from fp32's")

    def _same_answers(self, candidate: str) -> dict:
        """Greedy answers to the sample questions in fp32 and in `candidate`, token for token."""
        from engine.config import SAMPLE_EVAL

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
        job = _Job(requests, out, left=len(requests))
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

    def stream_many(self, requests: list[Request]) -> Iterator[tuple[int, str | Generation]]:
        """(row, text so far) as each answer grows, and (row, Generation) when it is done."""
        out: queue.Queue = queue.Queue()
        self.submit(requests, out)
        for _, row, item in _drain(out, 1):
            yield row, item

    def submit(self, requests: list[Request], out: queue.Queue, tag=None) -> None:
        """Queue `requests` for the batcher; answers arrive on `out` (see _Job)."""
        for r in requests:
            if r.use_adapter and not self.has_adapter:
                raise ValueError("This model has no adapter to switch on; pick a finished run.")
        if not requests:
            out.put((tag, None, None))
            return
        _WORK.put((self, _Job(list(requests), out, tag, left=len(requests))))
        if not _on_main_thread():  # the main thread answers its own requests while it waits (see _drain)
            _ensure_executor()

    def max_prompt_tokens(self, max_new_tokens: int = 96) -> int:
        """How long a prompt may be so the answer still fits the model's context window."""
        window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        return max(64, window - max_new_tokens)

    def batch_rows(self, tokens: int = 1024) -> int:
        """Rows one generate takes at `tokens` (prompt + answer), from the memory estimate: a quarter of the
        memory free now (on a GPU, of its free memory), at most MAX_ROWS."""
        import psutil

        from engine.estimate import generation_batch_rows, shape_of

        if self.device == "cuda":
            free = self._torch.cuda.mem_get_info()[0]
        else:
            free = psutil.virtual_memory().available
        dtype_bytes = 4 if self.precision == "fp32" else 2
        try:
            shape = shape_of(self.model_name)
        except Exception:  # a model whose shape cannot be read: batch small rather than fail
            return 4
        return generation_batch_rows(shape, tokens, free / 4, dtype_bytes, MAX_ROWS)

    def _answer(self, jobs: list[_Job]) -> None:
        """Answer `jobs` in as few generates as their rows allow (one sampling setting and, without mixed
        batches, one adapter switch per generate; no more rows than memory allows)."""
        rows = [(job, i, r) for job in jobs for i, r in enumerate(job.requests)]
        groups: dict[tuple, list] = {}
        for row in rows:
            mixed = self.mixed_batches or not self.has_adapter
            groups.setdefault((row[2].sampling(), mixed or row[2].use_adapter), []).append(row)
        for group in groups.values():
            group.sort(key=lambda row: self._prompt_len(row[2]))  # like lengths pad least
            size = self.batch_rows(self._prompt_len(group[-1][2]) + max(r.max_new_tokens for _, _, r in group))
            for start in range(0, len(group), size):
                chunk = group[start:start + size]
                try:
                    self._run(chunk)
                except Exception as exc:  # the callers raise it; the batcher keeps serving
                    for job, row, _ in chunk:
                        job.out.put((job.tag, row, exc))

    def _ids(self, request: Request) -> list[int]:
        if request.ids is None:
            request.ids = list(self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                                  return_dict=True)["input_ids"])
        return request.ids

    def _prompt_len(self, request: Request) -> int:
        return len(self._ids(request))

    def _run(self, rows: list[tuple[_Job, int, Request]]) -> _RowStreamer:
        """One batched generation over `rows` (one sampling setting), streaming each row back to its job."""
        return self._run_loop(rows) if self.own_loop else self._run_generate(rows)

    def _run_loop(self, rows: list[tuple[_Job, int, Request]]) -> _RowStreamer:
        """The decoding loop transformers' `generate` runs, with two changes that only save work: prompts are
        read in groups of equal length (no padding read through the model) and their caches stacked, left
        padded, under an attention mask; and a row that has ended leaves the batch (the cache drops it with
        `batch_select_indices`) instead of being decoded to the longest row's end. The logits go through
        transformers' own processors (repetition penalty 1.1, suppressed special tokens, temperature and
        top-p when sampling), then argmax or a draw."""
        torch = self._torch
        from contextlib import nullcontext

        from transformers import (DynamicCache, LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                  SuppressTokensLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper)

        dev = self.device
        ids = [self._ids(r) for _, _, r in rows]
        lens = [len(i) for i in ids]
        width, n = max(lens), len(rows)
        streamer = _RowStreamer(self.tokenizer, rows, lens, self._ends)
        streamer._prompt_seen = True
        temperature, top_p = rows[0][2].sampling()
        procs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.1)])
        if self._suppress:
            procs.append(SuppressTokensLogitsProcessor(self._suppress, device=dev))
        if temperature > 0:
            procs.append(TemperatureLogitsWarper(temperature))
            if top_p < 1:
                procs.append(TopPLogitsWarper(top_p))
        adapter = torch.tensor([[[float(r.use_adapter)]] for _, _, r in rows], device=dev)
        switch = nullcontext()
        if self.has_adapter and not self.masked and not rows[0][2].use_adapter:
            switch = self.model.disable_adapter()  # rows of one switch setting only (see _answer)
        max_new = max(r.max_new_tokens for _, _, r in rows)
        with _COMPUTE, torch.inference_mode(), switch, self._rows_cleared():
            # prompts of equal length together, unpadded
            last = [None] * n
            keys: list[list] = []
            values: list[list] = []
            by_len: dict[int, list[int]] = {}
            for r, length in enumerate(lens):
                by_len.setdefault(length, []).append(r)
            parts = {}
            for length, members in by_len.items():
                self._set_rows(adapter[members])
                cache = DynamicCache(config=self.model.config)
                out = self.model(input_ids=torch.tensor([ids[r] for r in members], device=dev),
                                 **{self._cache_arg: cache}, use_cache=True, logits_to_keep=1)
                for j, r in enumerate(members):
                    last[r] = out.logits[j, -1]
                parts[length] = (members, cache)
            cache = DynamicCache(config=self.model.config)
            for layer in range(len(next(iter(parts.values()))[1].layers)):
                k0 = next(iter(parts.values()))[1].layers[layer].keys
                k = k0.new_zeros((n, k0.shape[1], width, k0.shape[3]))
                v = torch.zeros_like(k)
                for length, (members, part) in parts.items():
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
                scores = procs(seqs, logits.float())
                if temperature > 0:
                    chosen = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
                else:
                    chosen = scores.argmax(dim=-1)
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

    def _set_rows(self, adapter) -> None:
        self._mask.value = adapter.to(self.model.dtype)
        self._mask.any = bool(adapter.any())

    @contextmanager
    def _rows_cleared(self):
        try:
            yield
        finally:
            self._mask.value, self._mask.any = None, True

    def _run_generate(self, rows: list[tuple[_Job, int, Request]]) -> _RowStreamer:
        """One `generate` over `rows`, left padded: for adapters that add virtual tokens (prompt learning)
        and models with sliding-window caches, which the own loop does not stack."""
        torch = self._torch
        from contextlib import nullcontext

        from transformers import StoppingCriteriaList

        ids = [self._ids(r) for _, _, r in rows]
        width = max(len(i) for i in ids)
        input_ids = torch.tensor([[self._pad] * (width - len(i)) + list(i) for i in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=self.device)
        streamer = _RowStreamer(self.tokenizer, rows, [len(i) for i in ids], self._ends)
        temperature, top_p = rows[0][2].sampling()
        kwargs = dict(do_sample=False) if temperature <= 0 else dict(do_sample=True, temperature=temperature,
                                                                     top_p=top_p)
        switch = nullcontext()
        if self.has_adapter:
            if self.mixed_batches:
                kwargs["adapter_names"] = ["default" if r.use_adapter else "__base__" for _, _, r in rows]
            elif not rows[0][2].use_adapter:
                switch = self.model.disable_adapter()
        with _COMPUTE, torch.inference_mode(), switch:
            self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max(r.max_new_tokens for _, _, r in rows),
                repetition_penalty=1.1, pad_token_id=self._pad, suppress_tokens=self._suppress,
                streamer=streamer, stopping_criteria=StoppingCriteriaList([_RowsDone(streamer)]), **kwargs,
            )
        streamer.end()  # rows generate stopped at its overall limit
        return streamer


# ---- the executor: one thread runs every generate ------------------------------------------------------
#
# torch's OpenMP parallel regions cost about 40 us more each when started from a thread other than the
# process's main thread (measured: a 200k-element add 11 vs 54 us, a packed 1x576 @ 576x1536 product 38
# vs 86-140 us), and a decode step is hundreds of small ops. So generates run on the main thread where it
# can: the app's main thread serves them (`serve_forever`, from ui/app.py), a command-line caller on the
# main thread runs its own while it waits, and only otherwise does a background thread take them.

_WORK: queue.Queue = queue.Queue()  # (ChatModel, _Job), or None to stop
_EXECUTOR: dict = {"thread": None, "main": False}
_EXECUTOR_LOCK = threading.Lock()
_ROUND = {"callers": 0}  # jobs the last round answered


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread() and not _EXECUTOR["main"]


_THREADS: dict = {}


def _pick_threads() -> None:
    """Generate on every core, unless other processes (a training run) keep the cores busy: then on one.
    Measured with a 2-thread matrix loop beside it, 32 rows of Compare took 21 s on one thread and 45 s on
    two: each of torch's parallel ops waits for a partner thread the other process has taken the core from."""
    import psutil
    import torch

    if "all" not in _THREADS:
        _THREADS["all"], _THREADS["me"] = torch.get_num_threads(), psutil.Process()
        psutil.cpu_percent(interval=None)
        _THREADS["me"].cpu_percent(interval=None)
        return
    busy = psutil.cpu_percent(interval=None)  # all cores, since the last round
    mine = _THREADS["me"].cpu_percent(interval=None) / (psutil.cpu_count() or 1)
    threads = 1 if busy - mine > 100 / (psutil.cpu_count() or 1) * 0.8 else _THREADS["all"]
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _ensure_executor() -> None:
    with _EXECUTOR_LOCK:
        if _EXECUTOR["main"]:
            return
        thread = _EXECUTOR["thread"]
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=_execute, daemon=True, name="studio generate")
            thread.start()
            _EXECUTOR["thread"] = thread


def _execute(until=None, window_s: float | None = None) -> None:
    """Take waiting jobs, wait at most `window_s` (BATCH_WINDOW_S) for companions, answer each model's jobs
    together; until None arrives, or until `until()` is true."""
    window_s = BATCH_WINDOW_S if window_s is None else window_s
    while True:
        if until is not None and until():
            return
        try:
            first = _WORK.get(timeout=0.05 if until is not None else None)
        except queue.Empty:
            continue
        if first is None:
            return
        work = [first]
        # Wait for companions only where there are others about: jobs already waiting, or the last round
        # answered more than one caller. A lone user's question starts at once.
        crowded = not _WORK.empty() or _ROUND["callers"] > 1
        deadline = time.perf_counter() + (window_s if crowded else 0.0)
        while sum(len(job.requests) for _, job in work) < MAX_ROWS:
            try:
                item = _WORK.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if item is None:
                _WORK.put(None)  # answer what was gathered, then stop
                break
            work.append(item)
        _ROUND["callers"] = len(work)
        by_model: dict[int, tuple[ChatModel, list[_Job]]] = {}
        for chat, job in work:
            by_model.setdefault(id(chat), (chat, []))[1].append(job)
        for chat, jobs in by_model.values():
            try:
                if chat.device == "cpu":
                    _pick_threads()
                chat._answer(jobs)
            except Exception as exc:  # e.g. messages its chat template refuses: the callers raise it, serving goes on
                for job in jobs:
                    job.out.put((job.tag, 0, exc))


def run_here(fn, *args, **kw):
    """Call `fn` on a helper thread while this (main) thread runs the generates it asks for, as the app's
    main thread does for its handlers; returns what `fn` returns (benchmarks measure the app's way)."""
    result: dict = {}

    def call():
        try:
            result["value"] = fn(*args, **kw)
        except BaseException as exc:  # raised again on the calling thread
            result["error"] = exc

    _EXECUTOR["main"] = True
    try:
        helper = threading.Thread(target=call, daemon=True)
        helper.start()
        _execute(until=lambda: not helper.is_alive())
        helper.join()
    finally:
        _EXECUTOR["main"] = False
    if "error" in result:
        raise result["error"]
    return result["value"]


def serve_forever() -> None:
    """Run every generate on the calling thread (the app's main thread) until the process ends."""
    _EXECUTOR["main"] = True
    _execute()


def _drain(out: queue.Queue, jobs: int) -> Iterator[tuple[object, int, str | Generation]]:
    """What the batcher answers on `out` until `jobs` jobs are done; an error in a row is raised here.
    On the main thread, with no one serving there, the caller runs the waiting generates itself (no wait
    for companions: a command has none)."""
    inline = _on_main_thread()
    while jobs:
        if inline and out.empty():
            _execute(until=lambda: not out.empty(), window_s=0.0)
        tag, row, item = out.get()
        if row is None:
            jobs -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield tag, row, item


@atexit.register
def _stop_executor() -> None:
    """Let the executor finish its batch and return: torch's threads abort the exit if one is still inside."""
    thread = _EXECUTOR["thread"]
    if thread is not None and thread.is_alive():
        _WORK.put(None)
        thread.join(timeout=30)


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
        for key, row, item in _drain(out, len(by_model)):
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
    return answerers(run.config.model, run.adapter, run.model_dir)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    chat = ChatModel(args[0], args[1] if len(args) == 3 else None)
    print(f"({chat.precision_note})", file=sys.stderr)
    print(chat.generate([{"role": "user", "content": args[-1]}], use_adapter=chat.has_adapter).text)
