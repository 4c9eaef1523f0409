"""The same training and inference on a CUDA GPU. Skipped cleanly where there is none."""


import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_lora_trains_in_bf16_on_the_gpu_and_answers(tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.train.config import RunConfig
    from engine.infer.chat import ChatModel

    run = _train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=40,
                           learning_rate=1e-2, batch_size=8, max_length=128))
    losses = [r.loss for r in run.logged()]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    started = next(r for r in run.events.read() if r["event"] == "started")
    assert started["device"].startswith("cuda")
    assert started["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    chat = ChatModel(tiny_model, run.adapter)
    assert chat.generate([{"role": "user", "content": "How heavy is the Tilly T2?"}], max_new_tokens=8).answer_tokens > 0


def _train(cfg, timeout=300):
    from conftest import train

    run = train(cfg, timeout=timeout)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    return run


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_over_the_gpus_of_this_machine(stage, tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.train.config import RunConfig

    gpus = torch.cuda.device_count()
    if gpus < 2:
        pytest.skip("ZeRO over GPUs needs at least 2")
    run = _train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=20,
                           learning_rate=1e-3 if stage == 3 else 1e-2, batch_size=8, max_length=128, zero_stage=stage, num_processes=gpus,
                           method="full" if stage == 3 else "lora"))
    started = next(r for r in run.events.read() if r["event"] == "started")
    assert started["processes"] == gpus and started["device"].startswith("cuda")
    losses = [r.loss for r in run.logged()]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5


def test_zero2_with_optimizer_offload_on_one_gpu(tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.train.config import RunConfig

    run = _train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=20, learning_rate=1e-2,
                           batch_size=8, max_length=128, zero_stage=2, offload="optimizer"))
    assert run.adapter is not None


def test_qlora_on_the_gpu_merges_and_exports_to_onnx(tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.export import archive as export
    from engine.train.config import RunConfig

    run = _train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=20, learning_rate=1e-2,
                           batch_size=8, max_length=128, method="qlora", compute_dtype="bfloat16"))
    path, diff = export.export_onnx(run)
    assert path.exists() and diff < 1e-3


def test_memory_estimate_against_the_measured_gpu_peak(tiny_model, runs_dir):
    from engine.models import DEFAULT_MODEL
    from engine.advise.probe import check_estimates

    for model in (tiny_model, DEFAULT_MODEL):
        for r in check_estimates(model, ["lora", "full"], batch_size=4, seq_len=256, steps=2):
            assert r["status"] == "finished", r
            print(model, r["method"], r["peak_memory_gb"], r["estimate_gb"], r["error"])
            assert abs(r["error"]) < 0.5, r


def test_vllm_serves_a_lora_run_for_the_openai_client(tiny_model, runs_dir):
    """`studio serve --engine vllm`: vLLM answers the base and a LoRA run through the same routes."""
    pytest.importorskip("vllm")
    openai = pytest.importorskip("openai")
    from conftest import SAMPLE
    from engine.infer.batching import run_here
    from engine.train.config import RunConfig
    from engine.infer.serve import start
    from engine.infer.serve_vllm import load_vllm_models
    from test_serve import QUESTION, free_port

    run = _train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=10, learning_rate=1e-2,
                           batch_size=8, max_length=96))
    models = load_vllm_models([run.id], root=runs_dir)
    port = free_port()
    server = start(models, port=port)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")

        def go():
            plain = client.chat.completions.create(model=run.id, messages=QUESTION, max_tokens=8, temperature=0)
            chunks = list(client.chat.completions.create(model=run.id, messages=QUESTION, max_tokens=8,
                                                         temperature=0, stream=True))
            return plain, chunks

        plain, chunks = run_here(go)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert plain.usage.completion_tokens > 0 and text == plain.choices[0].message.content
    finally:
        server.should_exit = True
