"""`studio serve --engine vllm`: the same OpenAI-compatible routes (engine/infer/serve.py), answered by vLLM.

On a CUDA GPU with `vllm` installed, one vLLM engine holds the base weights and serves every adapter run
as a LoRA request (`enable_lora`), batching concurrent requests continuously; the reply streams as vLLM
produces it. Full fine-tunes and non-LoRA adapters are refused with a sentence (serve them with the
studio's own engine). vLLM's asyncio loop runs on a thread of its own; the HTTP handlers read from it.

    studio serve RUN_ID [RUN_ID ...] --engine vllm [--port 8000]
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from engine.infer.batching import Generation, Request
from engine.infer.served import ServeError, Served
from engine.models import DEFAULT_MODEL, resolve_model
from engine.train.runs import Run, runs_root


class _Loop:
    """An asyncio loop on its own thread, for vLLM's engine."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="vllm loop").start()

    def call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


@dataclass
class VllmServed:
    """A model id answered by vLLM (engine/infer/served.py's contract): the base, or one run's LoRA adapter."""
    id: str
    adapter: str | None  # the run id of the LoRA adapter, None for the base weights
    created: int
    owned_by: str
    engine: object = None
    tokenizer: object = None
    lora: object = None  # vllm LoRARequest, None for the base
    context: int = 2048
    loop: _Loop = field(default=None, repr=False)

    def request(self, messages, max_tokens, **options) -> Request:
        return Request(messages or [], self.adapter is not None, max_tokens, adapter=self.adapter or "default",
                       **options)

    def refusal(self, request: Request) -> str | None:
        """vLLM is asked here for what the studio's chat needs (text, sampling, stop); the rest is refused."""
        option = request.needs_own_loop() or ("tools" if request.tools else None) or \
            ("prompt" if request.raw else None)
        if option:
            return (f"{option}: not served through --engine vllm here; serve with the studio's own engine "
                    "(without --engine vllm) for it.")
        return None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def template_takes_tools(self) -> bool:
        return False  # refused in `refusal`: the calls are not read back from vLLM's output here

    def prompt_tokens(self, request: Request) -> int:
        return len(self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True))

    def window(self) -> int:
        return self.context

    def answer_many(self, requests: list[Request]) -> Iterator[tuple[int, str | Generation]]:
        for row, request in enumerate(requests):  # one at a time: vLLM batches them itself
            for item in self.answer(request):
                yield row, item

    def answer(self, request: Request) -> Iterator[str | Generation]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=request.temperature, top_p=request.top_p,
                                max_tokens=request.max_new_tokens, stop=list(request.stop) or None,
                                presence_penalty=request.presence_penalty,
                                frequency_penalty=request.frequency_penalty,
                                repetition_penalty=request.repetition_penalty)
        prompt = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
        out: queue.Queue = queue.Queue()
        start = time.perf_counter()

        async def run():
            try:
                async for item in self.engine.generate(prompt, params, uuid.uuid4().hex, lora_request=self.lora):
                    out.put(item)
            except Exception as exc:  # raised on the handler's thread
                out.put(exc)
            out.put(None)

        asyncio.run_coroutine_threadsafe(run(), self.loop.loop)
        last = None
        while (item := out.get()) is not None:
            if isinstance(item, Exception):
                raise item
            last = item
            yield item.outputs[0].text
        if last is None:
            raise ServeError("vLLM returned no output for the request.")
        done = last.outputs[0]
        yield Generation(done.text, len(last.prompt_token_ids), len(done.token_ids), time.perf_counter() - start,
                         "length" if done.finish_reason == "length" else "stop")


def load_vllm_models(run_ids: list[str], base: str | None = None, root=None) -> dict[str, Served]:
    try:
        import torch
        from vllm import AsyncEngineArgs, AsyncLLMEngine
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise ServeError("--engine vllm needs the vllm package (pip install vllm) on a CUDA GPU; "
                         "without it, serve with the studio's own engine.") from None
    if not torch.cuda.is_available():
        raise ServeError("--engine vllm needs a CUDA GPU; none is visible here.")

    root = root or runs_root()
    runs = [Run(root / r) for r in run_ids]
    for run in runs:
        if run.adapter is None:
            raise ServeError(f"Run {run.id} has no LoRA adapter (a full fine-tune, or not finished); "
                             "vLLM serves LoRA adapters on one base: serve it without --engine vllm.")
        kind = json.loads((run.adapter / "adapter_config.json").read_text()).get("peft_type")
        if kind != "LORA":
            raise ServeError(f"Run {run.id} trained a {kind} adapter; vLLM serves LoRA adapters only.")
    bases = {r.config.model for r in runs} | ({base} if base else set())
    if len(bases) > 1:
        raise ServeError(f"vLLM serves one base model at a time; these runs have {', '.join(sorted(bases))}.")
    model = next(iter(bases)) if bases else DEFAULT_MODEL
    ranks = [json.loads((r.adapter / "adapter_config.json").read_text()).get("r", 16) for r in runs]
    loop = _Loop()
    engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(
        model=resolve_model(model), enable_lora=bool(runs), max_loras=max(1, len(runs)),
        max_lora_rank=max(ranks or [16])))
    tokenizer = loop.call(engine.get_tokenizer()) if asyncio.iscoroutinefunction(engine.get_tokenizer) \
        else engine.get_tokenizer()
    context = getattr(getattr(engine, "model_config", None), "max_model_len", 2048)
    common = dict(engine=engine, tokenizer=tokenizer, context=context, loop=loop)
    served: dict[str, Served] = {model: VllmServed(model, None, int(time.time()), "studio (vllm)", **common)}
    for i, run in enumerate(runs, start=1):
        served[run.id] = VllmServed(run.id, run.id, int(run.dir.stat().st_mtime), "studio (vllm)",
                                    lora=LoRARequest(run.id, i, str(run.adapter)), **common)
    return served
