"""Nothing a user does loses work: Stop during start-up and during a slow step, damaged checkpoints,
and values that are not numbers.

A step is made slower than the old fixed 8 s grace for certain with the test-only hook
STUDIO_FAULT=slow@SECONDS (every training step lasts at least that long); the tests wait on the
run's events, never on a timer racing start-up.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE, train as _train, training, wait_for
from engine.train import checkpoints
from engine.train.config import RANGES, ConfigError, RunConfig
from engine.train.runs import launch, stop, stop_grace


def _cfg(tiny_model, **kw):
    return RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), batch_size=2, max_length=64,
                     report_to="none", **{"max_steps": 100000, "save_steps": 1000, **kw})


def test_stop_during_a_step_slower_than_8s_waits_for_it_and_saves(tiny_model, runs_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_FAULT", "slow@9")
    run = training(_cfg(tiny_model), steps=1, timeout=300)  # step 1 logged: step 2 (9 s) is under way
    grace, expected = stop_grace(run)
    assert expected >= 9 and grace >= 18  # from the run's own measured step, not a fixed 8 s
    assert stop(run) == "stopped", (run.dir / "train.log").read_text()[-3000:]
    events = run.events.read()
    stopping = next(r for r in events if r["event"] == "stopping")
    assert stopping["step"] == 2 and stopping["training"]
    ended = events[-1]
    assert ended["event"] == "stopped" and ended["step"] == 2 and "checkpoint-2 is saved" in ended["reason"]
    assert checkpoints.problem(run.dir / "checkpoints" / "checkpoint-2") is None and run.adapter is not None
    # Resumed, then stopped while still starting: it ends at once, says so, and keeps checkpoint-2.
    monkeypatch.delenv("STUDIO_FAULT")
    launch(run)
    assert run.state().started is None
    assert stop(run) == "stopped"
    assert run.summary()["reason"] in (
        "Stopped before training began; checkpoint-2 is kept, and Resume continues from it.",)
    assert checkpoints.newest(run.dir / "checkpoints").name == "checkpoint-2"


def test_a_trainer_that_does_not_answer_within_the_grace_is_ended_and_the_message_is_true(
        tiny_model, runs_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_FAULT", "slow@6")
    run = training(_cfg(tiny_model), steps=1, timeout=300)
    assert stop(run, grace_s=1) == "interrupted"  # the 6 s step cannot finish in 1 s
    assert run.summary()["reason"] == ("Stop did not end the trainer within 1 s, so its processes were ended; no "
                                       "checkpoint had been saved, so Resume starts from the beginning.")


def test_ctrl_c_on_studio_train_finishes_the_slow_step_and_saves(tiny_model, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(_cfg(tiny_model).to_yaml())
    env = {**os.environ, "STUDIO_RUNS": str(tmp_path / "runs"), "STUDIO_FAULT": "slow@9"}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "train", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # waits on the trainer's own events as the CLI prints them
        lines.append(line)
        if line.startswith("step 1/"):
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    assert "stopping: finishing step 2 and saving" in out
    assert "stopped at step 2" in out and "checkpoint-2 is saved, and Resume continues from it." in out
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if (p / "config.yaml").exists())
    assert checkpoints.problem(run_dir / "checkpoints" / "checkpoint-2") is None


def test_every_file_of_a_checkpoint_cut_short_is_found_and_resume_takes_the_one_before(tiny_model, runs_dir):
    run = _train(_cfg(tiny_model, max_steps=4, save_steps=2))
    assert run.status() == "finished"
    folder = run.dir / "checkpoints"
    newest = folder / "checkpoint-4"
    assert checkpoints.complete(folder) == [folder / "checkpoint-2", newest]
    files = [p for p in sorted(newest.rglob("*")) if p.is_file() and p.name != checkpoints.MARKER]
    assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json"} <= {p.name for p in files}
    for path in files:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        try:
            assert checkpoints.problem(newest) is not None, f"{path.name} cut short was not noticed"
        finally:
            path.write_bytes(data)
    assert checkpoints.problem(newest) is None
    weights = newest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cfg = run.config
    cfg.max_steps = 6
    (run.dir / "config.yaml").write_text(cfg.to_yaml())
    launch(run)
    assert wait_for(run) == "finished", (run.dir / "train.log").read_text()[-3000:]
    warning = run.state().warnings[0]
    assert warning.startswith("checkpoint-4 is damaged (adapter_model.safetensors is ")
    assert warning.endswith("so it was renamed damaged-checkpoint-4; training continues from checkpoint-2.")
    assert (folder / "damaged-checkpoint-4").is_dir()
    steps = [e.step for e in run.state().session if e.kind == "logged"]
    assert steps[0] == 3 and steps[-1] == 6  # from checkpoint-2, not from the start


NUMERIC = [name for name in RANGES]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "four", float("nan"), math.inf])
def test_every_number_field_refuses_what_is_not_a_finite_number_by_name(value):
    for name in NUMERIC:
        with pytest.raises(ConfigError, match=rf"^{name}: .*(not a number|not a finite number|must be|is not one)"):
            RunConfig(**{name: value})


def test_every_number_field_has_a_range_and_refuses_beyond_it():
    from typing import get_type_hints

    numeric = {name for name, hint in get_type_hints(RunConfig).items() if hint in (int, float)}
    assert numeric == set(RANGES)  # a new number field must say its range
    for name, (low, high, _) in RANGES.items():
        for bad in (low - 1, high * 10 + 10):
            with pytest.raises(ConfigError, match=rf"^{name}: "):
                RunConfig(**{name: bad})


def test_the_cli_refuses_bad_numbers_and_a_missing_file_before_any_run_exists(tmp_path):
    env = {**os.environ, "STUDIO_RUNS": str(tmp_path / "runs")}
    for args, said in (
            (["--batch_size", "1e400"], "error: batch_size: '1e400' is not a finite number."),
            (["--batch_size", "nan"], "error: batch_size: 'nan' is not a finite number."),
            (["--learning_rate", "nan"], "error: learning_rate: 'nan' is not a finite number."),
            (["--epochs", "inf"], "error: epochs: 'inf' is not a finite number."),
            (["--data", str(tmp_path / "missing.jsonl")],
             f"error: data: {tmp_path / 'missing.jsonl'} is not a file here; check the path")):
        out = subprocess.run([sys.executable, "-m", "studio.cli", "train",
                              str(ROOT / "assets/configs/lora-sample.yaml"), *args],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 2 and out.stderr.startswith(said), out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_table_of_10000_columns_gives_a_short_report(tmp_path):
    from engine.data.dataset import check_files
    from ui.data_tab import _report_markdown

    path = tmp_path / "wide.csv"
    header = ",".join(f"col{i}" for i in range(10_000))
    path.write_text(header + "\n" + "\n".join(",".join("x" for _ in range(10_000)) for _ in range(30)) + "\n")
    report = check_files([path])
    assert report.errors and "and 9,990 more" in str(report.errors[0])
    assert len("\n".join(report.lines())) < 10_000 and len(_report_markdown(report, [str(path)])) < 10_000


def test_a_50_mb_line_is_refused_by_name_within_a_memory_budget(tmp_path, tiny_model):
    """The line is read and refused (it would be 10M tokens); the whole check stays under 1 GB of memory,
    and the token count of a long example that is allowed costs the budget of a short one."""
    path = tmp_path / "huge.jsonl"
    answer = "The Zorvane Tilly T2 weighs 1.2 kg. " * (50 * 2**20 // 36)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Tell me everything."},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    script = (
        "import json, sys\n"
        "def peak_mb():  # VmHWM: this program's own peak; ru_maxrss would carry the forking parent's\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    return int(line.split()[1]) / 1024\n"
        "from engine.data.dataset import check_files, token_stats\n"
        "from engine.data.formats import Example\n"
        "from engine.models import load_tokenizer\n"
        "report = check_files([sys.argv[1]])\n"
        "before = peak_mb()\n"
        "tok = load_tokenizer(sys.argv[2])\n"
        "long = Example(messages=[{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'word ' * 700_000}])\n"
        "stats = token_stats([long], tok, 512)\n"
        "print(json.dumps({'errors': [str(e) for e in report.errors], 'examples': len(report.examples),\n"
        "                  'long_tokens': stats.lengths[0], 'check_mb': before,\n"
        "                  'rss_mb': peak_mb()}))\n")
    out = subprocess.run([sys.executable, "-c", script, str(path), tiny_model],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["examples"] == 0 and len(got["errors"]) == 1
    assert got["errors"][0].startswith("huge.jsonl line 1: this line is 52,")
    assert "over the limit of 8,388,608 for one example; split it into smaller examples" in got["errors"][0]
    assert got["check_mb"] < 512 and got["rss_mb"] < 1024, got  # the 50 MB line's check; with the long count
    exact = subprocess.run([sys.executable, "-c", "import sys; from engine.models import load_tokenizer; "
                            "t = load_tokenizer(sys.argv[1]); print(len(t('word ' * 20000)['input_ids']))",
                            tiny_model], capture_output=True, text=True, cwd=ROOT, timeout=120)
    per_word = int(exact.stdout.strip()) / 20000
    assert abs(got["long_tokens"] - per_word * 700_000) < 0.05 * per_word * 700_000  # scaled from the prefix


def test_a_data_file_with_a_comma_in_its_name_trains_from_a_yaml_list(tiny_model, tmp_path, runs_dir):
    import yaml

    path = tmp_path / "a, b.jsonl"
    shutil.copy(SAMPLE / "train.jsonl", path)
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({"model": tiny_model, "data": [str(path)], "max_steps": 2,
                                        "max_length": 64, "report_to": "none"}))
    cfg = RunConfig.from_yaml(cfg_path)
    assert cfg.data_files() == [str(path)]
    assert RunConfig(data=str(path)).data_files() == [str(path)]  # one existing file named alone, too
    run = _train(cfg)
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-2000:]
    assert run.config.data_files() == [str(path)]  # written and read back as one file
