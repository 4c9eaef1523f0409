"""GRPO's rollouts sampled by the studio's own executor (engine/infer/chat.py) instead of transformers' `generate`.

trl's GRPOTrainer takes a `rollout_func(prompts, trainer)` that returns each prompt's tokens and one sampled
completion per prompt (its batch already holds each prompt num_generations times). `ExecutorRollouts` is one:
on its first call it saves the adapter being trained, loads a `ChatModel` of the same base with it (a second
copy of the base weights, packed for oneDNN; the trained LoRA weights are read under a row mask, see
engine/infer/kernels.py), and before every call copies the trained LoRA weights into it, so each rollout
samples the policy as it is at that step. The executor reads prompts in groups of equal length and lets a
finished answer leave the batch; it sampled a GRPO batch 1.8x faster than `generate` here
(`python -m studio.grpo_bench --generation-only`).

Used only where it samples the same distribution: plain LoRA, trained in fp32 on a CPU, one process, no vLLM,
a model of full attention (no sliding window), and where a second copy of the weights fits in half the free
memory. Elsewhere `executor_sampler` returns None and trl samples with `generate` (or vLLM). STUDIO_GRPO_EXECUTOR=0
turns it off. The training process gets it from studio/train_process.py (engine.train may not import infer).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psutil

from engine.infer.batching import Request
from engine.infer.chat import ChatModel
from engine.models import ShapeError, resolve_model, shape_of
from engine.train import preflight

__all__ = ["ExecutorRollouts", "executor_sampler", "why_not"]


def why_not(cfg) -> str | None:
    """Why GRPO's rollouts of `cfg` are not sampled by the executor here (None when they are)."""
    import torch  # deferred: torch is heavy

    if cfg.objective != "grpo":
        return "not a GRPO run"
    if os.environ.get("STUDIO_GRPO_EXECUTOR", "1") == "0":
        return "STUDIO_GRPO_EXECUTOR=0"
    if torch.cuda.is_available():
        return "on a GPU trl samples with vLLM or transformers' generate"
    if cfg.distributed():
        return "a run of several processes"
    if cfg.method != "lora":
        return f"method {cfg.method} (the executor follows plain LoRA's weights only)"
    if preflight.precision(cfg) != "fp32":
        return f"precision {preflight.precision(cfg)} (the executor samples in fp32)"
    if os.environ.get("STUDIO_MASKED_LORA", "1") == "0" or os.environ.get("STUDIO_OWN_LOOP", "1") == "0":
        return "the executor's own loop is turned off"
    try:
        from transformers import AutoConfig  # deferred: transformers is heavy

        config = AutoConfig.from_pretrained(resolve_model(cfg.model), revision=cfg.revision or None,
                                            trust_remote_code=cfg.trust_remote_code)
        weights = shape_of(cfg.model).params * 4 * 2  # fp32, and its packed copy for oneDNN
    except (ShapeError, OSError, ValueError):
        return "the model's config cannot be read here, so its second copy cannot be priced"
    # the executor's own loop takes plain key/value caches only (engine/infer/chat.py)
    if getattr(config, "sliding_window", None) or any(t != "full_attention"
                                                       for t in (getattr(config, "layer_types", None) or [])):
        return "a model with sliding-window attention (the executor's own loop takes full attention only)"
    if weights > psutil.virtual_memory().available / 2:
        return f"too little free memory for the executor's own copy of the weights ({weights / 2**30:.1f} GiB)"
    return None


def executor_sampler(cfg, base: str | Path):
    """A rollout_func for trl's GRPOTrainer sampling with the executor, or None where it would not sample the
    same distribution as the model being trained (see `why_not`)."""
    reason = why_not(cfg)
    if reason:
        print(f"GRPO rollouts: not the executor here: {reason}", flush=True)
        return None
    return ExecutorRollouts(cfg, base)


class ExecutorRollouts:
    """trl's rollout_func: sample one completion per prompt of the batch with a ChatModel that follows the
    trained LoRA weights."""

    def __init__(self, cfg, base: str | Path):
        self.cfg, self.base = cfg, str(base)
        self.chat: ChatModel | None = None
        self._pairs: list = []  # (trained parameter, the executor's copy), matched by name
        self.calls = 0

    def _load(self, model) -> None:
        """The executor's model: the same base with the adapter as it is now, its LoRA weights paired by name
        with the trained ones."""
        with tempfile.TemporaryDirectory(prefix="grpo-rollouts-") as tmp:
            model.save_pretrained(tmp)
            self.chat = ChatModel(self.base, adapter=tmp, precision="fp32")
        if not (self.chat.masked and self.chat.own_loop):
            raise RuntimeError("Bug: GRPO's executor rollouts need the executor's masked LoRA and own loop, "
                               f"which this model did not take ({self.chat.kernels}).")
        trained = {n: p for n, p in model.named_parameters() if ".lora_" in n}
        copies = {n: p for n, p in self.chat.model.named_parameters() if ".lora_" in n}
        if set(trained) != set(copies) or not trained:
            raise RuntimeError("Bug: the executor's LoRA weights do not match the trained ones by name "
                               f"({len(trained)} trained, {len(copies)} loaded).")
        self._pairs = [(trained[n], copies[n]) for n in sorted(trained)]

    def sync(self, model) -> None:
        """Copy the trained LoRA weights into the executor's model."""
        import torch  # deferred: torch is heavy

        if self.chat is None:
            self._load(model)
        with torch.no_grad():
            for live, copy in self._pairs:
                copy.copy_(live)

    def prompt_ids(self, prompts: list, trainer) -> list[list[int]]:
        """Each prompt's tokens as trl's own generation path makes them (chat template, generation prompt)."""
        if isinstance(prompts[0], str):
            return [list(ids) for ids in trainer.processing_class(text=prompts, add_special_tokens=False)["input_ids"]]
        tokenized = trainer.processing_class.apply_chat_template(
            conversation=prompts, chat_template=getattr(trainer, "chat_template", None), add_generation_prompt=True,
            tokenize=True, return_dict=True, **(getattr(trainer, "chat_template_kwargs", None) or {}))
        return [list(ids) for ids in tokenized["input_ids"]]

    def __call__(self, prompts: list, trainer) -> dict:
        self.sync(trainer.accelerator.unwrap_model(trainer.model))
        args = trainer.args
        ids = self.prompt_ids(prompts, trainer)
        step = trainer.state.global_step
        requests = [Request([], use_adapter=True, max_new_tokens=args.max_completion_length, ids=list(p), raw=True,
                            temperature=args.temperature, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                            suppress_special=False, seed=hash((self.cfg.seed, step, self.calls, i)) % 2**31)
                    for i, p in enumerate(ids)]
        self.calls += 1
        answers = self.chat.generate_many(requests)
        return {"prompt_ids": ids, "completion_ids": [list(a.token_ids) for a in answers], "logprobs": None}
