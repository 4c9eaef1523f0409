"""The public-demo setting (STUDIO_DEMO=1): capped steps, the default model only, small uploads, said on the page."""

import pytest

from engine import demo
from engine.train.config import ConfigError, RunConfig
from engine.train.preflight import demo_limit
from engine.models import DEFAULT_MODEL
from engine.data.uploads import max_upload_mb


def test_off_by_default_changes_nothing(monkeypatch):
    monkeypatch.delenv("STUDIO_DEMO", raising=False)
    assert demo_limit(RunConfig(max_steps=-1)).max_steps == -1
    assert max_upload_mb() == 200


def test_the_demo_caps_steps_keeps_the_default_model_and_takes_small_uploads(monkeypatch):
    monkeypatch.setenv("STUDIO_DEMO", "1")
    monkeypatch.setenv("STUDIO_MAX_UPLOAD_MB", "500")
    assert demo_limit(RunConfig(max_steps=-1)).max_steps == demo.MAX_STEPS  # epochs become the cap
    assert demo_limit(RunConfig(max_steps=10)).max_steps == 10
    assert demo_limit(RunConfig(max_steps=10_000)).max_steps == demo.MAX_STEPS
    with pytest.raises(ConfigError, match=f"model: the public demo trains {DEFAULT_MODEL} only"):
        demo_limit(RunConfig(model="meta-llama/Llama-3.1-8B"))
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
    assert demo_limit(asked) is not asked and asked.max_steps == 10_000  # the form's config is left as it was
    dataset = {"files": ["assets/sample/train.jsonl"]}
    form = {"model": DEFAULT_MODEL, "epochs": 1, "max_steps": 10_000, "lora_rank": 8}
    yaml_text, _, _ = config_preview(dataset, form)
    assert f"max_steps: {demo.MAX_STEPS}" in yaml_text
    monkeypatch.delenv("STUDIO_DEMO")
    assert "max_steps: 10000" in config_preview(dataset, form)[0]


def test_the_preview_of_a_zero_run_shows_the_accelerate_command_and_deepspeed_config(monkeypatch):
    import json
    import re

    from ui.train_tab import config_preview

    monkeypatch.delenv("STUDIO_DEMO", raising=False)
    form = {"model": DEFAULT_MODEL, "max_steps": 10, "zero_stage": 2, "num_processes": 4, "offload": "optimizer"}
    yaml_text, text, _ = config_preview({"files": ["assets/sample/train.jsonl"]}, form)
    assert "zero_stage: 2" in yaml_text and "num_processes: 4" in yaml_text
    assert "accelerate.commands.launch --use_deepspeed --deepspeed_config_file ds_config.json --num_processes 4" in text
    ds = json.loads(re.search(r"```json\n(.*?)\n```", text, re.S).group(1))
    assert ds["zero_optimization"]["stage"] == 2 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    bad = {**form, "zero_stage": 0, "num_processes": 1}  # offload without ZeRO: the config's own sentence
    assert config_preview({"files": ["assets/sample/train.jsonl"]}, bad)[0].startswith("# offload: needs ZeRO")


def test_the_train_form_opens_on_the_named_preset_and_the_preview_says_so(monkeypatch):
    """Every widget of the Train form starts at the preset's value of its field; no other defaults exist."""
    from engine.train.config import FORM_PRESET, LABELS, PRESETS
    from ui.app import build
    from ui.train_tab import ADVANCED, BASIC, config_preview

    monkeypatch.delenv("STUDIO_DEMO", raising=False)
    monkeypatch.delenv("STUDIO_MODEL", raising=False)
    preset = RunConfig.preset(FORM_PRESET)
    assert PRESETS[FORM_PRESET] and preset != RunConfig()  # a real preset, not the defaults
    labels = {label: name for name, label in LABELS.items()}
    shown = {labels[b.label]: b.value for b in build().blocks.values() if getattr(b, "label", None) in labels
             and getattr(b, "elem_id", None) not in (None, "estimate")}
    assert set(BASIC + ADVANCED + ("model", "method", "max_length")) <= set(shown)
    for name in BASIC + ADVANCED + ("model", "method", "max_length"):
        value = shown[name]
        expected = getattr(preset, name)
        assert (", ".join(expected) if isinstance(expected, list) else expected) == value, name
    yaml_text = config_preview({"files": ["assets/sample/train.jsonl"]}, {})[0]
    assert yaml_text.startswith(f"# The form starts from the preset '{FORM_PRESET}' (epochs 5.0")
    assert "learning_rate: 0.001" in yaml_text and "max_length: 256" in yaml_text
