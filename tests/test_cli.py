"""`studio train` and `studio runs` from the command line, as a person types them."""

import subprocess
import sys
from pathlib import Path

from conftest import SAMPLE

STUDIO = str(Path(sys.executable).with_name("studio"))


def test_studio_train_runs_a_config_with_overrides(tiny_model, runs_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {tiny_model}\ndata: {SAMPLE / 'train.jsonl'}\nmax_steps: 50\nmax_length: 64\n")
    out = subprocess.run([STUDIO, "train", str(cfg), "--max_steps", "4", "--batch_size", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "step 4/4" in out.stdout and "finished at step 4" in out.stdout
    run_dir = next(p for p in runs_dir.iterdir() if p.is_dir())
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert "max_steps: 4" in (run_dir / "config.yaml").read_text()
    listing = subprocess.run([STUDIO, "runs"], capture_output=True, text=True, timeout=60).stdout
    assert run_dir.name in listing and "finished" in listing


def test_studio_train_refuses_a_bad_setting_in_one_line(runs_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("learning_rate: -1\n")
    out = subprocess.run([STUDIO, "train", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: learning_rate: -1.0 must be above 0 and at most 1."
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_studio_data_check_reports_and_exits_non_zero_on_an_error(tmp_path, tiny_model):
    good = tmp_path / "good.jsonl"
    good.write_text((SAMPLE / "train.jsonl").read_text())
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,completion\nq,a\nq,\n")
    out = subprocess.run([STUDIO, "data", "check", str(good), str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "error: bad.csv row 3: has \"prompt\" but no \"completion\"." in out.stdout
    assert out.stdout.startswith("69 examples (68 chat, 1 completion) from 70 rows in 2 file(s); 1 errors")
    out = subprocess.run([STUDIO, "data", "check", str(good), "--model", tiny_model, "--max-length", "40"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "examples are longer than max_length 40 and would be cut" in out.stdout
    assert "tokens: 68 examples" in out.stdout


def test_studio_data_export_writes_chat_jsonl(tmp_path):
    src = tmp_path / "alpaca.json"
    src.write_text('[{"instruction": "Hi", "input": "", "output": "Hello"}]')
    target = tmp_path / "out.jsonl"
    out = subprocess.run([STUDIO, "data", "export", str(src), "-o", str(target)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "wrote 1 chat examples" in out.stdout
    assert target.read_text() == ('{"messages": [{"role": "user", "content": "Hi"}, '
                                  '{"role": "assistant", "content": "Hello"}]}\n')


def test_studio_rag_index_and_search(tmp_path):
    env = {**__import__("os").environ, "STUDIO_INDEXES": str(tmp_path / "idx")}
    out = subprocess.run([STUDIO, "rag", "index", str(SAMPLE / "docs"), "--name", "zorvane"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Indexed 33 passages from 10 documents")
    out = subprocess.run([STUDIO, "rag", "search", "zorvane", "What does error E31 mean?", "--k", "2"], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0].split()
    assert first[1] == "06-troubleshooting.md" and float(first[0]) > 0.3
    out = subprocess.run([STUDIO, "rag", "search", "nothing-here", "x"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 2 and "no collection 'nothing-here' with documents" in out.stderr


def test_print_command_prepares_a_multi_machine_zero_run(runs_dir):
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([STUDIO, "train", "assets/configs/zero2-sample.yaml", "--print-command", "--machines", "2",
                          "--machine-rank", "1", "--main-ip", "10.0.0.1"], capture_output=True, text=True,
                         timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    command = out.stdout.strip().splitlines()[-1]
    run_dir = next(p for p in runs_dir.iterdir() if p.is_dir())
    assert "--use_deepspeed" in command and "--num_processes 4 --num_machines 2" in command
    assert "--machine_rank 1" in command and "--main_process_ip 10.0.0.1" in command
    assert command.endswith(f"-m engine.train.trainer {run_dir / 'config.yaml'}")
    assert '"stage": 2' in (run_dir / "ds_config.json").read_text()


def test_studio_train_help_lists_every_field_with_its_help_and_default():
    from dataclasses import fields

    from engine.train.config import RunConfig

    out = subprocess.run([STUDIO, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps the lines
    for f in fields(RunConfig):
        assert f"--{f.name}" in text, f.name
        assert " ".join(f.metadata["help"].split()[:6]) in text, f.name
    assert "{assistant,all}" in text and "(default: 512)" in text
