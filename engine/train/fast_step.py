"""The studio's faster SFT step on a CPU, built on the libraries' own interfaces and exact in fp32.

trl's SFT step on a CPU scores every position through the LM head (prompt and padding included: its
fused head compacts the ignored positions only where Triton runs), recomputes each logits tile in
backward, and folds entropy and top-1 statistics over the whole vocabulary for its logs. Padded
batches spend every layer's work on padding, and trl's padding-free batches, under transformers'
SDPA, attend over one block-diagonal (sum of lengths)^2 mask. Here, where it is the same
computation:

- `StudioSFTTrainer.compute_loss` (trl asks to subclass SFTTrainer and override compute_loss for a
  loss of one's own): the backbone's hidden states, then the LM head and cross-entropy only at the
  positions whose label is not -100, divided as trl divides (by the batch's trained tokens, or
  `num_items_in_batch` under gradient accumulation). Large batches are projected in chunks whose
  logits are recomputed in backward (torch.utils.checkpoint), so memory stays bounded.
- Padding-free batches (trl's collator: the examples end to end, with `cu_seq_lens_q` marking them)
  with `varlen_attention`, an attention function registered with transformers' AttentionInterface:
  transformers' own SDPA attention on each example alone, so the work grows with the sum of the
  squared lengths, not with the square of their sum, and no mask is built.

- LoRA's dropout masks drawn from 16 random bits a value (`faster_dropout`): dropout's own distribution
  from a quarter of the generator's draws, where torch's `bernoulli_` took 13-20% of a CPU step. The
  masks differ from trl's step's draws, as the padding-free step's already do (its tensors have no
  padding); at dropout 0 (the exactness test) nothing changes.
- In fp32, the frozen linear layers' products through oneDNN's linear (`onednn_frozen_linears`, every
  objective of a one-process CPU run): torch's own fp32 product repacks the weight at every call and
  measured 15-30% slower at the step's shapes; the same sums, in another order.

`plan(cfg, model_config, on_gpu, processes)` says which of these a run uses and why not the others;
`fast_step: false` in a run's config trains with trl's own step. On a GPU trl's step is kept (its
Triton head already compacts). tests/test_fast_step.py holds each part to trl's own step: the same
loss at every step and the same trained weights in fp32.

    Used by engine/train/trainer.py; nothing to run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.capability import onednn_available

ATTENTION = "studio_varlen"
# Logits made at once before the projection is chunked (and recomputed in backward): 2^27 floats, 512 MB in fp32
MAX_LOGITS = 1 << 27
# What would change the logits or the forward: the head would need more than a matrix product
_LOGIT_FIELDS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                 "logits_scaling", "attn_logit_softcapping")
# peft methods whose layers apply `lora_dropout` to their input
_LORA_DROPOUT = ("lora", "rslora", "dora", "qlora", "lora-8bit")
# Dropout's drop probability is rounded to this many levels (16 random bits a value)
DROPOUT_LEVELS = 1 << 16
# methods with no frozen fp32 linear layer (every weight trains, or the frozen ones are quantized)
_NO_FROZEN_FP32 = ("full", "qlora", "lora-8bit")
# peft methods whose forward adds to the model's own (virtual tokens, AdaLoRA's orthogonality loss)
_OWN_FORWARD = ("prefix-tuning", "prompt-tuning", "p-tuning", "adalora")


@dataclass(frozen=True)
class Plan:
    compact_loss: bool
    varlen: bool
    why_not: str = ""
    bf16_weights: bool = False  # bf16 under autocast: the frozen layers' weights held in bf16, cast once
    dropout_bits: bool = False  # LoRA's dropout masks drawn from 16 random bits a value (`faster_dropout`)
    onednn: bool = False  # fp32: the frozen linear layers' products through oneDNN (`onednn_frozen_linears`)

    def describe(self) -> str:
        why = f" ({self.why_not})" if self.why_not else ""
        extra = ["frozen layers' products through oneDNN"] if self.onednn else []
        if not self.compact_loss:
            return "; ".join(["trl's own step" + why] + extra)
        parts = ["loss at trained positions only"] + \
                (["examples end to end, each attending to itself"] if self.varlen else []) + \
                (["frozen weights held in bf16"] if self.bf16_weights else []) + \
                (["dropout masks from random bits"] if self.dropout_bits else [])
        return "; ".join(parts + extra) + why


def plan(cfg, model_config, on_gpu: bool, processes: int = 1, precision: str = "fp32") -> Plan:
    """Which parts of the faster step this run uses, and why not the others (one clause). `precision`: the
    run's (preflight's choice for `auto`)."""
    found = _plan(cfg, model_config, on_gpu, processes)
    # oneDNN's products for the frozen layers change no loss: every objective on one CPU process has them
    onednn = precision == "fp32" and not on_gpu and processes == 1 and getattr(cfg, "fast_step", True) and \
        getattr(cfg, "method", None) not in _NO_FROZEN_FP32 and not cfg.distributed() and onednn_available()
    if not found.compact_loss:
        return replace(found, onednn=onednn)
    return replace(found, bf16_weights=precision == "bf16" and cfg.method in ("lora", "rslora"),
                   dropout_bits=cfg.method in _LORA_DROPOUT and cfg.lora_dropout > 0, onednn=onednn)


def _plan(cfg, model_config, on_gpu: bool, processes: int) -> Plan:
    if not getattr(cfg, "fast_step", True):
        return Plan(False, False, "fast_step: false")
    if cfg.objective != "sft":
        return Plan(False, False, f"objective {cfg.objective} has its own trainer")
    if on_gpu:
        return Plan(False, False, "on a GPU trl's Triton head already scores only the trained positions")
    if processes > 1 or cfg.distributed():
        return Plan(False, False, "several processes")
    if cfg.method in _OWN_FORWARD:
        return Plan(False, False, f"method {cfg.method} changes the model's forward")
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    if text is not model_config:
        return Plan(False, False, "a model with several parts")
    if any(getattr(text, f, None) not in (None, 1, 1.0) for f in _LOGIT_FIELDS):
        return Plan(False, False, "the model scales or caps its logits")
    sliding = getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True)
    layer_types = set(getattr(text, "layer_types", None) or [])
    if sliding or layer_types - {"full_attention"}:
        return Plan(True, False, "not every layer attends to the whole sequence")
    if getattr(text, "_attn_implementation", "sdpa") not in ("sdpa", ATTENTION, None):
        return Plan(True, False, f"attention {text._attn_implementation}")
    return Plan(True, True)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention over a padding-free row: each example (between `cu_seq_lens_q` boundaries) attends causally to
    itself alone, through transformers' own SDPA attention. Any other batch is a bug here: this implementation is
    set only on padding-free runs, and transformers builds no mask for it."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    for name in ("cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids", "seq_idx"):
        kwargs.pop(name, None)
    if bounds is None or attention_mask is not None or query.shape[0] != 1:
        raise RuntimeError("Bug: the per-example attention got a batch that is not padding-free.")
    edges = bounds.tolist()
    parts = [sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None,
                                    dropout=dropout, scaling=scaling, is_causal=True, **kwargs)[0]
             for s, e in zip(edges[:-1], edges[1:]) if e > s]
    return torch.cat(parts, dim=1), None


def hold_frozen_in_bf16(model) -> int:
    """Store the frozen weight of each LoRA layer's base linear in bf16; the number of layers changed.

    Under CPU autocast a frozen fp32 weight is cast to bf16 again at every call (autocast caches the casts
    of trained leaves only); rounded once here, the product is the very same (the same rounding of the same
    unchanging numbers) without the per-call cast, and the weights take half the memory. The adapters, the
    embeddings, the norms and the head stay as they are."""
    import torch
    from peft.tuners.lora import LoraLayer

    changed = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(module, LoraLayer) and isinstance(base, torch.nn.Linear) and \
                base.weight.dtype == torch.float32 and not base.weight.requires_grad:
            base.weight.data = base.weight.data.to(torch.bfloat16)
            if base.bias is not None and not base.bias.requires_grad:
                base.bias.data = base.bias.data.to(torch.bfloat16)
            changed += 1
    return changed


def dropout_mask(shape, p: float, device=None):
    """A boolean keep-mask of `shape`, each value kept with probability 1 - p (p rounded to 1/65536), drawn from
    16 random bits a value: the four 16-bit lanes of each 64-bit draw of torch's generator over the full
    int64 range. The same distribution as torch's dropout, whose `bernoulli_` on a CPU draws each value
    alone (1.2 ms for a 250 x 576 input against about 0.25 ms here, 2 threads); seeded, saved and resumed
    with the same generator."""
    import math

    import torch

    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= round(p * DROPOUT_LEVELS) - DROPOUT_LEVELS // 2


def faster_dropout(model) -> int:
    """Replace each LoRA layer's dropout (torch.nn.Dropout, p > 0) with one whose masks come from
    `dropout_mask`; the number of layers changed. Kept values are scaled by the inverse of their exact keep
    probability, as dropout scales them; in eval mode it passes its input through, as dropout does."""
    import torch
    from peft.tuners.lora import LoraLayer

    class BitsDropout(torch.nn.Module):
        def __init__(self, p: float):
            super().__init__()
            self.p = p
            self.scale = DROPOUT_LEVELS / (DROPOUT_LEVELS - round(p * DROPOUT_LEVELS))

        def forward(self, x):
            if not self.training:
                return x
            return x * dropout_mask(x.shape, self.p, x.device) * self.scale

        def extra_repr(self) -> str:
            return f"p={self.p}"

    changed = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name, drop in list(module.lora_dropout.items()):
                if type(drop) is torch.nn.Dropout and drop.p > 0:
                    module.lora_dropout[name] = BitsDropout(drop.p).train(drop.training)
                    changed += 1
    return changed


def _frozen_linear_function():
    """torch.autograd.Function for x @ W^T + b through oneDNN's linear, W and b frozen: the gradient flows to x
    alone (x's gradient is g @ W, oneDNN's linear against W^T). Made on first use (torch is heavy)."""
    import torch

    linear = torch.ops.mkldnn._linear_pointwise

    class FrozenLinear(torch.autograd.Function):
        """On rows (2-D): its output is no view, so a caller may add to it in place (AdaLoRA's layers do)."""

        @staticmethod
        def forward(ctx, rows, weight, bias):
            ctx.save_for_backward(weight)
            return linear(rows.contiguous(), weight, bias, "none", [], "")

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            if not ctx.needs_input_grad[0]:
                return None, None, None
            return linear(grad.contiguous(), weight.t(), None, "none", [], ""), None, None

    return FrozenLinear


def onednn_frozen_linears(model) -> int:
    """Give each frozen fp32 linear layer on a CPU (LoRA's base layers, a tied LM head) a forward through oneDNN's
    linear; the number of layers changed. torch's own CPU product for an fp32 linear (MKL's sgemm, which
    packs the weight again at every call) measured 15-30% slower here for the step's shapes (250 to 3000 rows
    against 576 x 576 to 576 x 1536 weights), in the forward and in the backward to the inputs alike. The
    same sums in another order: fp32 rounding apart, the same numbers. The weight is read at every call (no
    copy, nothing to go stale); trained weights, other dtypes and autocast keep torch's own product."""
    import types

    import torch

    function = _frozen_linear_function()
    plain = torch.nn.functional.linear

    def forward(self, x):
        w = self.weight
        if w.requires_grad or x.dtype != w.dtype or torch.is_autocast_enabled("cpu") or x.device.type != "cpu":
            return plain(x, w, self.bias)
        rows = function.apply(x.reshape(-1, x.shape[-1]), w, self.bias)
        return rows.view(*x.shape[:-1], w.shape[0])

    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32 and \
                module.weight.device.type == "cpu" and not module.weight.requires_grad and \
                (module.bias is None or not module.bias.requires_grad):
            module.forward = types.MethodType(forward, module)
            changed += 1
    return changed


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, varlen_attention)


def _head_loss(head, hidden, targets):
    """(summed cross-entropy, number of top-1 hits) of `head(hidden)` against `targets`."""
    import torch.nn.functional as F

    logits = head(hidden).float()
    loss = F.cross_entropy(logits, targets, reduction="sum")
    return loss, (logits.detach().argmax(-1) == targets).sum()


def trained_positions_loss(model, inputs: dict, num_items_in_batch=None):
    """(loss as trl divides it, top-1 hits, trained positions) of a causal LM (under peft or not) on `inputs`,
    projecting through the head only the positions whose next-token label is not -100."""
    import torch
    from torch.utils.checkpoint import checkpoint

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    kwargs["use_cache"] = False
    hidden = causal.base_model(**kwargs).last_hidden_state
    labels = inputs["labels"][:, 1:]
    mask = labels != -100
    hidden, targets = hidden[:, :-1][mask], labels[mask]
    head = causal.get_output_embeddings()
    chunk = max(1, MAX_LOGITS // head.weight.shape[0])
    if hidden.shape[0] <= chunk:
        loss_sum, hits = _head_loss(head, hidden, targets)
    else:
        pieces = [checkpoint(_head_loss, head, hidden[s:s + chunk], targets[s:s + chunk], use_reentrant=False)
                  for s in range(0, hidden.shape[0], chunk)]
        loss_sum, hits = sum(p[0] for p in pieces), sum(p[1] for p in pieces)
    trained = int(mask.sum())
    divide = torch.as_tensor(trained if num_items_in_batch is None else num_items_in_batch).clamp(min=1)
    return loss_sum / divide.to(loss_sum.device), hits, trained


def studio_sft_trainer():
    """trl's SFTTrainer with the studio's compute_loss (the class is made on first use: trl is heavy)."""
    from trl import SFTTrainer

    class StudioSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or self.compute_loss_func is not None or self.label_smoother is not None or \
                    self.args.loss_type != "nll" or self.aux_loss_enabled or "shift_labels" in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            loss, hits, trained = trained_positions_loss(model, inputs, num_items_in_batch)
            # trl's own logs: the token accuracy (its entropy is left out: a pass over the vocabulary the
            # studio does not show) and the tokens seen
            self._metrics[mode]["mean_token_accuracy"].append(hits.item() / trained if trained else 0.0)
            if mode == "train":
                seen = inputs["attention_mask"].sum().item() if "attention_mask" in inputs else \
                    inputs["position_ids"].size(1)
                self._total_train_tokens += seen
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return StudioSFTTrainer
