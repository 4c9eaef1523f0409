"""`studio decide` (studio/decide.py): the budget too small is one sentence before anything trains, and a
stop asked while a run trains ends the measurement with the run stopped and the report saying so. The
whole measurement, to the grid, is run from the Method tab in tests/test_browser_documents.py; the verdict
logic is checked here on rows whose differences are known."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.advise.decisions import Decision, list_decisions
from engine.train.runs import list_runs
from studio.cli import main
from studio.decide import grid, verdict

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "assets" / "sample" / "docs"


def _decide(tmp_path, *args, env=None, **popen):
    env = {**os.environ, "STUDIO_RUNS": str(tmp_path / "runs"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "studio.cli", "decide", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_budget_too_small_to_train_is_one_sentence_and_nothing_trains(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_RUNS", str(tmp_path / "runs"))
    # 30 ms: less than writing the pairs takes on any machine, so nothing is left to train in
    code = main(["decide", str(DOCS / "03-battery.md"), "--model", tiny_model, "--budget-minutes", "0.0005"])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(said) == 1, err
    said = said[0]
    assert code == 2 and said.startswith("error: a budget of 0.0005 minutes is too small to train"), err
    assert said.endswith("raise --budget-minutes.") and "Traceback" not in err
    assert not list_runs(tmp_path / "runs")  # nothing trained
    (d,) = list_decisions(root=tmp_path / "runs")
    assert d.report()["status"] == "failed" and (d.folder / "data" / "pairs.jsonl").exists()  # the pairs are kept


def test_a_stop_during_training_stops_the_run_and_the_report_says_what_was_measured(tiny_model, tmp_path):
    docs = [str(DOCS / name) for name in ("01-company.md", "02-tilly-t2.md", "03-battery.md")]
    # every step lasts a second (the fault hook the Stop tests use), so the stop lands while the plain run trains
    proc = _decide(tmp_path, *docs, "--model", tiny_model, "--budget-minutes", "30", env={"STUDIO_FAULT": "slow@1"})
    try:
        deadline = time.monotonic() + 240
        while True:
            found = list_decisions(root=tmp_path / "runs") if (tmp_path / "runs").exists() else []
            if found and found[0].progress().get("stage") == "train plain" and list_runs(tmp_path / "runs"):
                break
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the measurement did not reach training"
            time.sleep(0.3)
        found[0].ask_stop()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    d = Decision(found[0].folder)
    report = d.report()
    assert proc.returncode == 130, err[-2000:]
    assert report["status"] == "stopped" and report["verdict"]["sentence"].startswith("Stopped during train plain")
    (run,) = list_runs(tmp_path / "runs")  # the RAFT run never started
    assert run.status() == "stopped" and report["runs"] == {"fine-tuned": run.id}
    assert "train plain" in report["times"] and "# Fine-tune, RAG, or both?" in d.markdown()


def _rows(scores: dict[str, list[float]]) -> list[dict]:
    return [{"question": f"q{i}", "column": column, "f1": value}
            for column, values in scores.items() for i, value in enumerate(values)]


def test_the_verdict_names_an_option_only_when_its_interval_clears_the_other_two():
    n = 20
    low, high = [0.1 + 0.01 * (i % 3) for i in range(n)], [0.8 + 0.01 * (i % 3) for i in range(n)]
    seen = {f"q{i}": i % 2 == 0 for i in range(n)}
    # retrieval helps, fine-tuning does not: RAG
    rows = _rows({"base": low, "base + RAG": high, "fine-tuned": low, "RAFT": low,
                  "fine-tuned + RAG": low, "RAFT + RAG": low})
    v = verdict(rows, grid(rows, seen))
    assert v["choice"] == "RAG" and v["sentence"].startswith("RAG: base + RAG scores 0.81")
    # fine-tuning with retrieval beats both alone: both
    mid = [0.5 + 0.01 * (i % 3) for i in range(n)]
    rows = _rows({"base": low, "base + RAG": mid, "fine-tuned": mid, "RAFT": low,
                  "fine-tuned + RAG": low, "RAFT + RAG": high})
    assert verdict(rows, grid(rows, seen))["choice"] == "both"
    # two options no different on these questions: cannot tell, and the simpler one named
    noisy = [0.8 if i % 2 else 0.2 for i in range(n)]
    other = [0.2 if i % 2 else 0.8 for i in range(n)]
    rows = _rows({"base": low, "base + RAG": noisy, "fine-tuned": other, "RAFT": low,
                  "fine-tuned + RAG": low, "RAFT + RAG": low})
    v = verdict(rows, grid(rows, seen))
    assert v["choice"] == "cannot tell" and "include no difference" in v["sentence"]
    table = grid(rows, seen)
    assert table["base"]["seen"]["n"] == 10 and table["base"]["unseen"]["n"] == 10
    assert json.dumps(v)  # the report is JSON
