"""The run history: read from the run folders (so a restarted app shows it), curves to overlay, config diffs."""

from conftest import SAMPLE, train
from engine.train.config import RunConfig
from engine.train.runs import config_diff, curves, history
from engine.train.preflight import create_run


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
    assert done["steps"] == 4 and done["final loss"] == round(first.logged()[-1].loss, 4)
    assert rows[0]["status"] == "created" and rows[0]["steps"] == 0 and rows[0]["final loss"] is None
    again = subprocess.run([sys.executable, "-c", "from engine.train.runs import history; "
                            "print([r['run'] for r in history()])"], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == str([second.id, first.id])  # what a restarted app reads

    points = curves([first.id, second.id])
    assert {p["run"] for p in points} == {first.id} and [p["step"] for p in points] == [1, 2, 3, 4]
    diff = {row["field"]: row for row in config_diff([first.id, second.id])}
    assert set(diff) == {"method", "learning_rate", "max_steps", "save_steps"}
    assert diff["method"][first.id] == "lora" and diff["method"][second.id] == "dora"


def test_smoothing_follows_tensorboard_and_keeps_the_first_value():
    from engine.train.runs import smoothed

    assert smoothed([4.0, 2.0, 2.0], 0.0) == [4.0, 2.0, 2.0]
    out = smoothed([4.0, 2.0, 2.0], 0.5)
    assert out[0] == 4.0  # the start-up correction: no pull towards zero
    assert abs(out[1] - (0.5 * 2.0 + 0.25 * 4.0) / 0.75) < 1e-9 and out[2] < out[1] < 4.0


def test_the_train_tab_plots_raw_smoothed_and_eval_loss_learning_rate_and_speed(tiny_model, runs_dir):
    from engine.train.runs import metrics

    run = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=6, max_length=64,
                          val_fraction=0.2, eval_steps=3, save_steps=100, learning_rate=1e-3))
    m = metrics(run, smoothing=0.6)
    series = {s: [r for r in m["loss"] if r["series"] == s] for s in ("train", "train, smoothed", "eval")}
    assert [r["step"] for r in series["train"]] == [1, 2, 3, 4, 5, 6] == [r["step"] for r in series["train, smoothed"]]
    assert [r["step"] for r in series["eval"]] == [3, 6] and all(r["value"] > 0 for r in series["eval"])
    raw = [r["value"] for r in series["train"]]
    assert [r["value"] for r in series["train, smoothed"]] != raw and series["train, smoothed"][0]["value"] == raw[0]
    lr = [r["value"] for r in m["learning_rate"]]
    assert len(lr) == 6 and max(lr) <= 1e-3 and lr[0] != lr[-1]  # the schedule, as the trainer logged it
    assert len(m["tokens_per_s"]) == 6 and all(r["value"] > 0 for r in m["tokens_per_s"])
    assert run.summary()["memory_mb"] > 50  # peak memory of the training process, shown on the Train tab


def test_the_train_tabs_timer_sends_only_what_changed(tiny_model, runs_dir):
    """Each second, each open page polls its run: a page on a finished run sends nothing after its first
    drawing; a new event or another smoothing redraws the plots, and the status line only when it changed."""
    import gradio as gr
    import pandas as pd

    from ui.train_tab import poll_view

    run = train(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=3, max_length=64,
                          save_steps=100))
    text, loss, *rest, seen = poll_view(run.id, 0.6, None)
    assert "finished · step 3/3" in text and isinstance(loss, pd.DataFrame) and len(loss) == 6  # raw + smoothed
    again = poll_view(run.id, 0.6, seen)
    assert list(again[:-1]) == [gr.skip()] * 13 and again[-1] == seen
    text2, loss2, *_ = poll_view(run.id, 0.0, seen)  # another smoothing: the plots, not the same status line
    assert text2 == gr.skip() and isinstance(loss2, pd.DataFrame)
    with run.events.path.open("a") as f:  # the trainer writes an event: the plots are drawn again
        f.write(run.events.path.read_text().splitlines()[-1] + "\n")
    assert isinstance(poll_view(run.id, 0.6, seen)[1], pd.DataFrame)
