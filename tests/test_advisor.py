"""The method advisor: the published matrix kept as published, readings with evidence, a ranking,
estimates checked against real models and real CPU runs, the probe, and RAG-or-fine-tune advice."""

import pytest

from engine.advise import advisor, estimate
from engine.advise.estimate import estimate_memory, trainable_params
from engine.advise.plan import CPU, plan, ram_gb
from engine.models import ShapeError, shape_of

PUBLISHED_YES = {"domain": 6, "nlp": 6, "qa": 6, "chatbot": 6, "creative": 6, "cost": 4, "memory": 4,
                 "fewer_params": 3, "data_parallel": 3}


def test_the_published_matrix_is_shown_as_published_with_readings_beside_arguable_cells():
    rows = advisor.matrix_rows(["memory"])
    assert [r["key"] for r in rows] == list(PUBLISHED_YES)
    for row in rows:
        assert sum(row[c] == "Yes" for c in advisor.COLUMNS) == PUBLISHED_YES[row["key"]]
    memory = next(r for r in rows if r["key"] == "memory")
    assert memory["chosen"] and memory["LoRA"] == "No"
    ours = memory["LoRA (ours)"]
    assert ours.startswith("Yes: against full fine-tuning") and "GiB with LoRA vs" in ours and "{" not in ours
    assert all("{" not in v for r in rows for k, v in r.items() if k.endswith("(ours)"))


def test_ranking_uses_the_readings_and_prefers_less_memory_on_ties():
    ranked = advisor.rank(["memory", "fewer_params"])
    assert ranked[0][0] == "QLoRA" and ranked[0][2] == {"method": "qlora"}
    assert {c for c, s, _ in ranked if s == 2} == {"QLoRA", "PEFT", "LoRA", "DoRA"}
    top = advisor.rank(["data_parallel"])[:2]
    assert {c for c, _, _ in top} == {"ZeRO", "DeepSpeed"} and all("zero_stage" in r for _, _, r in top)
    assert advisor.rank(["chatbot", "qa"])[0][0] == "LoRA"  # a tie without memory in it: the simplest
    with pytest.raises(ValueError, match="scenario 'speed' is not one of"):
        advisor.rank(["speed"])


def test_parameter_counts_match_real_models(tiny_model):
    import peft
    from transformers import AutoModelForCausalLM

    from engine.train.config import RunConfig
    from engine.train.methods import peft_config

    shape = shape_of(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert shape.params == sum(p.numel() for p in model.parameters())
    for method in ("lora", "dora", "ia3", "prompt-tuning", "loha", "vera"):
        wrapped = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                                      peft_config(RunConfig(method=method)))
        real = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        assert trainable_params(shape, method) == real, method
    smol = shape_of("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert abs(smol.params - 134_515_008) < 1e6  # the published size of SmolLM2-135M
    assert trainable_params(smol, "lora") == 4_884_480


def test_memory_follows_zero_offload_and_quantisation():
    shape = shape_of("meta-llama/Llama-3.1-8B-Instruct")
    one = estimate_memory(shape, "full")
    eight = estimate_memory(shape, "full", gpus=8, zero_stage=3)
    assert eight.total < one.total / 4
    z1, z2 = (estimate_memory(shape, "full", gpus=8, zero_stage=s) for s in (1, 2))
    assert z1.optimizer == one.optimizer / 8 and z1.gradients == one.gradients
    assert z2.gradients == one.gradients / 8
    offload = estimate_memory(shape, "full", gpus=8, zero_stage=3, offload="all")
    assert offload.optimizer == 0 and offload.total < eight.total and offload.cpu_offloaded > 0
    q = estimate_memory(shape, "qlora")
    lora = estimate_memory(shape, "lora")
    assert q.weights < lora.weights / 2.5  # embeddings stay 16-bit
    ckpt = estimate_memory(shape, "lora", gradient_checkpointing=True)
    assert ckpt.activations < lora.activations / 3


def test_the_published_claims_are_checked_with_figures():
    shape = shape_of("meta-llama/Llama-3.1-70B-Instruct")
    assert 69e9 < shape.params < 72e9
    full40 = estimate.gpus_needed(shape, 40, "full", batch_size=1, seq_len=512, gradient_checkpointing=True)
    qlora48 = estimate.gpus_needed(shape, 48, "qlora", zero_stage=0, batch_size=1, seq_len=512,
                                   gradient_checkpointing=True)
    assert 24 <= full40 <= 48 and 1 <= qlora48 <= 2
    text = " ".join(c["reading"] for c in advisor.claims())
    assert "bits per parameter" in text and f"{full40} x 40 GB" in text


def test_time_and_cost():
    t = estimate.estimate_time(1_000_000, 3, 250, gpus=2, price_per_gpu_hour=2.0)
    assert t["seconds"] == pytest.approx(6000) and t["gpu_hours"] == pytest.approx(3.333, abs=1e-3)
    assert t["cost"] == pytest.approx(6.67, abs=0.01)


def test_an_unknown_model_says_what_is_known():
    with pytest.raises(ShapeError, match="not in the built-in table"):
        shape_of("nobody/no-such-model")


@pytest.mark.parametrize("answers, route", [
    ((True, False, "none", True, "not tried"), "RAG"),
    ((False, True, "100-1,000", False, "close but inconsistent"), "fine-tuning"),
    ((True, True, "over 1,000", True, "poor"), "RAG + fine-tuning"),
    ((False, False, "none", False, "good enough"), "prompting"),
    ((False, True, "under 100", False, "not tried"), "prompting"),
])
def test_questionnaire_routes(answers, route):
    advice = advisor.recommend(*answers)
    assert advice.route == route
    assert advice.reasons and "Compare tab" in advice.next_step and "hosted" in advice.hosted.lower()


def test_probe_measures_each_method_on_the_model_and_data(tiny_model, runs_dir):
    from conftest import SAMPLE
    from engine.advise.probe import probe

    rows = probe(tiny_model, str(SAMPLE / "train.jsonl"), ["lora", "ia3", "prefix-tuning"], steps=4,
                 max_length=96)
    lora, ia3, prefix = rows
    assert prefix["status"] == "refused" and "prefix-tuning" in prefix["reason"]
    for r in (lora, ia3):
        assert r["status"] == "finished" and r["tokens_per_s"] > 0 and r["peak_memory_gb"] > 0.1
        assert isinstance(r["loss_change"], float)
    assert ia3["trainable_params"] < lora["trainable_params"]
    assert lora["trainable_params"] == trainable_params(shape_of(tiny_model), "lora")
    assert not any((runs_dir / r["run_id"]).exists() for r in (lora, ia3))  # probes live in runs/probes


@pytest.mark.slow
def test_memory_estimate_is_close_to_the_measured_peak_on_the_default_model(runs_dir):
    from engine.models import DEFAULT_MODEL
    from engine.advise.probe import check_estimates

    rows = check_estimates(DEFAULT_MODEL, ["lora", "full"], batch_size=2, seq_len=128, steps=2)
    for r in rows:
        assert r["status"] == "finished", r
        assert abs(r["error"]) < 0.25, r


def test_the_plan_says_whether_it_fits_how_many_gpus_and_how_long(tiny_model, runs_dir):
    from engine.advise import estimate
    from engine.capability import auto_precision, capability

    big = plan("Qwen/Qwen2.5-7B-Instruct", "full", "NVIDIA A10G (24 GB)", gpus=1, epochs=1, tokens=10**6)
    assert not big.fits and big.gpus_needed > 1 and any("With ZeRO-3 it needs" in t for t in big.sentences())
    here = plan(tiny_model, "lora", CPU, epochs=2, tokens=50_000)
    assert here.fits and here.gpus_needed is None and here.capacity_gb == ram_gb()
    # no run of this model has been timed: the speed comes from the matrix products measured here
    peak = capability(tiny_model).peak(auto_precision(tiny_model)[0])
    assert here.speed == estimate.throughput_from_peak(here.shape, "lora", peak) and "estimated" in here.speed_source
    assert here.time["seconds"] == round(50_000 * 2 / here.speed, 1)
    assert {b["part"] for b in here.bars()} >= {"weights", "capacity"}
