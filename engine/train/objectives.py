"""The preference objectives' trainers: trl's trainer class and config for each, the metrics they log.

    dpo    DPOTrainer, loss_type sigmoid or ipo; the reference is the model with its adapter switched off
    orpo   ORPOTrainer (trl.experimental): SFT loss plus an odds-ratio penalty; no reference pass
    kto    KTOTrainer: unpaired answers labelled good / bad; reference as for DPO
    simpo  CPOTrainer (trl.experimental) with loss_type simpo and cpo_alpha 0: no reference pass
With an adapter (LoRA, QLoRA, DoRA...) trl keeps one copy of the base weights: the reference forward
runs with the adapter disabled. A full fine-tune gets a frozen copy as its reference (DPO, KTO).
The trainer process (engine/train/trainer.py) uses it; the data each takes is engine/data/pairs.py.
"""

from __future__ import annotations

# trl's logged metric names -> the event fields that carry them
METRICS = {"rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected",
           "rewards/margins": "rewards_margin", "rewards/accuracies": "rewards_accuracy",
           "log_odds_ratio": "log_odds_ratio"}



TRAINERS = {"dpo": ("trl", "DPOTrainer"), "kto": ("trl", "KTOTrainer"),
            "orpo": ("trl.experimental.orpo", "ORPOTrainer"), "simpo": ("trl.experimental.cpo", "CPOTrainer")}


def trainer_class(objective: str):
    import importlib

    module, name = TRAINERS[objective]
    return getattr(importlib.import_module(module), name)


def trainer_class_and_args(cfg, common: dict):
    """trl's trainer class and its config for cfg.objective, from the arguments every trainer shares."""
    beta = cfg.preference_beta()
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        # prompts are already within prompt_limit (fit_prompt): what max_length cuts is the answers' end
        return DPOTrainer, DPOConfig(**common, beta=beta, loss_type=[cfg.loss_type], max_length=cfg.max_length)
    if cfg.objective == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig(**common, beta=beta, max_length=cfg.max_length)
    completion = cfg.max_length - cfg.prompt_limit
    if cfg.objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer, ORPOConfig(**common, beta=beta, max_length=cfg.max_length,
                                       max_completion_length=completion)
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOTrainer, CPOConfig(**common, beta=beta, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=cfg.simpo_gamma,
                                 max_length=cfg.max_length, max_completion_length=completion)


def count_tokens(trainer) -> None:
    """ORPO's and CPO's batches hold prompt_/chosen_/rejected_ ids, not the input_ids transformers counts
    for tokens/s; count their unpadded tokens as each batch is made, into the same counter."""
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        seen = sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask") and hasattr(v, "sum"))
        trainer.state.num_input_tokens_seen += seen
        return batch

    trainer.data_collator = counting


