"""Memory, time and cost of a fine-tuning run, estimated before anything runs.

    python -m engine.estimate MODEL [--method lora] [--batch 4] [--seq 512] [--gpus 1] [--zero 0]

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

GB = 1024**3

# name: layers, hidden, intermediate, heads, kv heads, vocabulary, tied embeddings
KNOWN_MODELS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": (30, 576, 1536, 9, 3, 49152, True),
    "HuggingFaceTB/SmolLM2-360M-Instruct": (32, 960, 2560, 15, 5, 49152, True),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": (24, 2048, 8192, 32, 32, 49152, True),
    "Qwen/Qwen2.5-0.5B-Instruct": (24, 896, 4864, 14, 2, 151936, True),
    "Qwen/Qwen2.5-1.5B-Instruct": (28, 1536, 8960, 12, 2, 151936, True),
    "Qwen/Qwen2.5-3B-Instruct": (36, 2048, 11008, 16, 2, 151936, True),
    "Qwen/Qwen2.5-7B-Instruct": (28, 3584, 18944, 28, 4, 152064, False),
    "meta-llama/Llama-3.2-1B-Instruct": (16, 2048, 8192, 32, 8, 128256, True),
    "meta-llama/Llama-3.2-3B-Instruct": (28, 3072, 8192, 24, 8, 128256, True),
    "meta-llama/Llama-3.1-8B-Instruct": (32, 4096, 14336, 32, 8, 128256, False),
    "meta-llama/Llama-3.1-70B-Instruct": (80, 8192, 28672, 64, 8, 128256, False),
    "microsoft/Phi-3-mini-4k-instruct": (32, 3072, 8192, 32, 32, 32064, False),
    "microsoft/Phi-3-small-8k-instruct": (32, 4096, 14336, 32, 8, 100352, False),
    "microsoft/Phi-3-medium-4k-instruct": (40, 5120, 17920, 40, 10, 32064, False),
    "mistralai/Mistral-7B-Instruct-v0.3": (32, 4096, 14336, 32, 8, 32768, False),
}

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


@dataclass
class ModelShape:
    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of each linear layer in one decoder layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return [("q_proj", h, h), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", h, h),
                ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]

    @property
    def layer_params(self) -> int:
        return sum(a * b for _, a, b in self.linears()) + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden


def shape_of(model: str) -> ModelShape:
    """The shape from the model's config when it can be read offline, else from the built-in table."""
    try:
        from transformers import AutoConfig

        from engine.models import resolve_model

        c = AutoConfig.from_pretrained(resolve_model(model))
        heads = c.num_attention_heads
        return ModelShape(model, c.num_hidden_layers, c.hidden_size, c.intermediate_size, heads,
                          getattr(c, "num_key_value_heads", None) or heads, c.vocab_size,
                          bool(getattr(c, "tie_word_embeddings", False)))
    except Exception:  # not cached, not reachable, or not a decoder config: try the table
        pass
    for name, row in KNOWN_MODELS.items():
        if model in (name, name.split("/")[1]) or model.lower() == name.lower():
            return ModelShape(name, *row)
    raise EstimateError(f"{model}: its config cannot be read here and it is not in the built-in table "
                        f"({', '.join(n.split('/')[1] for n in KNOWN_MODELS)}).")


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
OBJECTIVE_COST = {"sft": (1, 1.0), "dpo": (2, 3.0), "orpo": (2, 2.0), "simpo": (2, 2.0), "kto": (1, 2.5)}
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


# Share of the matrix-product peak that LoRA training reaches on SmolLM2-135M on a 2-core CPU (measured by
# `studio bench`: 25-35%; the LM head and the loss over a 49k vocabulary take much of the rest).
TRAINING_UTILISATION = 0.3


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


CPU = "This machine (CPU, its RAM)"


def ram_gb() -> float:
    """This machine's memory, for a plan on its CPU."""
    import psutil

    return psutil.virtual_memory().total / GB


@dataclass
class Plan:
    """What a run would need and take on a device: memory per device against its capacity, the GPUs it
    needs with ZeRO-3 when it does not fit, and the time and cost from a throughput measured here."""
    shape: ModelShape
    method: str
    device: str
    gpus: int
    memory: "Estimate"
    capacity_gb: float
    gpus_needed: int | None = None  # asked only when it does not fit on a GPU; 0: not even over 512
    tokens: int | None = None
    epochs: float = 1.0
    speed: float | None = None  # tokens per second per process
    speed_source: str = ""
    price: float = 0.0
    objective: str = "sft"

    @property
    def total_gb(self) -> float:
        return self.memory.total / GB

    @property
    def fits(self) -> bool:
        return self.total_gb <= self.capacity_gb

    @property
    def time(self) -> dict | None:
        if not (self.tokens and self.speed):
            return None
        return estimate_time(int(self.tokens), self.epochs, self.speed, self.gpus, self.price)

    def bars(self) -> list[dict]:
        on = "CPU" if self.device == CPU else self.device.split(" (")[0]
        rows = [{"config": f"{self.method}, {self.gpus} x {on}", "part": part, "GiB": gb}
                for part, gb in self.memory.parts_gb().items()]
        return rows + [{"config": "available", "part": "capacity", "GiB": round(self.capacity_gb, 1)}]

    def sentences(self) -> list[str]:
        e, shape = self.memory, self.shape
        moved = f" ({e.cpu_offloaded / GB:.2f} GiB moved to CPU memory by offload)" if e.cpu_offloaded else ""
        out = [f"**{shape.name}**: {shape.params / 1e6:,.1f} M parameters; `{self.method}` trains {e.trainable:,} "
               f"({e.trainable / shape.params:.2%}).",
               *([f"Objective `{self.objective}`: " + OBJECTIVE_NOTES[self.objective]] if self.objective != "sft"
                 else []),
               f"Peak per device: **{self.total_gb:.2f} GiB**, which {'fits' if self.fits else 'does **not** fit'} "
               f"in {self.capacity_gb:.0f} GiB{moved}."]
        if self.gpus_needed is not None:
            out.append(f"With ZeRO-3 it needs {self.gpus_needed} of these GPUs." if self.gpus_needed
                       else "Too large even over 512 GPUs.")
        t = self.time
        if t:
            out.append(f"Time: {self.tokens:,.0f} tokens x {self.epochs:g} epochs at {self.speed:.0f} tokens/s "
                       f"({self.speed_source}) = **{t['hours'] * 60:.1f} min**; {t['gpu_hours']:.2f} GPU-hours = "
                       f"**{t['cost']:.2f}** at {self.price:.2f} per GPU-hour.")
        elif self.tokens:
            out.append(f"Time: {self.tokens:,.0f} tokens per epoch; run the probe (or one training) on this model "
                       "to measure its tokens per second.")
        return out


def plan(model: str, method: str = "lora", device: str = CPU, gpus: int = 1, zero_stage: int = 0,
         offload: str = "none", batch_size: int = 4, seq_len: int = 512, checkpointing: bool = False,
         rank: int = 16, epochs: float = 1.0, price: float = 0.0, tokens: int | None = None,
         objective: str = "sft") -> Plan:
    """The plan of a run of `method` on `model` over `device` (CPU, or a name of GPUS), with `tokens` per epoch.

    On this machine's CPU the memory is in the precision `auto` trains in, and the speed is the newest
    run's measured tokens/s on this model, else the matrix-product peak measured here at the share of it
    that training reaches (engine/capability.py).
    """
    from engine.capability import auto_precision, capability
    from engine.runs import measured_throughput

    shape = shape_of(model)
    on_cpu = device == CPU
    n = 1 if on_cpu else int(gpus)
    precision = auto_precision(model)[0] if on_cpu else "bf16"
    memory = estimate_memory(shape, method, precision, int(rank), int(batch_size), int(seq_len), bool(checkpointing),
                             n, int(zero_stage) if n > 1 or offload != "none" else 0, offload,
                             "cpu" if on_cpu else "gpu", objective=objective)
    result = Plan(shape, method, device, n, memory, ram_gb() if on_cpu else GPUS[device], tokens=tokens,
                  epochs=float(epochs), price=float(price or 0), objective=objective)
    if not result.fits and not on_cpu:
        result.gpus_needed = gpus_needed(shape, result.capacity_gb, method, zero_stage=3, rank=int(rank),
                                         batch_size=int(batch_size), seq_len=int(seq_len),
                                         gradient_checkpointing=bool(checkpointing))
    result.speed, result.speed_source = measured_throughput(model), "measured here on this model"
    if result.speed and objective != "sft":  # measured on SFT runs: the objective's extra work slows it
        result.speed /= OBJECTIVE_COST[objective][1]
        result.speed_source += f", divided by {OBJECTIVE_COST[objective][1]:g} for {objective}'s extra passes"
    if not result.speed and on_cpu:
        peak = capability(model).peak(precision)
        result.speed = throughput_from_peak(shape, method, peak, objective=objective)
        result.speed_source = (f"estimated: {peak:.0f} GFLOP/s measured here in {precision} at "
                               f"{TRAINING_UTILISATION:.0%} utilisation; one training run measures it")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m engine.estimate", description=__doc__.splitlines()[0])
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
