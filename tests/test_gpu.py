"""The same training and inference on a CUDA GPU. Skipped cleanly where there is none."""

import time

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_lora_trains_in_bf16_on_the_gpu_and_answers(tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.config import RunConfig
    from engine.infer import ChatModel
    from engine.runs import create_run, launch

    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=40,
                               learning_rate=1e-2, batch_size=8, max_length=128))
    launch(run)
    deadline = time.time() + 300
    while run.status() == "running" and time.time() < deadline:
        time.sleep(0.5)
    log = (run.dir / "train.log").read_text()
    assert run.status() == "finished", log[-3000:]
    losses = [r["loss"] for r in run.logged()]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    started = next(r for r in run.events.read() if r["event"] == "started")
    assert started["device"].startswith("cuda")
    assert started["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    chat = ChatModel(tiny_model, run.adapter)
    assert chat.generate([{"role": "user", "content": "How heavy is the Tilly T2?"}], max_new_tokens=8).answer_tokens > 0
