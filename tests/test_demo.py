"""The public-demo setting (STUDIO_DEMO=1): capped steps, the default model only, small uploads, said on the page."""

import pytest

from engine import demo
from engine.config import ConfigError, RunConfig
from engine.models import DEFAULT_MODEL
from engine.uploads import max_upload_mb


def test_off_by_default_changes_nothing(monkeypatch):
    monkeypatch.delenv("STUDIO_DEMO", raising=False)
    assert demo.limit(RunConfig(max_steps=-1)).max_steps == -1
    assert max_upload_mb() == 200


def test_the_demo_caps_steps_keeps_the_default_model_and_takes_small_uploads(monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "500")
    assert demo.limit(RunConfig(max_steps=-1)).max_steps == demo.MAX_STEPS  # epochs become the cap
    assert demo.limit(RunConfig(max_steps=10)).max_steps == 10
    assert demo.limit(RunConfig(max_steps=10_000)).max_steps == demo.MAX_STEPS
    with pytest.raises(ConfigError, match=f"model: the public demo trains {DEFAULT_MODEL} only"):
        demo.limit(RunConfig(model="meta-llama/Llama-3.1-8B"))
    assert max_upload_mb() == demo.MAX_UPLOAD_MB


def test_the_page_says_it_is_a_demo(monkeypatch):
    from ui.app import build

    monkeypatch.setenv("STUDIO_DEMO", "1")
    shown = [c.get("props", {}).get("value") for c in build().config["components"]]
    assert demo.NOTICE in shown
    monkeypatch.delenv("STUDIO_DEMO")
    assert demo.NOTICE not in [c.get("props", {}).get("value") for c in build().config["components"]]


def test_the_preview_shows_the_run_the_demo_will_train(monkeypatch):
    from ui.train_tab import config_preview

    monkeypatch.setenv("STUDIO_DEMO", "1")
    asked = RunConfig(max_steps=10_000)
    assert demo.limit(asked) is not asked and asked.max_steps == 10_000  # the form's config is left as it was
    dataset = {"files": ["assets/sample/train.jsonl"]}
    form = [DEFAULT_MODEL, "lora", 1, 10_000, 1e-3, 8, 4, 256]
    yaml_text, _, _ = config_preview(dataset, *form)
    assert f"max_steps: {demo.MAX_STEPS}" in yaml_text
    monkeypatch.delenv("STUDIO_DEMO")
    assert "max_steps: 10000" in config_preview(dataset, *form)[0]


def test_the_preview_of_a_zero_run_shows_the_accelerate_command_and_deepspeed_config(monkeypatch):
    import json
    import re

    from ui.train_tab import config_preview

    monkeypatch.delenv("STUDIO_DEMO", raising=False)
    form = [DEFAULT_MODEL, "lora", 1, 10, 1e-3, 8, 4, 256, False, "", "auto", False, 2, 4, "optimizer"]
    yaml_text, text, _ = config_preview({"files": ["assets/sample/train.jsonl"]}, *form)
    assert "zero_stage: 2" in yaml_text and "num_processes: 4" in yaml_text
    assert "accelerate.commands.launch --use_deepspeed --deepspeed_config_file ds_config.json --num_processes 4" in text
    ds = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    assert ds["zero_optimization"]["stage"] == 2 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    bad = form[:-3] + [0, 1, "optimizer"]  # offload without ZeRO: the config's own sentence, in the preview
    assert config_preview({"files": ["assets/sample/train.jsonl"]}, *bad)[0].startswith("# offload: needs ZeRO")
