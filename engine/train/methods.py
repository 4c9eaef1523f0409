"""Fine-tuning methods: small pure functions from a RunConfig to peft / bitsandbytes settings.

One `method` field of RunConfig picks the method; these functions say what it means:
`peft_config` (the adapter, or None for full fine-tuning), `quantization_config` (4-bit
or 8-bit loading), and `model_kwargs` (the dtype the base loads in). They read no machine: what this machine can run
(precision, bitsandbytes, DeepSpeed) is checked by engine/train/preflight.py.

    python -m engine.train.methods            # lists the methods
"""

from __future__ import annotations

METHODS = {
    "lora": "LoRA: low-rank updates on the chosen layers",
    "rslora": "rank-stabilised LoRA (alpha / sqrt(r) scaling)",
    "dora": "DoRA: weight-decomposed LoRA (magnitude and direction)",
    "qlora": "QLoRA: LoRA on a 4-bit nf4 base (double quantisation)",
    "lora-8bit": "LoRA on an 8-bit base",
    "ia3": "IA3: learned rescaling vectors, the fewest parameters",
    "prompt-tuning": "prompt tuning: trained virtual tokens in front of the input",
    "prefix-tuning": "prefix tuning: refused for now, it does not train with current transformers",
    "loha": "LoHa: low-rank Hadamard product",
    "lokr": "LoKr: low-rank Kronecker product",
    "adalora": "AdaLoRA: LoRA whose ranks adapt during training",
    "vera": "VeRA: shared frozen random matrices, trained scaling vectors",
    "oft": "OFT: orthogonal fine-tuning",
    "full": "full fine-tuning: every weight trains",
    "freeze": "full fine-tuning of the last N layers only",
}
QUANTIZED = ("qlora", "lora-8bit")
FULL_WEIGHTS = ("full", "freeze")  # the model's own weights train (and so keep fp32 master copies)
# Starting learning rates for a ~100M-1B model and a small dataset; few-parameter methods need more.
SUGGESTED_LR = {"full": 5e-5, "freeze": 1e-4, "ia3": 5e-2, "prompt-tuning": 3e-2, "vera": 1e-2}
# Preference objectives start from a fifth of the supervised rate: their losses push the policy away from
# the reference on every step, and an SFT rate overshoots (trl's own DPO default is 1e-6 for full weights).
# For LoRA that is 2e-4, the rate the README's preference table was measured at
# (`python -m studio.preference_bench`: DPO, KTO and SimPO 92% -> 100% on the held-back pairs).
PREFERENCE_LR_DIVISOR = 5


def suggested_learning_rate(method: str, objective: str = "sft") -> float:
    """A starting learning rate for `method` trained with `objective` (the Train form fills it in)."""
    rate = SUGGESTED_LR.get(method, 1e-3)
    return rate if objective in ("sft", "", None) else rate / PREFERENCE_LR_DIVISOR


def _targets(cfg):
    return "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)


def peft_config(cfg, total_steps: int = 0):
    """The peft config for `cfg.method`, or None when the method trains the model's own weights."""
    import peft

    m = cfg.method
    lora = dict(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=_targets(cfg), task_type="CAUSAL_LM")
    if m in ("lora", "qlora", "lora-8bit"):
        return peft.LoraConfig(**lora)
    if m == "rslora":
        return peft.LoraConfig(**lora, use_rslora=True)
    if m == "dora":
        return peft.LoraConfig(**lora, use_dora=True)
    if m == "adalora":
        steps = max(total_steps, 10)
        return peft.AdaLoraConfig(init_r=cfg.lora_rank, target_r=max(1, cfg.lora_rank // 2),
                                  lora_alpha=cfg.lora_alpha, target_modules=_targets(cfg), total_step=steps,
                                  tinit=max(1, steps // 10), tfinal=max(1, steps // 5), task_type="CAUSAL_LM")
    if m == "ia3":
        return peft.IA3Config(task_type="CAUSAL_LM")
    if m == "loha":
        return peft.LoHaConfig(r=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=_targets(cfg),
                               task_type="CAUSAL_LM")
    if m == "lokr":
        return peft.LoKrConfig(r=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=_targets(cfg),
                               task_type="CAUSAL_LM")
    if m == "vera":
        return peft.VeraConfig(r=max(cfg.lora_rank, 64), target_modules=_targets(cfg), task_type="CAUSAL_LM")
    if m == "oft":
        return peft.OFTConfig(r=0, oft_block_size=cfg.oft_block_size, target_modules=_targets(cfg),
                              task_type="CAUSAL_LM")
    if m == "prompt-tuning":
        return peft.PromptTuningConfig(num_virtual_tokens=cfg.virtual_tokens, task_type="CAUSAL_LM")
    if m == "prefix-tuning":
        return peft.PrefixTuningConfig(num_virtual_tokens=cfg.virtual_tokens, task_type="CAUSAL_LM")
    return None  # full, freeze


def quantization_config(cfg):
    """bitsandbytes loading for QLoRA (4-bit nf4, double quantisation) and 8-bit LoRA; else None."""
    if cfg.method not in QUANTIZED:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.method == "lora-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, cfg.compute_dtype))


def model_kwargs(cfg, precision: str, cuda: bool) -> dict:
    """How to load the base model for a run in `precision` (engine/train/preflight.py's): in bf16 for adapters
    trained in bf16 on a CPU (the adapters and the optimizer stay fp32), which halves the memory the frozen
    weights take and keeps products in bf16."""
    import torch

    kwargs = {}
    if precision == "bf16" and not cuda and cfg.method not in FULL_WEIGHTS + QUANTIZED:
        kwargs["dtype"] = torch.bfloat16
    return kwargs


def freeze_all_but_last(model, n: int) -> int:
    """Train only the last `n` decoder layers (and the final norm); returns trainable parameters."""
    layers = getattr(getattr(model, "model", model), "layers", None)
    if layers is None:
        raise ValueError("method freeze: this model has no decoder layer list to freeze.")
    for p in model.parameters():
        p.requires_grad = False
    for layer in list(layers)[-n:]:
        for p in layer.parameters():
            p.requires_grad = True
    norm = getattr(getattr(model, "model", model), "norm", None)
    if norm is not None:
        for p in norm.parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adalora_callback():
    """AdaLoRA reallocates ranks after each optimizer step, before gradients are cleared."""
    from transformers import TrainerCallback

    class AdaLoraRanks(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kw):
            model.base_model.update_and_allocate(state.global_step)

    return AdaLoraRanks()


if __name__ == "__main__":
    for name, text in METHODS.items():
        print(f"{name:<15}{text}")
