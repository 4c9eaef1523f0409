"""GRPO (issue 29): prompt data in the shapes people have, checked by line; the settings refused before a run;
a run on the tiny model with its per-function rewards, samples, NaN stop and resume; the reward of a run on
held-out prompts before and after; `studio data check --objective grpo`. The rewards themselves are
tests/test_rewards.py; the browser walk Data -> Train (GRPO) -> Compare is in tests/test_browser_objectives.py."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from conftest import ROOT, SAMPLE, train
from engine.data.dataset import check_files, load_examples
from engine.data.prompts import missing_references, prompt_stats, rows
from engine.train.config import ConfigError, RunConfig
from engine.train.preflight import create_run

STUDIO = str(ROOT / ".venv" / "bin" / "studio")
SUMS = SAMPLE / "grpo.jsonl"
REWARDS = [{"kind": "format", "preset": "answer_tags"}, {"kind": "numeric", "weight": 2.0}]


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) if isinstance(lines, list) else lines)
    return path


def test_prompts_are_read_in_the_shapes_people_have(tmp_path):
    shapes = [{"prompt": "What is 2 + 2?", "answer": "4"},
              {"prompt": "What is 3 + 3?", "solution": "6"},
              {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1 + 1?"}],
               "ground_truth": 2},
              {"prompt": "Name a colour."}]
    exs = load_examples(_write(tmp_path, "p.jsonl", shapes), objective="grpo")
    assert [e.kind for e in exs] == ["prompts"] * 4
    assert [e.reference for e in exs] == ["4", "6", "2", None]
    assert exs[2].prompt[0] == {"role": "system", "content": "Be brief.", "weight": None}
    assert missing_references(exs) == "p.jsonl line 4"
    chat = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                          {"role": "user", "content": "What is 5 + 5?"}], "answer": "10"}]
    exs = load_examples(_write(tmp_path, "c.jsonl", chat), objective="grpo")
    assert exs[0].kind == "prompts" and exs[0].reference == "10" and len(exs[0].prompt) == 3
    table = _write(tmp_path, "t.csv", "question,expected\nWhat is 7 + 1?,8\n")
    exs = load_examples(table, {"prompt": "question", "answer": "expected"}, objective="grpo")
    assert exs[0].prompt[-1]["content"] == "What is 7 + 1?" and exs[0].reference == "8"
    assert rows(exs) == [{"prompt": [{"role": "user", "content": "What is 7 + 1?"}], "answer": "8"}]


def test_supervised_examples_give_their_prompt_and_their_answer_as_the_reference():
    exs = load_examples(SAMPLE / "train.jsonl", objective="grpo")
    row = rows(exs[:1])[0]
    assert row["prompt"][-1]["role"] == "user" and row["answer"] == exs[0].messages[-1]["content"]


@pytest.mark.parametrize("lines, objective, expected", [
    ([{"prompt": "  ", "answer": "1"}], "grpo", "p.jsonl line 1: \"prompt\" is empty."),
    ([{"prompt": "q?", "answer": "1"}, {"prompt": "q2?", "answer": " "}], "grpo",
     "p.jsonl line 2: \"answer\" is empty; leave it out when a prompt has no reference answer."),
    ([{"messages": [{"role": "user", "content": "q?"}]}], "sft", "p.jsonl line 1: the conversation has no "
                                                                 "assistant message."),
    ([{"messages": [{"role": "user", "content": "q?"}]}], None, "read with objective grpo"),
])
def test_bad_prompt_lines_are_named(tmp_path, lines, objective, expected):
    report = check_files([_write(tmp_path, "p.jsonl", lines)], objective=objective)
    assert report.errors and expected in str(report.errors[0]), report.lines()


def test_prompt_statistics_count_prompts_over_the_budget(tiny_model):
    from engine.models import load_tokenizer

    long = load_examples(SUMS)[:3]
    stats = prompt_stats(long, load_tokenizer(tiny_model), prompt_limit=10)
    assert stats.prompts == 3 and stats.over == 3 and stats.with_reference == 3 and stats.longest > 10
    assert "3 prompts over the prompt budget of 10 tokens" in "\n".join(stats.lines(10, 48))


@pytest.mark.parametrize("change, expected", [
    ({"rewards": []}, "rewards: objective grpo needs at least one reward function"),
    ({"num_generations": 3}, "num_generations: 3 must divide the completions per step, batch_size x grad_accum "
                             "x processes = 4"),
    ({"max_completion_length": 300}, "max_completion_length: 300 leaves no room for the prompt"),
    ({"max_prompt_length": 200, "max_completion_length": 100}, "max_prompt_length: 200 prompt + 100 completion "
                                                                "tokens is over max_length 256"),
    ({"rewards": [{"kind": "shout"}]}, "rewards: 'shout' is not a reward kind"),
    ({"rewards": "[oops"}, "rewards: not valid YAML"),
])
def test_settings_that_cannot_work_are_refused_before_a_run(change, expected):
    values = dict(objective="grpo", rewards=REWARDS, batch_size=4, num_generations=2, max_length=256)
    with pytest.raises(ConfigError, match="^" + expected.replace("(", r"\(").replace("+", r"\+")):
        RunConfig(**{**values, **change})


def test_create_run_refuses_references_the_data_lacks_and_custom_rewards_from_the_page(tmp_path, runs_dir):
    data = _write(tmp_path, "p.jsonl", [{"prompt": "a?", "answer": "1"}, {"prompt": "b?"}])
    cfg = RunConfig(objective="grpo", data=[str(data)], rewards=REWARDS, num_generations=2)
    with pytest.raises(ConfigError, match=r"^rewards: numeric compares with a reference answer, and p.jsonl line 2 "
                                          r"has none"):
        create_run(cfg)
    reward = tmp_path / "mine.py"
    reward.write_text("def score(text, reference):\n    return 1.0\n")
    cfg = RunConfig(objective="grpo", data=[str(SUMS)], rewards=[{"kind": "custom", "path": f"{reward}:score"}],
                    num_generations=2)
    with pytest.raises(ConfigError, match="never from the web page"):
        create_run(cfg, from_page=True)
    with pytest.raises(ConfigError, match="^objective sft: this data holds prompts without answers"):
        create_run(RunConfig(data=[str(SUMS)]))
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert create_run(cfg).dir.is_dir()  # the same config from YAML or the CLI is taken


def _grpo(tiny_model, **kw):
    values = dict(model=tiny_model, data=[str(SUMS)], objective="grpo", rewards=REWARDS + [
        {"kind": "length", "target": 4, "weight": 0.5}], batch_size=4, num_generations=2, max_length=96,
        max_completion_length=12, max_steps=6, learning_rate=5e-3, save_steps=2, sample_every=2, report_to=[])
    return RunConfig(**{**values, **kw})


def test_a_grpo_run_logs_each_reward_at_every_step_and_stops_on_a_nan_and_resumes(tiny_model, tmp_path,
                                                                                   monkeypatch):
    from engine.infer.rollouts import ExecutorRollouts
    from engine.train.runs import config_diff, metrics, samples
    from studio import train_process

    checked = []  # the executor samples from the prompts exactly as trl's own path tokenizes them
    own = ExecutorRollouts.prompt_ids

    def compared(self, prompts, trainer):
        ids = own(self, prompts, trainer)
        checked.append(ids == [list(p) for p in trainer._tokenize_prompts(prompts)[0]])
        return ids

    monkeypatch.setattr(ExecutorRollouts, "prompt_ids", compared)
    monkeypatch.setenv("STUDIO_FAULT", "nan@5")
    run = train(_grpo(tiny_model, precision="fp32"), tmp_path / "runs")
    assert run.status() == "failed" and "The loss became nan at step 5" in run.summary()["reason"]
    assert run.state().started.rollouts == "the studio's executor" and checked and all(checked)
    logged = run.logged()
    assert [e.step for e in logged] == [1, 2, 3, 4, 5]
    for e in logged[:4]:
        assert math.isfinite(e.loss)
        assert set(e.reward_functions) == {"format", "numeric", "length"}
        assert all(0 <= mean <= 1 for mean, _std in e.reward_functions.values())
        # the total is the weighted sum of the functions' means
        assert e.reward == pytest.approx(sum(w * e.reward_functions[n][0] for n, w in
                                             (("format", 1), ("numeric", 2), ("length", 0.5))), abs=1e-4)
        assert 0 < e.generate_share < 1 and e.completion_length > 0
    assert (run.dir / "checkpoints" / "checkpoint-4").exists()
    shown = samples(run)
    assert shown and shown[0]["step"] == 4 and {"prompt", "completion", "reference", "rewards"} <= set(shown[0])
    assert "What is" in shown[0]["prompt"] and shown[0]["reference"].isdigit()
    series = {r["series"] for r in metrics(run)["grpo_reward"]}
    assert {"total", "format", "numeric", "length"} <= series
    monkeypatch.delenv("STUDIO_FAULT")
    run.events.write("launched")
    train_process.main([str(run.dir / "config.yaml")])  # what Resume does, in this process
    steps = [e.step for e in run.logged()]
    assert run.status() == "finished" and steps[-2:] == [5, 6], steps
    assert (run.dir / "adapter" / "adapter_config.json").exists()
    other = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=1, batch_size=8,
                            max_length=64, report_to=[]), tmp_path / "runs")
    diff = {row["field"]: row for row in config_diff([run.id, other.id], tmp_path / "runs")}
    assert diff["objective"][run.id] == "grpo" and "numeric" in diff["rewards"][run.id]


def test_the_executor_samples_the_weights_being_trained(tiny_model, tmp_path, monkeypatch):
    """The executor's rollouts follow the trained LoRA weights: the log-probability it gives each token it
    samples is the trained model's own, before and after the weights change (and stale until it syncs)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.infer.batching import Request
    from engine.infer.rollouts import ExecutorRollouts, why_not
    from engine.models import load_causal_lm, load_tokenizer

    cfg = _grpo(tiny_model, precision="fp32")
    assert why_not(cfg) is None
    assert "method dora" in why_not(_grpo(tiny_model, method="dora"))
    assert "precision bf16" in why_not(_grpo(tiny_model, precision="bf16", force_precision=True))
    monkeypatch.setenv("STUDIO_GRPO_EXECUTOR", "0")
    assert why_not(cfg) == "STUDIO_GRPO_EXECUTOR=0"
    monkeypatch.delenv("STUDIO_GRPO_EXECUTOR")
    model = get_peft_model(load_causal_lm(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0)).eval()
    tok = load_tokenizer(tiny_model)
    ids = list(tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                       return_dict=True)["input_ids"])
    rollouts = ExecutorRollouts(cfg, tiny_model)

    def gap() -> float:
        """The largest difference between the executor's log-probabilities of its sampled tokens and the
        trained model's."""
        answer = rollouts.chat.generate_many([Request([], True, 8, temperature=1.0, ids=list(ids), raw=True,
                                                      suppress_special=False, repetition_penalty=1.0, seed=7,
                                                      logprobs=0)])[0]
        seq = torch.tensor([ids + answer.token_ids])
        with torch.no_grad():
            logps = torch.log_softmax(model(seq).logits[0, len(ids) - 1:-1].float(), -1)
        own = logps.gather(1, torch.tensor(answer.token_ids)[:, None])[:, 0]
        return float((own - torch.tensor([t.logprob for t in answer.logprobs])).abs().max())

    def change_weights(seed: int) -> None:
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.normal_(0, 0.2)

    change_weights(0)
    rollouts.sync(model)
    assert gap() < 1e-3
    change_weights(1)
    assert gap() > 1e-2  # the executor still holds step 0's weights: a test that could fail
    rollouts.sync(model)
    assert gap() < 1e-3


@pytest.mark.parametrize("method, output", [("dora", "adapter"), ("full", "model")])
def test_grpo_trains_other_weights_too(tiny_model, tmp_path, method, output):
    run = train(_grpo(tiny_model, method=method, max_steps=2, save_steps=100), tmp_path / "runs")
    assert run.status() == "finished", run.summary()["reason"]
    assert run.state().started.rollouts == "transformers' generate"  # the executor follows plain LoRA only
    assert all(math.isfinite(e.loss) and e.reward_functions for e in run.logged())
    assert (run.dir / output / "config.json").exists() or (run.dir / output / "adapter_config.json").exists()


def test_the_reward_before_and_after_comes_with_intervals(tiny_model, tmp_path):
    from engine.infer.reward_scores import RewardScoreError, reward_scores

    run = train(_grpo(tiny_model, max_steps=2), tmp_path / "runs")
    assert run.status() == "finished"
    held = load_examples(SAMPLE / "grpo-eval.jsonl", objective="grpo")[:4]
    report = reward_scores(run, held)
    assert report.prompts == 4 and len(report.answers["base"]) == 4
    rows = report.rows()
    assert [r["model"] for r in rows] == ["base (adapter off)", f"fine-tuned ({run.id})"]
    for r, column in zip(rows, report.columns.values()):
        assert column["low"] <= column["total"] <= column["high"]
        assert set(r) >= {"total reward", "95% interval", "format", "numeric", "length"}
    before, after, low, high = report.change
    assert low <= after - before <= high and "held-out prompts" in report.sentence()
    sft = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=1, batch_size=8,
                          max_length=64, report_to=[]), tmp_path / "runs")
    with pytest.raises(RewardScoreError, match="objective sft; rewards score a grpo run"):
        reward_scores(sft, held)


def test_studio_data_check_reads_prompts_as_grpo_will(tmp_path, tiny_model):
    out = subprocess.run([STUDIO, "data", "check", str(SUMS), "--objective", "grpo", "--model", tiny_model,
                          "--max-length", "64", "--max-completion-length", "48"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "64 examples (64 prompts)" in out.stdout and "every prompt has a reference answer" in out.stdout
    assert "prompts over the prompt budget of 16 tokens" in out.stdout
    chat = _write(tmp_path, "chat.jsonl", [{"messages": [{"role": "user", "content": "2 + 2?"}]}])
    out = subprocess.run([STUDIO, "data", "check", str(chat), "--objective", "sft"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "chat.jsonl line 1: the conversation has no assistant message." in out.stdout


def test_the_method_tab_recommends_grpo_for_a_checkable_skill_prices_its_sampling_and_probes_it(tiny_model,
                                                                                                 runs_dir):
    from engine.advise import advisor
    from engine.advise.estimate import OBJECTIVE_COST, OBJECTIVE_NOTES, flops_per_token
    from engine.advise.probe import probe

    assert advisor.recommend_objective(["skill"]) == "grpo"
    assert advisor.recommend_objective(["skill", "pairs"]) == "dpo"
    rows = {r["objective"]: r for r in advisor.preference_rows(["skill"])}
    assert rows["grpo"]["fits"] and not rows["dpo"]["fits"] and rows["grpo"]["takes"].startswith("prompts")
    assert flops_per_token(10**8, "lora", "grpo") == pytest.approx(
        flops_per_token(10**8, "lora") * OBJECTIVE_COST["grpo"][1])
    assert "samples its answers" in OBJECTIVE_NOTES["grpo"]
    (row,) = probe(tiny_model, str(SAMPLE / "train.jsonl"), ["lora+grpo"], steps=2, max_length=96)
    assert row["status"] == "finished", row
    assert row["tokens_per_s"] > 0 and row["peak_memory_gb"] > 0.1
