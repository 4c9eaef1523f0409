"""The run history: read from the run folders (so a restarted app shows it), curves to overlay, config diffs."""

from conftest import SAMPLE, train
from engine.config import RunConfig
from engine.runs import config_diff, create_run, curves, history


def test_history_lists_runs_newest_first_with_their_outcome_and_survives_a_new_process(tiny_model, runs_dir):
    import subprocess
    import sys

    first = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=4, max_length=64,
                            save_steps=100))
    second = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), method="dora",
                                  learning_rate=1e-3, max_length=64))  # never launched
    rows = history()
    assert [r["run"] for r in rows] == [second.id, first.id]
    done = rows[1]
    assert done["status"] == "finished" and done["method"] == "lora" and done["data"] == "train.jsonl"
    assert done["steps"] == 4 and done["final loss"] == round(first.logged()[-1]["loss"], 4)
    assert rows[0]["status"] == "created" and rows[0]["steps"] == 0 and rows[0]["final loss"] is None
    again = subprocess.run([sys.executable, "-c", "from engine.runs import history; "
                            "print([r['run'] for r in history()])"], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == str([second.id, first.id])  # what a restarted app reads

    points = curves([first.id, second.id])
    assert {p["run"] for p in points} == {first.id} and [p["step"] for p in points] == [1, 2, 3, 4]
    diff = {row["field"]: row for row in config_diff([first.id, second.id])}
    assert set(diff) == {"method", "learning_rate", "max_steps", "save_steps"}
    assert diff["method"][first.id] == "lora" and diff["method"][second.id] == "dora"
