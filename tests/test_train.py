"""Real LoRA training with trl/peft on a tiny model, in its own process, as the UI runs it."""

import os
import time
from pathlib import Path

import pytest
import torch

from conftest import SAME_ORDER, SAMPLE, relative_error, train as _train, train_process, training, wait_for as _wait
from engine.train.config import RunConfig
from engine.train.runs import Run, launch, list_runs, stop
from engine.train.preflight import create_run


def _losses(run):
    return [r.loss for r in run.logged()]


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=40, learning_rate=1e-2,
                    batch_size=8, save_steps=20, max_length=128)
    run = create_run(cfg, root)
    launch(run)
    assert _wait(run) == "finished", (run.dir / "train.log").read_text()
    return run


def test_loss_goes_down(finished_run):
    losses = _losses(finished_run)
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)  # seeded: 9.9 -> 6.0 on this model


def test_events_carry_progress_and_end_finished(finished_run):
    records = finished_run.events.read()
    kinds = [r["event"] for r in records]
    assert kinds[:2] == ["launched", "started"] and kinds[-1] == "finished"
    assert "checkpoint" in kinds
    last = finished_run.logged()[-1]
    assert last.step == last.total_steps == 40
    assert last.tokens_per_s > 0 and last.eta_s == 0
    assert (finished_run.dir / "config.yaml").exists()


def test_adapter_reloads_and_changes_the_output(finished_run, tiny_model):
    from engine.infer.chat import ChatModel

    chat = ChatModel(tiny_model, finished_run.adapter)
    ids = chat.tokenizer.apply_chat_template([{"role": "user", "content": "How heavy is the Tilly T2?"}],
                                             add_generation_prompt=True, return_tensors="pt",
                                             return_dict=True).to(chat.device)
    with torch.no_grad():
        tuned = chat.model(**ids).logits
        with chat.model.disable_adapter():
            base = chat.model(**ids).logits
    assert relative_error(tuned, base) > 10 * SAME_ORDER  # training moved them
    # one set of weights: the adapter is switched, not a second model loaded
    assert sum(1 for n, _ in chat.model.named_parameters() if "lora_" in n) > 0
    answer = chat.generate([{"role": "user", "content": "How heavy is the Tilly T2?"}], max_new_tokens=8)
    assert answer.answer_tokens > 0 and answer.seconds > 0


def test_stop_ends_the_run_quickly_and_keeps_a_checkpoint(tiny_model, runs_dir):
    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=100000, save_steps=5,
                    batch_size=2, max_length=64)
    run = training(cfg, steps=8, timeout=120)
    assert stop(run) == "stopped"
    assert "is saved, and Resume continues from it" in run.summary()["reason"]  # finished the step, not killed
    assert run.adapter is not None
    assert list((run.dir / "checkpoints").glob("checkpoint-*"))
    assert [r.id for r in list_runs()] == [run.id]


def test_a_second_run_waits_in_the_queue_and_starts_when_the_first_ends(tiny_model, runs_dir):
    from engine.train.runs import queue_position

    cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=100000, max_length=64)
    first, second, third = create_run(cfg), create_run(cfg), create_run(cfg)
    launch(first)
    deadline = time.time() + 120
    while not first.logged() and time.time() < deadline:
        time.sleep(0.2)
    launch(second)
    launch(third)
    while not any(r["event"] == "queued" for r in third.events.read()) and time.time() < deadline:
        time.sleep(0.2)
    try:
        assert (first.status(), second.status(), third.status()) == ("running", "queued", "queued")
        assert (queue_position(second), queue_position(third)) == (1, 2)
        assert third.summary()["queue_position"] == 2
        from ui.train_tab import run_view  # what the Train tab shows to the person waiting

        text, *_ = run_view(second.id)
        assert f"queued, position 1: run {first.id} is training" in text
        assert stop(third) == "stopped"  # leaving the queue trains nothing
        assert "waiting in the queue" in third.summary()["reason"] and third.adapter is None
        stop(first)
        while not second.logged() and time.time() < deadline + 60:
            time.sleep(0.2)
        assert second.status() == "running" and first.status() == "stopped"
    finally:
        stop(first), stop(second), stop(third)


def test_bad_data_fails_with_the_line(tiny_model, runs_dir, write_jsonl):
    bad = write_jsonl(['{"messages": [{"role": "user", "content": "x"}]}'])
    run = create_run(RunConfig(model=tiny_model, data=str(bad), max_steps=2))
    launch(run)
    assert _wait(run) == "failed"
    reason = run.summary()["reason"]
    assert reason == "data.jsonl line 1: the conversation has no assistant message."


def test_killed_process_is_marked_interrupted(tiny_model, runs_dir):
    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=100000,
                               max_length=64))
    proc = launch(run)
    deadline = time.time() + 180
    while not run.logged():
        assert time.time() < deadline and proc.poll() is None, (run.dir / "train.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, 9)
    proc.wait()
    time.sleep(0.2)
    assert run.status() == "interrupted"
    assert "ended without saying why" in run.summary()["reason"]


def test_mapped_table_with_a_validation_split_logs_eval_loss(tiny_model, runs_dir, tmp_path):
    import csv
    import json

    rows = [json.loads(line)["messages"] for line in (SAMPLE / "train.jsonl").read_text().splitlines()]
    table = tmp_path / "qa.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "answer"])
        w.writerows([m[0]["content"], m[1]["content"]] for m in rows)
    run = create_run(RunConfig(model=tiny_model, data=str(table), columns="prompt=question,completion=answer",
                               val_fraction=0.2, eval_steps=5, max_steps=10, batch_size=4, max_length=64))
    launch(run)
    assert _wait(run) == "finished", (run.dir / "train.log").read_text()[-2000:]
    evals = run.evaluations()
    assert [e.step for e in evals] == [5, 10]
    assert all(isinstance(e.eval_loss, float) for e in evals)
    assert [r["event"] for r in run.events.read()].count("evaluated") == 2  # its own kind in the file
    assert len(run.logged()) == 10  # eval records do not break the training curve


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_model, runs_dir):
    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=30, save_steps=5,
                               batch_size=2, max_length=64, learning_rate=1e-2))
    proc = launch(run)
    deadline = time.time() + 120
    while not (run.dir / "checkpoints" / "checkpoint-10").exists() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert run.status() == "interrupted"
    killed_at = run.logged()[-1].step
    assert 10 <= killed_at < 30
    from engine.train.checkpoints import newest

    saved = int(newest(run.dir / "checkpoints").name.split("-")[1])  # the kill may have cut the newest one short
    launch(run)
    assert run.status() in ("running", "queued")  # the old "interrupted" belongs to the last process
    assert _wait(run) == "finished", (run.dir / "train.log").read_text()[-2000:]
    steps = [r.step for r in run.logged()]
    resumed = steps[steps.index(killed_at) + 1:]
    assert resumed[0] == saved + 1 and resumed[-1] == 30
    assert run.adapter is not None


def test_gradient_checkpointing_is_off_unless_asked(tmp_path):
    from engine.train.trainer import sft_config

    assert sft_config(RunConfig(), tmp_path).gradient_checkpointing is False
    assert sft_config(RunConfig(gradient_checkpointing="true"), tmp_path).gradient_checkpointing is True


def test_early_stopping_ends_a_run_whose_eval_loss_stops_improving(tiny_model, runs_dir):
    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=200, val_fraction=0.2,
                               eval_steps=2, save_steps=2, early_stopping_patience=1, learning_rate=0.5,
                               batch_size=8, max_length=64, warmup_ratio=0.0))
    launch(run)
    assert _wait(run) == "finished", (run.dir / "train.log").read_text()[-2000:]
    evals = [e.eval_loss for e in run.evaluations()]
    assert run.logged()[-1].step < 200
    assert evals[-1] >= min(evals[:-1])  # it stopped because the last evaluation did not improve


def _config_with_checkpoints(tiny_model, **kw):
    return RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=12, learning_rate=1e-2,
                     batch_size=8, max_length=96, save_steps=4, warmup_ratio=0.0, **kw)


def test_a_nan_loss_stops_the_run_with_its_reason_and_keeps_the_last_good_checkpoint(
        tiny_model, runs_dir, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("STUDIO_FAULT", "nan@6")
    run = create_run(_config_with_checkpoints(tiny_model))
    launch(run)
    assert _wait(run) == "failed"
    assert run.summary()["reason"].startswith("The loss became nan at step 6; lower the learning rate.")
    losses = _losses(run)
    assert all(isinstance(x, float) for x in losses[:5]) and losses[5:] == ["nan"]
    checkpoints = sorted(p.name for p in (run.dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-4"]  # step 6 was not saved, and nothing after it
    weights = load_file(run.dir / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert run.adapter is None


def test_out_of_memory_says_what_to_lower_and_keeps_the_checkpoint(tiny_model, runs_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_FAULT", "oom@6")
    run = create_run(_config_with_checkpoints(tiny_model))
    launch(run)
    assert _wait(run) == "failed"
    reason = run.summary()["reason"]
    assert reason.startswith("Out of memory: lower batch_size") and "gradient_checkpointing" in reason
    assert "Traceback" not in reason
    assert (run.dir / "checkpoints" / "checkpoint-4").is_dir()


def test_a_cpu_allocator_failure_reads_as_out_of_memory():
    from engine.train.trainer import _reason

    err = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 8589934592 bytes.")
    assert _reason(err).startswith("Out of memory:")


def test_kill_and_resume_ends_near_the_loss_of_an_uninterrupted_run(tiny_model, runs_dir):
    straight = create_run(_config_with_checkpoints(tiny_model))
    launch(straight)
    assert _wait(straight) == "finished"

    broken = create_run(_config_with_checkpoints(tiny_model))
    proc = launch(broken)
    deadline = time.time() + 120
    while not any(r["event"] == "checkpoint" and r["step"] == 8 for r in broken.events.read()):
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert broken.status() == "interrupted"
    (broken.dir / "checkpoints" / "checkpoint-999").mkdir()  # cut short: no trainer state, never resumed from
    launch(broken)  # what `studio train --resume` and the Resume button do
    assert _wait(broken) == "finished"
    assert broken.logged()[-1].step == 12
    assert any(r["event"] == "interrupted" for r in broken.events.read())
    assert (broken.dir / "checkpoints" / "incomplete-checkpoint-999").is_dir()  # moved aside, not resumed
    a, b = _losses(straight)[-1], _losses(broken)[-1]
    assert abs(a - b) <= 0.02 * abs(a), (a, b)  # same seed, same data order: within 2 %


def test_metrics_also_go_to_tensorboard(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((finished_run.dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert files
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 40 and losses[-1] == pytest.approx(_losses(finished_run)[-1], rel=1e-4)


def test_reporting_to_a_tool_that_is_not_installed_is_refused(tiny_model):
    from engine.train.config import ConfigError
    from engine.train.trainer import _reporters
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match="report_to: wandb is not installed"):
        _reporters(RunConfig(report_to="tensorboard,wandb"))


def test_a_full_or_unwritable_disk_reads_as_one_sentence():
    import errno

    from engine.train.trainer import _reason

    full = _reason(OSError(errno.ENOSPC, "No space left on device"))
    assert full.startswith("The disk is full:") and full.endswith("The last complete checkpoint is kept.")
    locked = _reason(PermissionError(errno.EACCES, "Permission denied", "/data/runs/x"))
    assert locked.startswith("The runs folder cannot be written (Permission denied: /data/runs/x); "
                             "set STUDIO_RUNS to a writable folder.")


def test_a_disk_that_fills_up_fails_the_run_with_its_reason_and_resume_finishes_it(tiny_model, runs_dir):
    """Files stop growing past 200 kB (RLIMIT_FSIZE, inherited by the trainer), as on a full disk: the first
    checkpoint's optimizer state (~280 kB) cannot be written."""
    import resource

    run = create_run(_config_with_checkpoints(tiny_model))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    try:
        launch(run)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert _wait(run) == "failed"
    assert run.summary()["reason"].startswith("The disk is full: free space where the runs are kept")
    cut_short = list((run.dir / "checkpoints").glob("checkpoint-*"))
    assert cut_short and not any((p / "trainer_state.json").exists() for p in cut_short)
    launch(run)  # space freed: Resume
    assert _wait(run) == "finished"
    assert run.logged()[-1].step == 12 and run.adapter is not None
    assert (run.dir / "checkpoints" / "incomplete-checkpoint-4").is_dir()  # moved aside, not resumed from


def test_a_restarted_app_follows_a_run_it_did_not_start_and_marks_it_interrupted_when_it_dies(
        tiny_model, runs_dir):
    """The app that started a run ends; a new one (a fresh process) finds the run, its curve and its process."""
    import signal
    import subprocess
    import sys

    launcher = (
        "from engine.train.config import RunConfig; from engine.train.preflight import create_run; "
        "from engine.train.runs import launch; "
        f"run = create_run(RunConfig(model={tiny_model!r}, data={str(SAMPLE / 'train.jsonl')!r}, "
        "max_steps=100000, max_length=64)); launch(run); print(run.id)"
    )
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent, env={**os.environ})
    assert out.returncode == 0, out.stderr  # the "app" is gone; its training process is not
    run = Run(runs_dir / out.stdout.strip().splitlines()[-1])
    deadline = time.time() + 120
    while len(run.logged()) < 3 and time.time() < deadline:
        time.sleep(0.2)
    viewer = (
        "import sys; from ui.train_tab import run_view; text, curve, *_ = run_view(sys.argv[1]); "
        "print((curve.series == \"train\").sum()); print(text.splitlines()[0])"
    )
    seen = subprocess.run([sys.executable, "-c", viewer, run.id], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent, env={**os.environ})
    points, line = seen.stdout.strip().splitlines()[-2:]
    assert int(points) >= 3 and f"Run {run.id}** · running" in line, seen.stdout + seen.stderr
    os.killpg(run.pid(), signal.SIGKILL)
    time.sleep(0.5)
    assert run.status() == "interrupted" and "ended without saying why" in run.summary()["reason"]


def test_padding_free_batches_give_the_loss_of_padded_ones(tiny_model, runs_dir):
    base = dict(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=4, batch_size=4, max_length=64,
                learning_rate=1e-2, warmup_ratio=0.0, save_steps=100, lora_dropout=0.0,  # dropout masks differ
                fast_step=False)  # trl's own step, padded and padding-free (the studio's: tests/test_fast_step.py)
    padded = _train(RunConfig(**base))
    packed = _train(RunConfig(**base, padding_free=True))
    assert padded.status() == packed.status() == "finished"
    a, b = _losses(padded), _losses(packed)
    assert len(a) == 4 and all(abs(x - y) <= 1e-3 * abs(x) for x, y in zip(a, b)), (a, b)


def test_packed_examples_do_not_see_each_other(tiny_model):
    """Packing puts examples end to end with positions restarting at 0; attention must stay inside each one."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    a, b = torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([[10, 11, 12]])
    with torch.no_grad():
        # As in training (trl passes use_cache=False): with a cache, transformers does not look for packed rows.
        packed = model(input_ids=torch.cat([a, b], dim=1), position_ids=torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]),
                       use_cache=False).logits
        alone = torch.cat([model(input_ids=a, use_cache=False).logits, model(input_ids=b, use_cache=False).logits], 1)
        mixed = model(input_ids=torch.cat([a, b], dim=1), use_cache=False).logits  # one sequence: b sees a
    assert relative_error(packed, alone) < SAME_ORDER
    assert relative_error(mixed[:, 5:], alone[:, 5:]) > 100 * SAME_ORDER  # the check can tell the difference


def test_packing_fills_rows_so_an_epoch_takes_fewer_steps_and_still_learns(tiny_model, runs_dir):
    base = dict(model=tiny_model, data=str(SAMPLE / "train.jsonl"), epochs=2, batch_size=2, max_length=512,
                learning_rate=1e-2, warmup_ratio=0.0, save_steps=1000)
    padded = _train(RunConfig(**base))
    packed = _train(RunConfig(**base, packing=True))
    assert padded.status() == packed.status() == "finished", (packed.dir / "train.log").read_text()[-3000:]
    steps = [r.summary()["total_steps"] for r in (padded, packed)]
    assert steps[1] < steps[0] / 1.5, steps  # several short examples share each row
    losses = _losses(packed)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
    tokens = [run.logged()[-1].tokens for run in (padded, packed)]
    assert abs(tokens[0] - tokens[1]) <= 0.02 * tokens[0], tokens  # the same examples, no padding counted


def test_bf16_on_cpu_trains_adapters_kept_in_fp32(tiny_model, runs_dir):
    from safetensors.torch import load_file

    from engine.capability import capability

    slow = not capability(tiny_model).faster("bf16")  # where bf16 is slower here it must be forced, and warns
    # Its own process: autocast settings live in accelerate's process-wide state.
    run = train_process(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=20, batch_size=8,
                           max_length=96, learning_rate=1e-2, warmup_ratio=0.0, save_steps=100, precision="bf16",
                           force_precision=slow))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    started = next(r for r in run.events.read() if r["event"] == "started")
    assert started["precision"] == "bf16"
    warnings = [r["message"] for r in run.events.read() if r["event"] == "warning"]
    assert bool(warnings) == slow and all("slower than fp32" in w for w in warnings)
    losses = _losses(run)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    weights = load_file(run.adapter / "adapter_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_fp16_without_a_gpu_is_refused_with_what_to_pick():
    from engine.train.preflight import refusal

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert refusal(RunConfig(precision="fp16")).startswith("precision fp16: needs a GPU; on a CPU pick bf16")


def test_a_model_that_cannot_be_found_fails_the_run_with_one_sentence(runs_dir, tmp_path):
    from engine.models import ModelError, resolve_model

    run = _train(RunConfig(model="nobody/no-such-model", data=str(SAMPLE / "train.jsonl"), max_steps=2))
    assert run.status() == "failed"
    assert run.summary()["reason"] == ("The model 'nobody/no-such-model' is not a local folder and the Hugging Face "
                                       "Hub cannot be reached; type a local model folder or the default model.")
    assert "Traceback" not in run.summary()["reason"] and run.adapter is None
    with pytest.raises(ModelError, match="holds no config.json, so it is not a model folder"):
        resolve_model(str(tmp_path))


def test_stop_right_after_launch_reads_as_stopped_not_interrupted(tiny_model, runs_dir):
    run = create_run(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=100000, max_length=64))
    launch(run)
    assert stop(run) == "stopped"  # the process may still be importing, before its signal handler exists
    assert run.summary()["reason"] == "Stopped before training began; nothing was trained." and run.adapter is None


def test_resume_pressed_while_stop_is_still_waiting_keeps_the_new_process_running(tiny_model, runs_dir):
    """Stop waits for the old process to exit; a Resume in that window must not be reported as stopped."""
    import threading

    run = training(RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=100000, max_length=64),
                   steps=3)
    try:
        stopper = threading.Thread(target=stop, args=(run,))
        stopper.start()
        deadline = time.time() + 60
        while run.status() != "stopped" and time.time() < deadline:
            time.sleep(0.05)
        launch(run)  # as the Resume button does, while `stop` may still be polling the old process
        stopper.join()
        steps = len(run.logged())
        while len(run.logged()) < steps + 3 and time.time() < deadline + 60:
            time.sleep(0.2)
        session = [e.kind for e in run.state().session]
        assert run.status() == "running" and "stopped" not in session, session
    finally:
        assert stop(run) == "stopped"
