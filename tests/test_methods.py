"""Every method of the matrix trains the tiny model for real: the loss goes down and the output reloads."""


import pytest
import torch

from conftest import SAMPLE, train as _train
from engine.train.config import ConfigError, RunConfig
from engine.train.methods import METHODS, peft_config
from engine.train.preflight import refusal
from engine.train.preflight import create_run

ALL = [m for m in METHODS if m != "prefix-tuning"]
# Methods with few trained parameters need a higher learning rate to move in 30 steps.
LR = {"ia3": 0.2, "vera": 0.05, "prompt-tuning": 0.1, "prefix-tuning": 0.05}


@pytest.mark.parametrize("method", ALL)
def test_method_trains_and_its_output_reloads(method, tiny_model, runs_dir):
    from engine.infer.chat import ChatModel

    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), method=method, max_steps=30,
                    learning_rate=LR.get(method, 1e-2),
                    batch_size=8, max_length=96, save_steps=100, warmup_ratio=0.0)
    run = _train(cfg)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    losses = [r.loss for r in run.logged()]
    assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5, losses
    if method in ("full", "freeze"):
        assert run.model_dir is not None and run.adapter is None
        chat = ChatModel(str(run.model_dir))
        before = ChatModel(tiny_model)
        assert any(not torch.equal(a, b) for a, b in zip(chat.model.state_dict().values(),
                                                         before.model.state_dict().values()))
    else:
        assert run.adapter is not None
        chat = ChatModel(tiny_model, run.adapter)
    out = chat.generate([{"role": "user", "content": "How heavy is the Tilly T2?"}], use_adapter=chat.has_adapter,
                        max_new_tokens=6)
    assert out.answer_tokens > 0


def test_freeze_trains_only_the_last_layers(tiny_model):
    from engine.train.methods import freeze_all_but_last
    from engine.models import load_causal_lm

    model = load_causal_lm(tiny_model)
    trainable = freeze_all_but_last(model, 1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("model.layers.1.", "model.norm")) for n in names)
    assert trainable < sum(p.numel() for p in model.parameters()) / 2


def test_method_settings_map_to_peft():
    cfg = RunConfig(method="dora", lora_rank=4, lora_alpha=8, target_modules="q_proj, v_proj")
    pc = peft_config(cfg)
    assert pc.use_dora and pc.r == 4 and set(pc.target_modules) == {"q_proj", "v_proj"}
    assert peft_config(RunConfig(method="rslora")).use_rslora
    assert peft_config(RunConfig(method="full")) is None
    assert peft_config(RunConfig(method="adalora"), total_steps=100).total_step == 100
    with pytest.raises(ConfigError, match="^method: 'magic' is not one of lora, rslora, dora"):
        RunConfig(method="magic")


def test_quantised_methods_are_refused_where_bitsandbytes_cannot_load(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise RuntimeError("no backend")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    assert refusal(RunConfig(method="qlora")) == (
        "method qlora: bitsandbytes cannot load on this machine, so the base cannot be quantised; "
        "pick lora (or dora) instead.")
    assert refusal(RunConfig(method="lora")) is None


def test_prefix_tuning_is_refused_before_launch_with_its_sentence(tiny_model, runs_dir):
    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), method="prefix-tuning", max_steps=2)
    with pytest.raises(ConfigError, match="^method prefix-tuning: it does not train with this version"):
        create_run(cfg)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
