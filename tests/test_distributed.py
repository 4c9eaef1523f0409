"""DeepSpeed ZeRO for real: two training processes on this CPU machine (gloo), as on a GPU cluster."""

import json
import time

import pytest
import torch

from conftest import SAMPLE, train as _train, training
from engine.train.config import ConfigError, RunConfig
from engine.train.distributed import deepspeed_config, launch_command
from engine.train.preflight import refusal
from engine.train.preflight import create_run
from engine.train.runs import stop

pytest.importorskip("deepspeed")


def _cfg(tiny_model, **kw):
    base = dict(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=20, learning_rate=1e-2,
                batch_size=8, max_length=96, save_steps=10, num_processes=2, warmup_ratio=0.0)
    return RunConfig(**{**base, **kw})


def _mean(xs):
    return sum(xs) / len(xs)


def test_zero2_lora_with_optimizer_offload_trains_on_two_processes(tiny_model, runs_dir):
    from engine.infer.chat import ChatModel

    run = _train(_cfg(tiny_model, zero_stage=2, offload="optimizer"))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    ds = json.loads((run.dir / "ds_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    started = [e for e in run.events.read() if e["event"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2  # two ranks; rank 0 speaks for both
    losses = [r.loss for r in run.logged()]
    assert len(losses) == 20 and _mean(losses[-5:]) < 0.9 * _mean(losses[:5]), losses
    chat = ChatModel(tiny_model, run.adapter)
    assert chat.generate([{"role": "user", "content": "Hello"}], max_new_tokens=4).answer_tokens > 0


def test_zero3_full_fine_tuning_gathers_the_sharded_weights_into_one_model(tiny_model, runs_dir):
    from transformers import AutoModelForCausalLM

    run = _train(_cfg(tiny_model, zero_stage=3, method="full", learning_rate=1e-3))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    losses = [r.loss for r in run.logged()]
    assert _mean(losses[-5:]) < 0.9 * _mean(losses[:5]), losses
    tuned = AutoModelForCausalLM.from_pretrained(run.model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    tuned_sd, base_sd = tuned.state_dict(), base.state_dict()
    assert tuned_sd.keys() == base_sd.keys()
    assert all(tuned_sd[k].shape == base_sd[k].shape for k in base_sd)  # whole tensors, not shards
    assert any(not torch.equal(tuned_sd[k], base_sd[k]) for k in base_sd)


def test_stop_ends_every_rank_of_a_zero_run_and_keeps_the_adapter(tiny_model, runs_dir):
    run = training(_cfg(tiny_model, zero_stage=2, max_steps=100000, save_steps=100000), steps=5)
    t0 = time.time()
    assert stop(run) == "stopped", (run.dir / "train.log").read_text()[-3000:]
    assert time.time() - t0 < 8
    assert run.adapter is not None


def test_deepspeed_config_follows_the_run_config():
    ds = deepspeed_config(RunConfig(zero_stage=3, offload="all", batch_size=2, grad_accum=4))
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 4
    cmd = launch_command(RunConfig(zero_stage=2, num_processes=8), "c.yaml", "ds.json", port=29500,
                         machines=2, machine_rank=1, main_ip="10.0.0.1")
    text = " ".join(cmd)
    assert "--num_processes 16 --num_machines 2" in text and "--machine_rank 1" in text
    assert "--main_process_ip 10.0.0.1" in text and text.endswith("-m engine.train.trainer c.yaml")


def test_impossible_combinations_are_refused_with_a_sentence():
    many = RunConfig(zero_stage=2, num_processes=512)
    assert "at most" in refusal(many) or "GPU" in refusal(many)
    assert "zero_stage 2" in refusal(RunConfig(method="qlora", zero_stage=3))
    with pytest.raises(ConfigError, match="offload: all .* needs zero_stage 3"):
        RunConfig(zero_stage=2, offload="all")
    with pytest.raises(ConfigError, match="offload: needs ZeRO"):
        RunConfig(offload="optimizer")
    with pytest.raises(ConfigError, match="num_processes 512"):
        create_run(many)


def test_zero1_shards_only_the_optimizer_and_trains(tiny_model, runs_dir):
    run = _train(_cfg(tiny_model, zero_stage=1, max_steps=10))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    assert json.loads((run.dir / "ds_config.json").read_text())["zero_optimization"] == {"stage": 1}
    assert run.adapter is not None and len(run.logged()) == 10


@pytest.mark.parametrize("stage", [2, 3])
def test_dpo_under_zero_trains_on_two_processes(tiny_model, runs_dir, stage):
    """A preference objective through the same launcher: two ranks, ZeRO-2 or ZeRO-3 (the weights sharded,
    the reference still the adapter switched off), the reward metrics from rank 0."""
    run = _train(_cfg(tiny_model, zero_stage=stage, data=str(SAMPLE / "preference.jsonl"), objective="dpo",
                      max_steps=8, learning_rate=5e-3, max_length=128, max_prompt_length=64))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    started = [e for e in run.events.read() if e["event"] == "started"]
    assert len(started) == 1 and started[0]["processes"] == 2
    logged = run.logged()
    assert len(logged) == 8 and all(e.rewards_margin is not None for e in logged)
    from safetensors.torch import load_file

    weights = load_file(str(run.adapter / "adapter_model.safetensors"))  # whole tensors, gathered from the ranks
    assert weights and all(t.numel() > 0 for t in weights.values())
