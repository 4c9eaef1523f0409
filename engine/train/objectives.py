"""The preference and GRPO objectives' trainers: trl's trainer class and config for each, the metrics they log.

    dpo    DPOTrainer, loss_type sigmoid or ipo; the reference is the model with its adapter switched off
    orpo   ORPOTrainer (trl.experimental): SFT loss plus an odds-ratio penalty; no reference pass
    kto    KTOTrainer: unpaired answers labelled good / bad; reference as for DPO
    simpo  CPOTrainer (trl.experimental) with loss_type simpo and cpo_alpha 0: no reference pass
With an adapter (LoRA, QLoRA, DoRA...) trl keeps one copy of the base weights: the reference forward
runs with the adapter disabled. A full fine-tune gets a frozen copy as its reference (DPO, KTO).
    grpo   GRPOTrainer: num_generations completions sampled per prompt, scored by the reward functions
           (engine/train/rewards.py); each completion's advantage is its reward against its group's mean. With
           beta 0 (the default) there is no KL term and no reference pass.
The trainer process (engine/train/trainer.py) uses it; the data each takes is engine/data/pairs.py and, for
grpo, engine/data/prompts.py. `Rollouts` keeps what GRPO's last rollout made (completions, each function's
rewards) for the Train tab's table of samples, and the seconds spent generating, for the step's split.
"""

from __future__ import annotations

import time

from engine.train.rewards import Reward, text_of

# trl's logged metric names -> the event fields that carry them
METRICS = {"rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected",
           "rewards/margins": "rewards_margin", "rewards/accuracies": "rewards_accuracy",
           "log_odds_ratio": "log_odds_ratio",
           # GRPO
           "reward": "reward", "reward_std": "reward_std", "kl": "kl", "completions/mean_length": "completion_length",
           "completions/clipped_ratio": "clipped_ratio"}



TRAINERS = {"dpo": ("trl", "DPOTrainer"), "kto": ("trl", "KTOTrainer"), "grpo": ("trl", "GRPOTrainer"),
            "orpo": ("trl.experimental.orpo", "ORPOTrainer"), "simpo": ("trl.experimental.cpo", "CPOTrainer")}


def trainer_class(objective: str):
    import importlib

    module, name = TRAINERS[objective]
    return getattr(importlib.import_module(module), name)


def trainer_class_and_args(cfg, common: dict):
    """trl's trainer class and its config for cfg.objective, from the arguments every trainer shares."""
    if cfg.objective == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOTrainer, GRPOConfig(**common, **vllm_rollouts(), beta=cfg.beta, num_generations=cfg.num_generations,
                                       max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                                       # an evaluation batch holds whole groups of answers, as a training one
                                       per_device_eval_batch_size=cfg.batch_size,
                                       loss_type=cfg.grpo_loss, reward_weights=[float(r.get("weight", 1.0))
                                                                                for r in cfg.rewards],
                                       # completions are sampled from the model as it trains; dropout off
                                       # keeps sampling and scoring the same model
                                       disable_dropout=True)
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




def vllm_rollouts() -> dict:
    """GRPO's sampling through vLLM, in the training process (trl's colocate mode), where a GPU and vLLM are
    both here; elsewhere (a CPU) trl's own transformers generate. Not exercised by the CPU tests."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return {"use_vllm": True, "vllm_mode": "colocate"}
    return {}


def reward_metrics(logs: dict, prefix: str = "") -> dict:
    """GRPO's reward of each function, {name: [mean, std]}, from trl's rewards/NAME/mean and /std."""
    out = {}
    for key, value in logs.items():
        if key.startswith(prefix + "rewards/") and key.endswith("/mean") and isinstance(value, (int, float)):
            name = key[len(prefix + "rewards/"):-len("/mean")]
            std = logs.get(f"{prefix}rewards/{name}/std")
            out[name] = [float(value), float(std) if isinstance(std, (int, float)) else None]
    return out


class Rollouts:
    """What GRPO's rollouts made: the last batch's completions with each function's reward, and the seconds spent
    generating. The reward functions trl is given are `wrap`s of ours, which record as they score; the model's
    `generate` is timed by `time_generation`."""

    def __init__(self, rewards: list[Reward]):
        self.rewards = rewards
        self.batch: dict = {}
        self.generate_s = 0.0
        self.sampled_by = "transformers' generate"  # or the studio's executor (a rollout_func: `timed`)

    def wrap(self, reward: Reward):
        def scored(prompts=None, completions=(), **columns):
            values = reward(prompts, completions, **columns)
            if reward is self.rewards[0]:
                self.batch = {"prompts": list(prompts or []), "completions": [text_of(c) for c in completions],
                              "answers": columns.get("answer"), "rewards": {}}
            self.batch.setdefault("rewards", {})[reward.name] = values
            return values

        scored.__name__ = reward.name  # trl logs each function under this name
        return scored

    def time_generation(self, model) -> None:
        generate = model.generate

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return generate(*args, **kwargs)
            finally:
                self.generate_s += time.perf_counter() - start

        model.generate = timed

    def timed(self, sample):
        """trl's rollout_func `sample`, its seconds counted as generating."""
        def rollout(prompts, trainer):
            start = time.perf_counter()
            try:
                return sample(prompts, trainer)
            finally:
                self.generate_s += time.perf_counter() - start

        return rollout

    def samples(self, limit: int = 4) -> list[dict]:
        """Up to `limit` rows of the last batch, spread evenly over it (one prompt's answers side by side when a
        step holds one prompt; several prompts' when it holds more), with their rewards."""
        b = self.batch
        rows = []
        count = len(b.get("completions", []))
        for i in range(0, count, max(1, count // limit)):
            prompt = b["prompts"][i] if i < len(b["prompts"]) else ""
            said = {name: values[i] for name, values in b["rewards"].items() if i < len(values)}
            total = sum(r.weight * (said.get(r.name) or 0.0) for r in self.rewards)
            rows.append({"prompt": text_of(prompt)[-300:], "completion": b["completions"][i][:600],
                         "answer": (b["answers"] or [None] * (i + 1))[i], "rewards": said, "total": round(total, 4)})
            if len(rows) == limit:
                break
        return rows
