"""Memory, time and cost of a fine-tuning run, estimated before anything runs.

    python -m engine.advise.estimate MODEL [--method lora] [--batch 4] [--seq 512] [--gpus 1] [--zero 0]

A model's shape comes from its config (a local folder, or a hub id already in the cache)
or from a built-in table of common models; from the shape come the parameter count, the
parameters each method trains, and memory per device split into weights, gradients,
optimizer states, activations and a fixed runtime overhead. Formulas:

- weights: parameters x bytes per parameter of the precision; 4-bit nf4 with double
  quantisation stores about 4.13 bits per quantised weight, 8-bit 1 byte plus scales;
  ZeRO-3 splits them across the processes (offload all: kept in CPU memory).
- gradients: trained parameters x 4 bytes (adapters and master weights train in fp32);
  ZeRO-2 and 3 split them.
- optimizer: AdamW keeps two fp32 moments, 8 bytes per trained parameter (plus a 4-byte
  fp32 master copy when the model computes in 16-bit and trains all weights); ZeRO-1, 2
  and 3 split them; offload moves them to CPU memory.
- activations: per token and layer, the tensors autograd keeps (layer inputs, attention
  projections and output, the MLP's gate, up, product and down input), about
  5 h + 2 kv + 5 i numbers, plus logits (vocabulary x 3 copies: logits, log-softmax,
  gradient) per token; gradient checkpointing keeps only each layer's input and one
  layer's full set. LoRA-like adapters add each adapted layer's dropout output and mask
  (6 h + i per token and layer); DoRA adds W + BA of every adapted layer (the weight norm).
- overhead: the framework and runtime (CUDA context, allocator slack; on CPU the Python
  process with torch, transformers and trl loaded), measured.

The error against measured peaks is printed by `studio advise --check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import StudioError
from engine.models import ModelShape, shape_of

GB = 1024**3

# Memory a person can train on, GiB.
GPUS = {
    "NVIDIA T4 (16 GB)": 16, "NVIDIA L4 (24 GB)": 24, "NVIDIA RTX 4090 (24 GB)": 24,
    "NVIDIA A10G (24 GB)": 24, "NVIDIA A100 40GB": 40, "NVIDIA RTX A6000 (48 GB)": 48,
    "NVIDIA L40S (48 GB)": 48, "NVIDIA A100 80GB": 80, "NVIDIA H100 80GB": 80, "NVIDIA H200 (141 GB)": 141,
}
# Runtime overhead: a CUDA context and allocator slack; on CPU, measured for the training process
# with torch, transformers, peft and trl imported (see `studio advise --check`).
OVERHEAD_GPU = 0.6 * GB
OVERHEAD_CPU = 0.57 * GB  # peak RSS of a training process on the tiny test model (weights < 5 MB)
LORA_FAMILY = ("lora", "rslora", "dora", "qlora", "lora-8bit", "adalora", "loha", "lokr")


class EstimateError(StudioError, ValueError):
    """A model whose shape cannot be found, said in one sentence."""


def trainable_params(shape: ModelShape, method: str, rank: int = 16, virtual_tokens: int = 16,
                     freeze_last_n: int = 2, oft_block_size: int = 8) -> int:
    """Parameters the method trains, for adapters on all linear layers (the studio's default)."""
    lin = shape.linears()
    if method in ("full",):
        return shape.params
    if method == "freeze":
        return min(freeze_last_n, shape.layers) * shape.layer_params + shape.hidden
    if method in ("lora", "rslora", "qlora", "lora-8bit", "adalora"):
        per = sum(rank * (a + b) for _, a, b in lin) + (sum(rank for _ in lin) if method == "adalora" else 0)
    elif method == "dora":
        per = sum(rank * (a + b) + b for _, a, b in lin)  # plus one magnitude per output
    elif method == "loha":
        per = sum(2 * rank * (a + b) for _, a, b in lin)
    elif method == "lokr":
        per = sum(rank * (math.isqrt(a) + math.isqrt(b)) * 2 for _, a, b in lin)
    elif method == "vera":
        per = sum(max(rank, 64) + b for _, a, b in lin)
    elif method == "oft":
        per = sum(b // oft_block_size * oft_block_size * (oft_block_size - 1) // 2 for _, a, b in lin)
    elif method == "ia3":
        per = 2 * shape.kv_dim + shape.intermediate
    elif method in ("prompt-tuning", "prefix-tuning"):
        return virtual_tokens * shape.hidden * (1 if method == "prompt-tuning" else 2 * shape.layers)
    else:
        raise EstimateError(f"method {method}: no estimate for it.")
    return per * shape.layers


@dataclass
class Estimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float
    trainable: int
    params: int
    cpu_offloaded: float = 0.0  # bytes moved to CPU memory by ZeRO offload

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def parts_gb(self) -> dict[str, float]:
        return {k: round(getattr(self, k) / GB, 3)
                for k in ("weights", "gradients", "optimizer", "activations", "overhead")}


# Preference objectives against SFT on the same examples: (sequences the policy trains on per example,
# training FLOPs per token relative to SFT's). A pair is two sequences (the prompt with each answer);
# DPO and KTO also run a reference forward (2N per token, no activations kept); KTO adds a KL forward of
# mismatched prompt/answer pairs under the policy and the reference.
# GRPO samples its answers (decoding one token at a time, memory-bound: FLOPs do not predict it) and then trains
# on prompt + answer like SFT; its factor is measured: a step's time over its training part, on the default model
# and the bundled GRPO sample on a 2-core CPU (the README's GRPO section, `generate_share` in the run's events).
GRPO_STEP_OVER_TRAINING = 1.55  # 35% generating with the executor sampling (2026-12-06); 1.9 with generate
OBJECTIVE_COST = {"sft": (1, 1.0), "dpo": (2, 3.0), "orpo": (2, 2.0), "simpo": (2, 2.0), "kto": (1, 2.5),
                  "grpo": (1, GRPO_STEP_OVER_TRAINING)}
REFERENCE = ("dpo", "kto")
OBJECTIVE_NOTES = {
    "dpo": "each pair trains two sequences (the prompt with each answer) and runs a reference forward over both "
           "(the base with the adapter off: no second copy of the weights with an adapter): about 3x the "
           "compute of SFT per example, activations for two sequences.",
    "orpo": "each pair trains two sequences, with no reference pass: about 2x SFT's compute; it needs no "
            "separate SFT stage.",
    "simpo": "each pair trains two sequences, with no reference pass: about 2x SFT's compute; it needs no "
             "separate SFT stage.",
    "kto": "one sequence per labelled answer, plus a reference forward and a KL estimate on mismatched pairs: "
           "about 2.5x SFT's compute.",
    "grpo": f"each step first samples its answers (num_generations per prompt, decoded a token at a time), then "
            f"trains on prompt + answer like SFT: counted as SFT on batch_size x max_length tokens, times "
            f"{GRPO_STEP_OVER_TRAINING:g} for the sampling (measured: generation was about "
            f"{1 - 1 / GRPO_STEP_OVER_TRAINING:.0%} of a step on the default model on a 2-core CPU); beta > 0 adds "
            "a reference forward.",
}


def estimate_memory(shape: ModelShape, method: str = "lora", precision: str = "bf16", rank: int = 16,
                    batch_size: int = 4, seq_len: int = 512, gradient_checkpointing: bool = False,
                    gpus: int = 1, zero_stage: int = 0, offload: str = "none", device: str = "gpu",
                    objective: str = "sft", **method_kw) -> Estimate:
    """Peak memory per device of one training step. A preference pair trains two sequences (activations
    and logits double); DPO and KTO add the reference's logits, and after a full fine-tune a frozen copy
    of the weights as the reference (with an adapter the reference is the base, adapter off: no copy)."""
    n = max(1, gpus)
    act_bytes = 4 if precision == "fp32" else 2
    weight_bytes = {"fp32": 4, "bf16": 2, "fp16": 2}[precision]
    trainable = trainable_params(shape, method, rank=rank, **method_kw)
    linear_params = shape.layers * sum(a * b for _, a, b in shape.linears())
    other_params = shape.params - linear_params
    if method == "qlora":
        weights = linear_params * 4.127 / 8 + other_params * weight_bytes
    elif method == "lora-8bit":
        weights = linear_params * (1 + 4 / 64) + other_params * weight_bytes
    else:
        weights = shape.params * weight_bytes
    full_like = method in ("full", "freeze")
    adapter_bytes = 0 if full_like else trainable * 4  # adapters are kept in fp32
    weights += adapter_bytes
    # Trained weights of a 16-bit model keep an fp32 master copy in the optimizer (mixed precision).
    master = trainable * 4 if full_like and weight_bytes == 2 else 0
    gradients = trainable * 4
    optimizer = trainable * 8 + master
    offloaded = 0.0
    if zero_stage >= 1:
        optimizer /= n
    if zero_stage >= 2:
        gradients /= n
    if zero_stage >= 3:
        weights = weights / n + shape.layer_params * weight_bytes  # one layer gathered at a time
    if offload in ("optimizer", "all") and zero_stage:
        offloaded += optimizer
        optimizer = 0.0
    if offload == "all" and zero_stage == 3:
        offloaded += weights
        weights = shape.layer_params * weight_bytes
    sequences = OBJECTIVE_COST[objective][0]
    tokens = batch_size * seq_len * sequences
    if objective in REFERENCE and full_like:
        weights += shape.params * weight_bytes / (n if zero_stage >= 3 else 1)
    per_layer_token = 5 * shape.hidden + 2 * shape.kv_dim + 5 * shape.intermediate
    if gradient_checkpointing:
        layer_acts = tokens * (shape.layers * shape.hidden + per_layer_token) * act_bytes
    else:
        layer_acts = tokens * shape.layers * per_layer_token * act_bytes
    if method in LORA_FAMILY or method == "vera":
        # Each adapted layer keeps its own dropout output (the A matrix's input) and mask.
        # With gradient checkpointing only the layer being recomputed holds them.
        adapter_inputs = 6 * shape.hidden + shape.intermediate
        kept_layers = 1 if gradient_checkpointing else shape.layers
        layer_acts += tokens * kept_layers * adapter_inputs * (act_bytes + 1)
    if method == "dora":
        # DoRA materialises W + BA of every adapted layer for the weight norm and keeps it for backward.
        layer_acts += linear_params * weight_bytes / (shape.layers if gradient_checkpointing else 1)
    logits = tokens * shape.vocab * 4 * 3  # logits are upcast to fp32 for the loss
    if objective in REFERENCE:
        logits += tokens * shape.vocab * 4  # the reference's logits (no graph kept)
    if method in ("prompt-tuning", "prefix-tuning"):
        layer_acts *= (seq_len + method_kw.get("virtual_tokens", 16)) / seq_len
    overhead = OVERHEAD_CPU if device == "cpu" else OVERHEAD_GPU
    return Estimate(weights, gradients, optimizer, layer_acts + logits, overhead, trainable, shape.params, offloaded)


def gpus_needed(shape: ModelShape, gpu_gb: float, method: str, zero_stage: int = 3, **kw) -> int:
    """The fewest GPUs of `gpu_gb` on which the run fits (ZeRO splitting across them), or 0 if none up to 512."""
    for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40, 48, 64, 96, 128, 256, 512):
        if estimate_memory(shape, method, gpus=n, zero_stage=zero_stage if n > 1 else 0, **kw).total <= gpu_gb * GB:
            return n
    return 0


# Share of the matrix-product peak that LoRA training reaches on SmolLM2-135M on a 2-core CPU with the
# studio's step (engine/train/fast_step.py; measured by `studio bench`, 2026-12-06: 47-52% on instructions
# with the loss on the answers, 42-48% on the sample; trl's own step reached 12-31%), rounded down: an
# estimate of the time to budget for, on CPUs that reach less.
TRAINING_UTILISATION = 0.4


def flops_per_token(params: int, method: str, objective: str = "sft") -> float:
    """Training FLOPs per token of the data: 6N when every weight trains, 4N with adapters (no weight
    gradients for the frozen weights); N = the model's parameters; times the objective's cost (a pair
    reads its prompt twice, DPO and KTO add a reference forward). `studio bench` and the probe count MFU
    with it."""
    return (6 if method in ("full", "freeze") else 4) * params * OBJECTIVE_COST[objective][1]


def throughput_from_peak(shape: ModelShape, method: str, peak_gflops: float,
                         utilisation: float = TRAINING_UTILISATION, objective: str = "sft") -> float:
    """Tokens per second a run would reach at `utilisation` of a measured matrix-product peak.

    Forward and backward cost about 6 FLOPs per parameter per token when every weight trains, 4 with
    adapters (the frozen weights get no weight gradients): the same count `studio bench` uses for MFU.
    """
    return peak_gflops * 1e9 * utilisation / flops_per_token(shape.params, method, objective)


def estimate_time(tokens_per_epoch: int, epochs: float, tokens_per_s: float, gpus: int = 1,
                  price_per_gpu_hour: float = 0.0) -> dict:
    """Hours and money for `epochs` passes at a throughput (per process) over `gpus` processes."""
    seconds = tokens_per_epoch * epochs / max(tokens_per_s * gpus, 1e-9)
    hours = seconds / 3600
    return {"seconds": round(seconds, 1), "hours": round(hours, 3),
            "gpu_hours": round(hours * gpus, 3), "cost": round(hours * gpus * price_per_gpu_hour, 2)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m engine.advise.estimate", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--method", default="lora")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--zero", type=int, default=0)
    p.add_argument("--offload", default="none")
    p.add_argument("--checkpointing", action="store_true")
    a = p.parse_args(argv)
    shape = shape_of(a.model)
    e = estimate_memory(shape, a.method, a.precision, a.rank, a.batch, a.seq, a.checkpointing, a.gpus, a.zero,
                        a.offload)
    print(f"{shape.name}: {shape.params / 1e9:.2f} B parameters, {e.trainable:,} trained by {a.method}")
    for k, v in e.parts_gb().items():
        print(f"  {k:<12}{v:8.2f} GiB")
    print(f"  {'total':<12}{e.total / GB:8.2f} GiB per device")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
