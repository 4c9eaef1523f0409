"""Benchmarks before and after through the evaluation harness (lm-eval): its `local-completions` model
against a live `studio serve` scores a multiple-choice and a generation task as the harness's own
in-process model does; `studio eval RUN --tasks` prints the table with intervals and the forgetting line."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE, train
from engine.infer import benchmarks
from engine.infer.batching import run_here
from engine.infer.serve import load_models, start
from engine.train.config import RunConfig
from engine.train.distributed import free_port

pytest.importorskip("lm_eval")
LIMIT = 6  # documents per task: enough for every kind of request, seconds on the tiny model


@pytest.fixture(scope="module")
def run(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=6, learning_rate=1e-2,
                           batch_size=8, max_length=96, save_steps=100), root)
    assert made.status() == "finished", (made.dir / "train.log").read_text()[-3000:]
    return made


def _values(results: dict, task: str) -> dict[str, float]:
    return {k: v for k, v in results["results"][task].items() if isinstance(v, float) and "stderr" not in k}


def test_the_endpoint_scores_as_the_harness_in_process_does(run, monkeypatch):
    monkeypatch.setenv("STUDIO_GENERATE_PRECISION", "fp32")  # the in-process harness scores in fp32
    tasks = ["zorvane_mc", "zorvane_qa"]  # multiple choice (log-likelihoods) and generation (greedy answers)
    include = benchmarks.task_folder()
    models = load_models([run.id], root=run.dir.parent)
    port = free_port()
    server = start(models, port=port)
    try:
        served = run_here(benchmarks.through_endpoint, f"http://127.0.0.1:{port}/v1", run.id, str(run.weights),
                          tasks, include, LIMIT)
    finally:
        server.should_exit = True
    here = benchmarks.in_process(run.base_model, str(run.adapter), tasks, include, LIMIT)
    for task in tasks:
        got, want = _values(served, task), _values(here, task)
        assert got and got == pytest.approx(want, abs=1e-6), (task, got, want)
    mc = served["samples"]["zorvane_mc"]
    assert len(mc) == LIMIT and all(len(s["resps"]) == 4 for s in mc)  # four choices scored each
    qa = served["samples"]["zorvane_qa"]
    assert all(isinstance(s["resps"][0][0], str) for s in qa)  # generated answers
    assert [s["resps"][0][0] for s in qa] == [s["resps"][0][0] for s in here["samples"]["zorvane_qa"]]


def test_studio_eval_tasks_prints_before_after_with_intervals_and_forgetting(run, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "STUDIO_RUNS": str(run.dir.parent), "STUDIO_GENERATE_PRECISION": "fp32"}
    proc = subprocess.run([sys.executable, "-m", "studio.cli", "eval", run.id, "--tasks", "zorvane_mc,general_mc",
                           "--limit", str(LIMIT), "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| zorvane_mc | acc | 0 |" in proc.stdout and "Forgetting" in proc.stdout
    assert "general_mc acc:" in proc.stdout and "0-shot, prompt 'Question: {{question}}\\nAnswer:'" in proc.stdout
    report = json.loads(out.read_text())
    for side in ("base", "fine-tuned"):
        for s in report["scores"][side]:
            assert s["low"] <= s["value"] <= s["high"] and s["n"] == LIMIT
    assert {c["task"] for c in report["forgetting"]} == {"general_mc"}


def test_unknown_tasks_and_a_run_without_weights_are_one_sentence(run, tmp_path):
    with pytest.raises(benchmarks.BenchmarkError, match="nope not found; the tasks here are .*general_mc"):
        benchmarks._harness("hf", {}, ["nope"], benchmarks.task_folder(), 1)
    with pytest.raises(benchmarks.BenchmarkError, match="is not a folder of task YAML files"):
        benchmarks.task_folder(tmp_path / "missing")


def test_the_paired_interval_follows_the_documents():
    b, a, low, high = benchmarks.paired_change({i: 0.0 for i in range(40)}, {i: 1.0 for i in range(40)})
    assert (b, a, low, high) == (0.0, 1.0, 1.0, 1.0)
    mixed = {i: float(i % 2) for i in range(40)}
    _, _, low, high = benchmarks.paired_change(mixed, {i: float((i + 1) % 2) for i in range(40)})
    assert low < 0 < high  # half better, half worse: no change the documents can tell


def test_a_task_with_four_until_strings_runs_through_the_endpoint(run, tmp_path):
    """Issue 41: the harness adds its own end-of-text string to a task's `until` list; with four of them the
    server refused five stops ("stop: at most 4 sequences.") and the harness raised HTTPError 400."""
    import shutil

    import yaml

    task = yaml.safe_load((ROOT / "assets" / "tasks" / "zorvane_qa.yaml").read_text())
    task["task"] = "four_stops"
    task["generation_kwargs"]["until"] = ["\n", "Question:", "</s>", "Short answer:"]
    (tmp_path / "four_stops.yaml").write_text(yaml.safe_dump(task))
    shutil.copy(ROOT / "assets" / "tasks" / "zorvane_qa.jsonl", tmp_path / "zorvane_qa.jsonl")
    models = load_models([run.id], root=run.dir.parent)
    port = free_port()
    server = start(models, port=port)
    try:
        served = run_here(benchmarks.through_endpoint, f"http://127.0.0.1:{port}/v1", run.id, str(run.weights),
                          ["four_stops"], benchmarks.task_folder(tmp_path), LIMIT)  # its data file made absolute
    finally:
        server.should_exit = True
    answers = [s["resps"][0][0] for s in served["samples"]["four_stops"]]
    assert len(answers) == LIMIT and all(isinstance(a, str) and "Question:" not in a for a in answers)
