"""The performance benchmark measures what it says: the studio and a bare TRL script train the same thing."""

from engine.advise.estimate import flops_per_token
from studio.bench import _throughput, curves, table, train_bench


def test_throughput_leaves_out_the_warm_up_steps():
    records = [{"step": 1, "tokens": 100, "elapsed_s": 5.0}, {"step": 2, "tokens": 200, "elapsed_s": 6.0},
               {"step": 3, "tokens": 300, "elapsed_s": 6.5}, {"step": 4, "tokens": 400, "elapsed_s": 7.0}]
    assert _throughput(records) == 200 / 1.0  # steps 3-4: 200 tokens in 1 s; the slow first step is left out
    assert flops_per_token(1000, "lora") == 4000 and flops_per_token(1000, "full") == 6000


def test_the_studio_and_a_bare_trl_script_train_alike_and_the_ratios_are_measured(tiny_model, tmp_path):
    from engine.capability import capability

    cap = capability(tiny_model)
    # the loss on the answers only: both read the sample as prompt / completion rows (the realistic bench's way);
    # bf16 is left out here (tests/test_fast_step.py holds its loss to trl's own bf16 step)
    rows, run = train_bench(tiny_model, "lora", steps=6, batch=4, max_length=96, lr=5e-2, root=tmp_path,
                            train_on="assistant", only=("studio", "trl's step", "packed"))
    assert [r["variant"] for r in rows] == ["baseline", "studio", "trl's step", "packed"]
    base, studio, trl_step, packed = rows
    assert all(r["tokens_per_s"] > 0 and r["peak_mb"] > 0 for r in rows)
    # Utilisation against the peak measured here at the model's shapes, in each row's own precision.
    assert all(0 < r["mfu"] < 1 and r["peak_gflops"] == round(cap.peak(r["precision"])) for r in rows)
    assert studio["speedup"] == studio["tokens_per_s"] / base["tokens_per_s"]
    assert len(base["losses"]) == len(studio["losses"]) == 6
    assert base["losses"][-1] < base["losses"][0] and studio["losses"][-1] < studio["losses"][0]
    # same data, seed and settings as the TRL script: the same curve within dropout's noise (the studio's masks
    # are other draws: tensors without padding, masks from random bits; 2-6% apart over seeds 0-3 at this
    # learning rate, as with torch's own dropout over the padding-free tensors; tests/test_fast_step.py holds
    # the step to trl's own at dropout 0)
    assert studio["max_loss_gap"] < 0.1
    # at the first step the adapters add nothing yet (B = 0), so dropout cannot differ: the same loss, to rounding
    assert abs(studio["losses"][0] - base["losses"][0]) < 1e-5 * base["losses"][0], (studio["losses"], base["losses"])
    assert trl_step["max_loss_gap"] < 0.02
    assert packed["max_loss_gap"] is None and packed["losses"][-1] < packed["losses"][0]  # it learns too
    assert run.adapter is not None
    assert "| lora | trl's step | fp32 |" in table(rows)
    assert curves(rows).splitlines()[2].startswith("| 1 | ")  # the losses side by side, a line a step


def test_compare_bench_measures_one_batch_against_a_sequential_loop(tiny_model, runs_dir, monkeypatch):
    """The Compare section: the studio's batch and the plain transformers + peft loop give the same answers, and
    the ratios are computed from the times it measured. In fp32 on every machine: whether bf16 would be chosen
    depends on this CPU, and the loop it is compared with is fp32."""
    monkeypatch.setenv("STUDIO_GENERATE_PRECISION", "fp32")
    from conftest import SAMPLE, train
    from engine.train.config import RunConfig
    from rag.compare import COLUMNS
    from studio.bench import compare_bench, compare_table

    run = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=4, batch_size=2,
                          max_length=64, learning_rate=1e-2))
    c = compare_bench(run, questions=3)
    assert [r["column"] for r in c["columns"]] == list(COLUMNS)
    assert all(r["same_answer"] for r in c["columns"]) and c["eval_same_answers"] == c["eval_answers"] == 12
    assert c["four_vs_one_column"] == c["four_columns_s"] / c["loop_one_column_mean_s"]
    assert c["eval_speedup"] == c["loop_eval_s"] / c["eval_s"]
    assert all(r["loop_s"] > 0 and r["studio_s"] > 0 for r in c["columns"])
    assert "Four columns = " in compare_table(c) and c["precision"]
