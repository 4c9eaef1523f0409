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
