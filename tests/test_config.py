"""RunConfig: YAML round trip, command-line overrides, one sentence per bad setting."""

import pytest

from studio.cli import _overrides
from engine.train.config import ConfigError, RunConfig


def test_yaml_round_trip_keeps_values_and_help(tmp_path):
    cfg = RunConfig(epochs=2, learning_rate=5e-4, lora_rank=4)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert "# LoRA rank r" in path.read_text()
    assert RunConfig.from_yaml(path) == cfg


def test_overrides_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 1\n")
    cfg = RunConfig.from_yaml(path, _overrides(["--max_steps", "7", "--learning-rate=0.01"]))
    assert cfg.max_steps == 7 and isinstance(cfg.max_steps, int)
    assert cfg.learning_rate == 0.01


@pytest.mark.parametrize("values, field", [
    ({"learning_rate": 0}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"lora_rank": "eight"}, "lora_rank"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"method": "magic"}, "method"),
    ({"max_length": 4}, "max_length"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_setting_names_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        RunConfig.from_dict(values)


def test_broken_yaml_is_one_sentence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml(path)


def test_every_example_config_is_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parent.parent / "assets" / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    loaded = {c.stem: RunConfig.from_yaml(c) for c in configs}
    from engine.train.methods import METHODS

    assert set(METHODS) - {"prefix-tuning"} <= {c.method for c in loaded.values()}
    assert loaded["zero2-sample"].zero_stage == 2 and loaded["zero3-sample"].zero_stage == 3
    assert all(c.distributed() for name, c in loaded.items() if name.startswith("zero"))
