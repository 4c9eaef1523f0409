"""Preference tuning: every pair shape read and named, bad pairs refused by line and field, the data refused
before launch when it does not fit the objective, and each objective (DPO, ORPO, KTO, SimPO) training for
real through trl with the loss going down and the preference accuracy on its pairs going up."""

import json
import re
import subprocess
import sys

import pytest

from conftest import PEER_DATA, ROOT, SAMPLE, train
from engine.train.config import ConfigError, RunConfig
from engine.data.dataset import check_files, load_examples
from engine.infer.preference import preference_accuracy
from engine.train.preflight import create_run

PAIRS = SAMPLE / "preference.jsonl"
HELD_BACK = SAMPLE / "preference-eval.jsonl"


def _report(write_jsonl, rows, name="p.jsonl"):
    return check_files([str(write_jsonl(rows, name))])


SHAPES = [
    ({"prompt": "What colour is Tilly?", "chosen": "Green.", "rejected": "Red."}, "pairs"),
    ({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
      "rejected": [{"role": "assistant", "content": "Go away."}]}, "chat pairs"),
    ({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
      "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]}, "chat pairs"),
    ({"input": {"messages": [{"role": "user", "content": "Q"}]},
      "preferred_output": [{"role": "assistant", "content": "Good"}],
      "non_preferred_output": [{"role": "assistant", "content": "Bad"}]}, "openai pairs"),
    ({"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"},
      "rejected": {"from": "gpt", "value": "B"}}, "sharegpt pairs"),
    ({"instruction": "Name a colour", "input": "", "chosen": "Blue.", "rejected": "Dog."}, "alpaca pairs"),
]


@pytest.mark.parametrize("record, shape", SHAPES)
def test_each_pair_shape_is_read_and_named(write_jsonl, record, shape):
    report = _report(write_jsonl, [record])
    assert not report.errors, report.errors
    ex = report.examples[0]
    assert ex.format == shape and ex.kind == "pairs" and ex.prompt[-1]["role"] == "user"
    assert ex.rejected and ex.messages[-1]["role"] == "assistant" and ex.messages[-1]["content"] != ex.rejected
    assert f"1 {shape}" in report.summary()


def test_unpaired_labels_read_from_trl_and_llama_factory_shapes(write_jsonl):
    report = _report(write_jsonl, [
        {"prompt": "Is Tilly green?", "completion": "Yes.", "label": True},
        {"prompt": "Is Tilly green?", "completion": "No, purple.", "label": False},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "kto_tag": "true"}])
    assert not report.errors, report.errors
    assert [e.label for e in report.examples] == [True, False, True]
    assert {e.kind for e in report.examples} == {"unpaired"}


def test_csv_and_parquet_pairs_by_column(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"question": ["Q1", "Q2"], "good": ["A1", "A2"], "bad": ["B1", "B2"]})
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.rename(columns={"question": "prompt", "good": "chosen", "bad": "rejected"}).to_parquet(tmp_path / "p.parquet")
    mapped = check_files([str(tmp_path / "p.csv")], {"prompt": "question", "chosen": "good", "rejected": "bad"})
    plain = check_files([str(tmp_path / "p.parquet")])
    for report in (mapped, plain):
        assert not report.errors and [e.rejected for e in report.examples] == ["B1", "B2"]


BAD = [
    ({"prompt": "x", "chosen": "a"}, 'line 1: has "chosen" but no "rejected"'),
    ({"prompt": "x", "chosen": "  ", "rejected": "b"}, 'line 1: "chosen" is empty'),
    ({"prompt": "x", "chosen": "same", "rejected": "same "}, 'line 1: "chosen" and "rejected" are the same answer'),
    ({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
      "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}]},
     "line 1: the two prompts differ at message 0"),
    ({"input": {"messages": [{"role": "user", "content": "Q"}]}, "preferred_output": "A"},
     'line 1: has "preferred_output" but no "non_preferred_output"'),
]


@pytest.mark.parametrize("record, message", BAD)
def test_bad_pairs_are_named_by_line_and_field(write_jsonl, record, message):
    report = _report(write_jsonl, [record])
    assert report.errors and f"p.jsonl {message}" in str(report.errors[0]), report.errors


def test_one_label_kto_and_mixed_files_are_refused_naming_where(write_jsonl):
    one = _report(write_jsonl, [{"prompt": "q", "completion": "a", "label": True}] * 2)
    assert any("every unpaired example has label true" in str(e) for e in one.errors)
    mixed = _report(write_jsonl, [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                  {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    assert "p.jsonl line 2: a supervised (one answer) example in a file that began with preference pair" \
        in str(mixed.errors[0])


@pytest.mark.skipif(not (PEER_DATA / "dpo_en_demo.json").exists(), reason="needs ../shared/peer-data")
def test_llama_factory_peer_file_reads_all_its_pairs():
    report = check_files([str(PEER_DATA / "dpo_en_demo.json")])
    assert not report.errors and len(report.examples) == 300 and report.formats() == {"sharegpt pairs": 300}


def test_data_check_says_which_shape_was_read():
    done = subprocess.run([sys.executable, "-m", "studio.cli", "data", "check", str(PAIRS)], capture_output=True,
                          text=True, cwd=ROOT)
    assert "read as preference data: 56 pairs" in done.stdout, done.stdout + done.stderr


def test_data_check_token_counts_of_pairs(tiny_model):
    from engine.models import load_tokenizer
    from engine.data.pairs import pair_stats

    stats = pair_stats(load_examples(PAIRS), load_tokenizer(tiny_model), max_length=64, max_prompt_length=16)
    assert stats.pairs == 56 and stats.chosen_mean > 3 and stats.rejected_mean > 3
    assert 0 < stats.prompts_cut <= 56 and stats.pairs_cut > 0 and stats.tokens > 56 * 10


def test_data_of_the_wrong_shape_is_refused_before_launch(tiny_model, runs_dir, write_jsonl):
    unpaired = write_jsonl([{"prompt": "q", "completion": "a", "label": True},
                            {"prompt": "q", "completion": "b", "label": False}], "u.jsonl")
    cases = [(dict(data=str(SAMPLE / "train.jsonl"), objective="dpo"), "objective dpo: needs preference pairs"),
             (dict(data=str(PAIRS), objective="kto"), "set kto_from_pairs: true"),
             (dict(data=str(PAIRS)), "objective sft: this is preference data"),
             (dict(data=str(unpaired), objective="orpo"), "use objective kto for labels")]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message):
            create_run(RunConfig(model=tiny_model, **fields))
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # no run folder was made


def _pref_run(tiny_model, root, objective, steps=16, **kw):
    cfg = RunConfig(model=tiny_model, data=str(PAIRS), objective=objective, max_steps=steps, learning_rate=5e-3,
                    batch_size=8, max_length=128, max_prompt_length=64, save_steps=100,
                    kto_from_pairs=objective == "kto", **kw)
    run = train(cfg, root)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    return run


@pytest.mark.parametrize("objective", ["dpo", "orpo", "kto", "simpo"])
def test_each_objective_lowers_its_loss_and_raises_preference_accuracy(tiny_model, tmp_path, objective):
    run = _pref_run(tiny_model, tmp_path / "runs", objective)
    logged = run.logged()
    losses = [e.loss for e in logged]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    metrics = {k for e in logged for k in ("rewards_margin", "rewards_accuracy", "log_odds_ratio")
               if getattr(e, k) is not None}
    assert "rewards_margin" in metrics
    assert ("log_odds_ratio" in metrics) == (objective == "orpo")
    assert ("rewards_accuracy" in metrics) == (objective != "kto")
    assert all(e.tokens_per_s for e in logged[1:])  # ORPO's and SimPO's tokens are counted too
    acc = preference_accuracy(run, load_examples(PAIRS))
    assert acc.after > acc.before, acc
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-lora-{objective}-[0-9a-f]{{10}}", run.id), run.id


def test_dpo_with_an_adapter_keeps_one_copy_of_the_base_weights(tiny_model, tmp_path, monkeypatch):
    from engine.train import objectives as preference

    seen = {}
    real = preference.trainer_class

    def spying(objective):
        cls = real(objective)

        class Spy(cls):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                seen["trainer"] = self

        return Spy

    monkeypatch.setattr(preference, "trainer_class", spying)
    _pref_run(tiny_model, tmp_path / "runs", "dpo", steps=2)
    trainer = seen["trainer"]
    assert trainer.ref_model is None  # the reference is the policy with its adapter switched off
    model = trainer.model
    assert hasattr(model, "disable_adapter")
    base = [p for n, p in model.named_parameters() if "lora_" not in n]
    assert len({p.data_ptr() for p in base}) == len(base)
    from transformers import AutoModelForCausalLM

    alone = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert sum(p.numel() for p in base) == sum(p.numel() for p in alone.parameters())  # one copy, not two


def test_a_dpo_run_stopped_by_a_nan_resumes_from_its_checkpoint(tiny_model, tmp_path, monkeypatch):
    from engine.train import trainer

    monkeypatch.setenv("STUDIO_FAULT", "nan@5")
    cfg = RunConfig(model=tiny_model, data=str(PAIRS), objective="dpo", max_steps=8, learning_rate=5e-3,
                    batch_size=8, max_length=128, max_prompt_length=64, save_steps=2)
    run = train(cfg, tmp_path / "runs")
    assert run.status() == "failed" and "The loss became nan at step 5" in run.summary()["reason"]
    assert (run.dir / "checkpoints" / "checkpoint-4").exists()
    monkeypatch.delenv("STUDIO_FAULT")
    run.events.write("launched")
    trainer.main([str(run.dir / "config.yaml")])  # what Resume does, in this process
    steps = [e.step for e in run.logged()]
    assert run.status() == "finished" and steps[-4:] == [5, 6, 7, 8], steps


def test_sft_then_dpo_starts_from_the_sft_run_and_exports(tiny_model, tmp_path):
    from engine.export import archive as export
    from engine.train.runs import config_diff

    root = tmp_path / "runs"
    sft = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=4, learning_rate=1e-2,
                          batch_size=8, max_length=96, save_steps=100), root)
    dpo = _pref_run(tiny_model, root, "dpo", steps=6, init_from=sft.id)
    assert dpo.base_model == str(sft.dir / "merged") and (sft.dir / "merged" / "config.json").exists()
    diff = {row["field"]: row for row in config_diff([sft.id, dpo.id], root)}
    assert diff["init_from"][dpo.id] == sft.id and diff["objective"][dpo.id] == "dpo"
    acc = preference_accuracy(dpo, load_examples(HELD_BACK))
    assert acc.pairs == 12 and 0 <= acc.before <= 1
    merged = export.merge(dpo)  # the DPO adapter folded into the SFT-merged base
    assert (merged / "config.json").exists() and "started from run" in (merged / "README.md").read_text()
    with pytest.raises(ConfigError, match="init_from: there is no run nope"):
        create_run(RunConfig(model=tiny_model, data=str(PAIRS), objective="dpo", init_from="nope"), root)


def test_eval_reports_preference_accuracy_in_its_json_and_csv(tiny_model, tmp_path):
    import csv
    import os

    run = _pref_run(tiny_model, tmp_path / "runs", "orpo", steps=4)
    out = tmp_path / "summary.csv"
    done = subprocess.run([sys.executable, "-m", "studio.cli", "eval", run.id, "--limit", "2", "--summary-csv",
                           str(out)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "STUDIO_RUNS": str(run.dir.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Preference accuracy on 12 held-out pairs" in done.stdout
    saved = json.loads((run.dir / "eval.json").read_text())["preference"]
    assert saved["pairs"] == 12 and saved["file"] == "preference-eval.jsonl"
    rows = [r for r in csv.reader(out.open()) if r and r[0] == "preference"]
    assert [r[1] for r in rows] == ["base", "fine-tuned"] and float(rows[1][4]) == saved["after"]


def test_estimate_counts_the_reference_pass_and_the_doubled_sequences():
    from engine.advise.estimate import estimate_memory, flops_per_token
    from engine.models import shape_of
    from engine.models import DEFAULT_MODEL

    shape = shape_of(DEFAULT_MODEL)
    sft, dpo, orpo = (estimate_memory(shape, "lora", objective=o) for o in ("sft", "dpo", "orpo"))
    assert dpo.activations > orpo.activations > sft.activations  # two sequences, plus the reference's logits
    assert dpo.weights == sft.weights  # an adapter's reference is the base itself: no second copy
    assert estimate_memory(shape, "full", objective="dpo").weights > estimate_memory(shape, "full").weights
    assert flops_per_token(100, "lora", "dpo") == 3 * flops_per_token(100, "lora")


def test_the_forms_defaults_make_a_valid_run_for_every_objective():
    """The Train form's preset with only an objective chosen starts (prompts get half of max_length); a
    prompt limit that leaves the answers nothing is refused naming the field."""
    from engine.train.config import FORM_PRESET
    from engine.train.preflight import demo_limit as limit

    for objective in ("dpo", "orpo", "kto", "simpo"):
        cfg = RunConfig.preset(FORM_PRESET, objective=objective, data=[str(PAIRS)])
        assert cfg.prompt_limit == cfg.max_length // 2 > 0
        assert limit(cfg).prompt_limit < limit(cfg).max_length  # the public demo's caps keep it valid
    assert RunConfig(data=[str(PAIRS)], objective="dpo", max_length=2048, max_prompt_length=300).prompt_limit == 300
    with pytest.raises(ConfigError, match="max_prompt_length: 256 leaves no room for the answers within max_length 256"):
        RunConfig(data=[str(PAIRS)], objective="dpo", max_length=256, max_prompt_length=256)


def test_long_prompts_are_cut_to_max_prompt_length_from_their_start(tiny_model):
    from engine.models import load_tokenizer
    from engine.data.pairs import fit_prompt

    tok = load_tokenizer(tiny_model)
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "old question " * 30},
             {"role": "assistant", "content": "old answer " * 30}, {"role": "user", "content": "the real one " * 40}]
    cut = fit_prompt(turns, tok, 48)
    assert cut[0] == turns[0] and len(cut) == 2 and cut[1]["content"].endswith("the real one ")
    size = len(tok.apply_chat_template(cut, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    assert size <= 48
    assert fit_prompt(turns[:2], tok, 10_000) == turns[:2]  # a prompt that fits is left alone


def test_probe_runs_a_preference_objective_and_refuses_sft_data_for_it(tiny_model, runs_dir):
    from engine.advise.probe import probe

    rows = probe(tiny_model, str(PAIRS), ["lora+dpo"], steps=2, max_length=96)
    assert rows[0]["method"] == "lora+dpo" and rows[0]["status"] == "finished", rows
    assert rows[0]["tokens_per_s"] and rows[0]["peak_memory_gb"]
    refused = probe(tiny_model, str(SAMPLE / "train.jsonl"), ["lora+orpo"], steps=2, max_length=96)
    assert refused[0]["status"] == "refused" and "needs preference pairs" in refused[0]["reason"]
