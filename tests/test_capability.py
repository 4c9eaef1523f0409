"""Precision from what this machine measures: auto, the refusal of a slow bf16, and the forced override.

The real figures are measured here; the two other kinds of CPU the studio meets (an AVX2-only EPYC
where bf16 is 180x slower, an AMX Xeon where it is 7x faster) are seeded into a private cache with
the figures measured on them, so both paths are tested on any machine.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE
from engine import capability as capmod
from engine.train import preflight
from engine.train.config import ConfigError, RunConfig


def _seed(tmp_path, monkeypatch, model, fp32, bf16):
    monkeypatch.setenv("STUDIO_MEASURED", str(tmp_path / "cache"))
    key = capmod.machine_key(capmod.model_shape(model))
    path = capmod.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({key: {"device": "cpu", "shape": list(capmod.model_shape(model)),
                                      "gflops": {"fp32": fp32, "bf16": bf16, "fp16": 0.0}}}))


def test_the_figures_are_measured_once_and_cached_by_machine(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("STUDIO_MEASURED", str(tmp_path / "cache"))
    cap = capmod.capability(tiny_model)
    assert cap.gflops["fp32"] > 0 and cap.shape == (64, 128) and cap.ratios["fp32"] == 1.0
    cached = json.loads(capmod.cache_path().read_text())
    assert list(cached) == [cap.key] and "torch" in cap.key and capmod.cpu_model() in cap.key
    cached[cap.key]["gflops"]["fp32"] = 12345.0  # a second call reads the cache, it does not measure again
    cached[cap.key]["ratios"]["bf16"] = 0.01
    capmod.cache_path().write_text(json.dumps(cached))
    assert capmod.capability(tiny_model).gflops["fp32"] == 12345.0
    picked, why = capmod.auto_precision(tiny_model)  # bf16 now reads as 100x slower than fp32
    assert picked == "fp32" and why.startswith("auto is fp32: bf16 matrix products run") and "slower" in why


def test_bf16_is_refused_where_it_measures_slower_and_warns_when_forced(tmp_path, monkeypatch, tiny_model, runs_dir):
    from engine.train.preflight import create_run

    _seed(tmp_path, monkeypatch, tiny_model, fp32=165.0, bf16=0.9)  # the AVX2-only EPYC Zen 3
    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), precision="bf16")
    with pytest.raises(ConfigError, match=r"precision bf16: bf16 matrix products run 183x slower than fp32 "
                                          r"on this CPU \(at best 0.9 vs 165 GFLOP/s"):
        create_run(cfg)
    assert not runs_dir.exists() or not list(runs_dir.iterdir())  # refused before any run folder
    forced = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), precision="bf16", force_precision=True)
    assert preflight.refusal(forced) is None
    assert "183x slower" in preflight.precision_warning(forced)
    auto = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"))
    assert preflight.precision(auto) == "fp32" and "183x slower" in preflight.precision_note(auto)


def test_auto_takes_bf16_where_the_cpu_is_much_faster_in_it(tmp_path, monkeypatch, tiny_model):
    _seed(tmp_path, monkeypatch, tiny_model, fp32=190.0, bf16=1330.0)  # an AMX Xeon: 7x
    assert preflight.precision(RunConfig(model=tiny_model)) == "bf16"
    _seed(tmp_path / "b", monkeypatch, tiny_model, fp32=187.0, bf16=408.0)  # AVX-512 BF16 EPYC: 2.2x
    cfg = RunConfig(model=tiny_model)
    assert preflight.precision(cfg) == "fp32" and "only from 3x" in preflight.precision_note(cfg)
    assert preflight.refusal(RunConfig(model=tiny_model, precision="bf16")) is None  # faster: allowed


def test_the_cli_refuses_slow_bf16_with_the_ratio_and_starts_no_run(tmp_path, monkeypatch, tiny_model):
    import torch

    configured = capmod.threads()
    torch.set_num_threads(1)  # as a Compare round beside a busy machine sets it: the key must not follow
    try:
        _seed(tmp_path, monkeypatch, tiny_model, fp32=165.0, bf16=0.9)
    finally:
        torch.set_num_threads(configured)
    runs = tmp_path / "runs"
    env = {**__import__("os").environ, "STUDIO_RUNS": str(runs)}
    cmd = [sys.executable, "-m", "studio.cli", "train", str(ROOT / "assets/configs/lora-sample.yaml"),
           "--model", tiny_model, "--precision", "bf16"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "183x slower than fp32" in out.stderr and "force_precision" in out.stderr
    assert not runs.exists() or not list(runs.iterdir())
