"""The README's "Use your model" section, run as written: its shell lines through the `studio` command, its
Python blocks as they are, on a finished run of a tiny model (with the default model's tokenizer, which
llama.cpp's converter knows). `ollama` and `llama-cli` are not installed here: their lines are checked to
name files the export wrote, and the GGUF is loaded back through transformers instead; the llama-cpp-python
block runs where that package is installed (CI does not compile it)."""

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, SAMPLE, train
from engine.export import gguf
from engine.train.config import RunConfig
from engine.models import DEFAULT_MODEL, resolve_model

pytestmark = pytest.mark.skipif(not (gguf.converter_dir() / "convert_hf_to_gguf.py").exists(),
                                reason="the converter is fetched by .ci/setup (python -m engine.export.gguf --fetch)")


def section() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split("## Use your model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", body, re.S)


def test_the_section_has_each_way_to_use_a_model():
    blocks = section()
    code = "\n".join(b for _, b in blocks)
    for needed in ("studio export RUN_ID --gguf", "ollama create", "llama-cli", "studio serve RUN_ID",
                   "from openai import OpenAI", "stream=True", "AutoPeftModelForCausalLM", "gguf_file=",
                   "response_format", "embeddings.create", "studio eval RUN_ID --tasks"):
        assert needed in code, needed


def test_every_snippet_runs(tmp_path, monkeypatch, capsys):
    from tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model", tokenizer_from=resolve_model(DEFAULT_MODEL))
    run = train(RunConfig(model=str(model), data=str(SAMPLE / "train.jsonl"), max_steps=4, learning_rate=1e-2,
                          batch_size=8, max_length=96, save_steps=100), tmp_path / "runs")
    assert run.status() == "finished"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STUDIO_RUNS": str(tmp_path / "runs"), "STUDIO_API_KEY": ""}
    studio = str(Path(sys.executable).with_name("studio"))
    monkeypatch.chdir(tmp_path)
    cwd, servers, ran = tmp_path, [], []
    try:
        for kind, block in section():
            block = block.replace("RUN_ID", run.id).replace("8000", str(port))
            if kind == "python" and "llama_cpp" in block:
                # llama-cpp-python compiles llama.cpp, so CI has none: where it is installed the block runs
                # (in a child, as native code), else the file it opens must be there
                named = re.search(r'Llama\("([^"]+)"', block).group(1)
                assert (tmp_path / named).is_file(), named
                if gguf.llama_cpp_installed():
                    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
                    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
                ran.append("llama_cpp")
                continue
            if kind == "python":
                exec(compile(block, "README.md", "exec"), {})
                ran.append("python")
                continue
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if not line:
                    continue
                words = shlex.split(line)
                if words[0] == "cd":
                    cwd = cwd / words[1]
                    assert cwd.is_dir(), line
                elif words[:2] == ["studio", "serve"]:
                    servers.append(subprocess.Popen([studio, *words[1:]], cwd=cwd, env=env,
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                    _wait_until_up(servers[-1], port)
                elif words[0] == "studio":
                    done = subprocess.run([studio, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True)
                    assert done.returncode == 0, (line, done.stderr[-2000:])
                elif words[0] in ("ollama", "llama-cli"):  # not installed here: the files they read exist
                    named = [w for w in words if w in ("Modelfile",) or w.endswith(".gguf")]
                    assert named and all((cwd / w).exists() for w in named), line
                    if words[0] == "ollama":
                        assert (cwd / "Modelfile").read_text().startswith("# Ollama")
                else:
                    raise AssertionError(f"a README line this test does not know how to run: {line}")
                ran.append(words[0])
        out = capsys.readouterr().out
        assert ran.count("python") == 4 and "studio" in ran and "ollama" in ran and "llama_cpp" in ran
        assert re.search(r"completion_tokens=[1-9]", out)  # the openai snippet printed its usage
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(30)


def _wait_until_up(proc, port, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "studio serve did not start"
            time.sleep(0.5)
