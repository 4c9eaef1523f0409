"""GGUF export through llama.cpp's own converter: a file transformers loads back with the same greedy choices,
an Ollama Modelfile whose template renders like the model's chat template, refusals in one sentence.

The tiny model here carries the default model's tokenizer (the converter knows its pre-tokenizer); the
default model itself is exported in the slow test at the end, as `studio export RUN --gguf` does.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE, train
from engine.export import archive as export
from engine.export import gguf
from engine.train.config import RunConfig
from engine.models import DEFAULT_MODEL, resolve_model

pytestmark = pytest.mark.skipif(not (gguf.converter_dir() / "convert_hf_to_gguf.py").exists(),
                                reason="the converter is fetched by .ci/setup (python -m engine.export.gguf --fetch)")


@pytest.fixture(scope="module")
def smol_tiny(tmp_path_factory):
    from tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("smol-tiny"), tokenizer_from=resolve_model(DEFAULT_MODEL)))


@pytest.fixture(scope="module")
def lora_run(smol_tiny, tmp_path_factory):
    cfg = RunConfig(model=smol_tiny, data=str(SAMPLE / "train.jsonl"), max_steps=6, learning_rate=1e-2,
                    batch_size=8, max_length=96, save_steps=100)
    run = train(cfg, tmp_path_factory.mktemp("runs"))
    assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
    return run


def render_go(template: str, messages: list[dict]) -> str:
    """Ollama's Go template for the subset the Modelfile uses (literals, range .Messages, if / else if
    eq .Role, .Content, the {{ "{{" }} escape), so the Modelfile is checked without Ollama."""
    tokens = [t for t in re.split(r"(\{\{.*?\}\})", template) if t]

    def parse(i):
        nodes = []
        while i < len(tokens):
            t, i = tokens[i], i + 1
            if not t.startswith("{{"):
                nodes.append(("text", t))
                continue
            action = t[2:-2].strip()
            if action == "end" or action.startswith("else"):
                return nodes, i, action
            if action == "range .Messages":
                body, i, term = parse(i)
                assert term == "end"
                nodes.append(("range", body))
            elif action.startswith("if "):
                branches, term = [], action
                while term != "end":
                    role = re.fullmatch(r'(?:else )?if eq \.Role "(\w+)"', term).group(1)
                    body, i, term = parse(i)
                    branches.append((role, body))
                nodes.append(("if", branches))
            elif action == ".Content":
                nodes.append(("content",))
            elif action == '"{{"':
                nodes.append(("text", "{{"))
            else:
                raise AssertionError(f"unexpected template action {action!r}")
        return nodes, i, None

    def run(nodes, message):
        out = ""
        for node in nodes:
            if node[0] == "text":
                out += node[1]
            elif node[0] == "content":
                out += message["content"]
            elif node[0] == "range":
                out += "".join(run(node[1], m) for m in messages)
            else:
                out += next((run(body, message) for role, body in node[1] if role == message["role"]), "")
        return out

    nodes, _, term = parse(0)
    assert term is None
    return run(nodes, None)


def test_lora_run_exports_gguf_that_loads_back_and_decodes_like_the_merged_model(lora_run):
    import torch
    from transformers import AutoModelForCausalLM

    path, check = gguf.export_gguf(lora_run, "f16")
    folder = lora_run.dir / "gguf"
    assert path == folder / f"{lora_run.id}-f16.gguf" and path.stat().st_size > 1_000_000
    assert not (lora_run.dir / "gguf.tmp").exists()
    assert check.passed and check.positions == 3 * gguf.CHECK_TOKENS and check.same >= check.positions - 2
    recorded = json.loads((folder / "check.json").read_text())
    assert recorded["passed"] and recorded["converter"] == f"llama-cpp-python=={gguf.CONVERTER_VERSION}"
    # the GGUF holds the merged weights, not the base's: its logits follow the merged model
    merged = AutoModelForCausalLM.from_pretrained(lora_run.dir / "merged").eval()
    back = AutoModelForCausalLM.from_pretrained(folder, gguf_file=path.name, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(lora_run.config.model).eval()
    ids = torch.tensor([[1, 200, 3000, 45, 9000, 17]])
    with torch.no_grad():
        m, b, o = merged(ids).logits, back(ids).logits, base(ids).logits
    assert (m - b).abs().max() < 0.05 < (m - o).abs().max()
    # a model card beside it, saying what it is and how to run it
    card = (folder / "README.md").read_text()
    assert f"base_model: {lora_run.config.model}" in card and "ollama create" in card and path.name in card
    assert "Examples: 68" in card


def test_llama_cpp_itself_reads_the_gguf_as_the_merged_model_does(lora_run, smol_tiny, tmp_path):
    """Where llama-cpp-python is installed (CI does not compile it), the export's check also runs the file in
    llama.cpp: same greedy choices, same prompt tokens, and its chat template (from the GGUF) renders the
    prompt as the model's own does. A file of other weights fails there too, naming the token."""
    pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer
    from tiny_model import build_tiny_model

    path, check = gguf.export_gguf(lora_run, "f16")
    ran = check.llama_cpp
    assert ran is not None and ran.passed and ran.tokenizer_same, ran and ran.failures
    assert ran.positions == 3 * gguf.CHECK_TOKENS and ran.same >= ran.positions - 2 and ran.max_logit_diff < 0.1
    recorded = json.loads((path.parent / "check.json").read_text())["llama_cpp"]
    assert recorded["positions"] == ran.positions and "in llama.cpp itself" in check.describe()

    messages = [{"role": "user", "content": "How heavy is the Tilly T2?"}]
    ids = AutoTokenizer.from_pretrained(lora_run.adapter).apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    out = gguf.llama_cpp_model(path).create_chat_completion(messages, temperature=0, max_tokens=8)
    assert out["usage"]["prompt_tokens"] == len(ids) and out["usage"]["completion_tokens"] > 0

    other = build_tiny_model(tmp_path / "other", tokenizer_from=smol_tiny, seed=7)
    bad = gguf.check_roundtrip(export.merge(lora_run), gguf.convert(other, tmp_path / "other.gguf", "f16"), "f16")
    assert not bad.llama_cpp.passed and "llama.cpp picks" in bad.llama_cpp.failures[0]


def test_a_crash_of_llama_cpps_build_is_said_and_the_checked_file_kept(lora_run, monkeypatch):
    """llama.cpp runs in a child process: where its build crashes on this CPU (its AMX kernels, llama.cpp
    #20824: q8_0 files on this project's AMX machine), the export says so and keeps the file transformers read
    correctly."""
    crash = "llama.cpp itself (llama-cpp-python's build here) crashed reading the file (signal 11)"
    monkeypatch.setattr(gguf, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(gguf, "read_with_llama_cpp", lambda *a: crash)
    path, check = gguf.export_gguf(lora_run, "f16")
    assert check.passed and path.exists() and check.llama_cpp.crashed == crash
    assert check.describe().endswith(crash) and "greedy positions chose the same token" in check.describe()
    assert json.loads((path.parent / "check.json").read_text())["llama_cpp"] == {"crashed": crash}


def test_modelfile_template_renders_like_the_models_chat_template(lora_run):
    from transformers import AutoTokenizer

    if not (lora_run.dir / "gguf" / "Modelfile").exists():
        gguf.export_gguf(lora_run, "f16")
    text = (lora_run.dir / "gguf" / "Modelfile").read_text()
    assert f"FROM ./{lora_run.id}-f16.gguf" in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    system = re.search(r'SYSTEM """(.*?)"""', text, re.S).group(1)
    tok = AutoTokenizer.from_pretrained(lora_run.adapter)
    conversation = [{"role": "user", "content": "How heavy is the Tilly T2?"},
                    {"role": "assistant", "content": "It weighs 4 kg."}, {"role": "user", "content": "And the T3?"}]
    # Ollama adds the Modelfile's SYSTEM as the first message when the conversation has none
    want = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert render_go(template, [{"role": "system", "content": system}] + conversation) == want
    own = [{"role": "system", "content": "Answer in French."}] + conversation
    assert render_go(template, own) == tok.apply_chat_template(own, tokenize=False, add_generation_prompt=True)


def test_template_of_the_plain_chatml_tiny_model_has_no_default_system(tiny_model):
    from transformers import AutoTokenizer

    t = gguf.chat_template(AutoTokenizer.from_pretrained(tiny_model))
    assert t is not None and t.default_system == "" and t.start == ""
    assert t.pieces["user"] == ("<|im_start|>user\n", "<|im_end|>\n")


def test_a_gguf_of_other_weights_fails_the_check_naming_the_token(lora_run, smol_tiny, tmp_path):
    from tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other", tokenizer_from=smol_tiny, seed=7)
    out = gguf.convert(other, tmp_path / "other.gguf", "f16")
    check = gguf.check_roundtrip(export.merge(lora_run), out, "f16")
    assert not check.passed and "the GGUF picks" in check.failures[0] and "clearly picks" in check.failures[0]


def test_failed_check_fails_the_export_and_keeps_no_file(lora_run, monkeypatch):
    bad = gguf.Check("q8_0", positions=3, failures=["at answer token 2 of 'x' the GGUF picks 'a'"])
    monkeypatch.setattr(gguf, "check_roundtrip", lambda *a, **k: bad)
    with pytest.raises(gguf.GGUFError, match="did not pass its check .*answer token 2"):
        gguf.export_gguf(lora_run, "q8_0")
    assert not (lora_run.dir / "gguf.tmp").exists()
    assert not list(lora_run.dir.glob("gguf/*q8_0.gguf"))


def test_unknown_architecture_and_tokenizer_are_refused_in_a_sentence(tiny_model, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"architectures": ["ZorvaneForCausalLM"], "model_type": "zorvane"}))
    with pytest.raises(gguf.GGUFError, match="does not know the architecture ZorvaneForCausalLM"):
        gguf.convert(odd, tmp_path / "odd.gguf")
    # the tiny model's own BPE is no tokenizer llama.cpp knows
    with pytest.raises(gguf.GGUFError, match="does not recognise this model's tokenizer"):
        gguf.convert(Path(tiny_model), tmp_path / "tiny.gguf")
    with pytest.raises(gguf.GGUFError, match="quant 'q4' is not one of f16, bf16, q8_0"):
        gguf.convert(Path(tiny_model), tmp_path / "tiny.gguf", "q4")
    assert "LlamaForCausalLM" in gguf.supported_architectures()


def test_a_download_that_is_not_the_pinned_one_is_not_unpacked(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf, "_download", lambda: b"not the sdist")
    with pytest.raises(gguf.GGUFError, match="not the pinned"):
        gguf.fetch_converter()
    assert not gguf.converter_dir().exists()
    with pytest.raises(gguf.GGUFError, match="not installed; run `python -m engine.export.gguf --fetch`"):
        gguf.converter_script()


def test_cli_exports_gguf_and_says_where(lora_run):
    # f16: this random tiny model's q8_0 rounding moves its logits by up to 2.5 (measured), enough to flip a
    # token of some trained adapters; q8_0 is checked on the default model (the slow test below)
    done = subprocess.run([sys.executable, "-m", "studio.cli", "export", lora_run.id, "--gguf", "--quant", "f16"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "STUDIO_RUNS": str(lora_run.dir.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GGUF:" in done.stdout and "round trip:" in done.stdout and "ollama create" in done.stdout
    folder = lora_run.dir / "gguf"
    assert (folder / f"{lora_run.id}-f16.gguf").exists() and (folder / "Modelfile").exists()


@pytest.mark.slow
def test_default_model_lora_run_exports_q8_gguf(runs_dir):
    """The real weights through the quantisation most people run (Ollama's); f16 is checked on the tiny model
    above, and both are measured on the default model by `python -m studio.gguf_bench` (README)."""
    cfg = RunConfig(data=str(SAMPLE / "train.jsonl"), max_steps=4, batch_size=4, learning_rate=1e-3,
                    max_length=128, save_steps=100)
    run = train(cfg)
    assert run.status() == "finished"
    path, check = gguf.export_gguf(run, "q8_0")
    assert check.passed and path.exists(), check.failures
    assert check.positions > 0  # it read answers (passed: each position the same token, or a near tie)
    assert "<|im_start|>assistant" in (run.dir / "gguf" / "Modelfile").read_text()


def test_modelfile_carries_the_system_prompt_every_training_example_shared(tmp_path, smol_tiny):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    rows = [{"messages": [{"role": "system", "content": "You are Tilly's helpdesk."},
                          {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": "Yes."}]}
            for i in range(3)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = SimpleNamespace(config=RunConfig(model=smol_tiny, data=str(data)))
    assert gguf.shared_system_prompt(run) == "You are Tilly's helpdesk."
    text, note = gguf.modelfile("m.gguf", AutoTokenizer.from_pretrained(smol_tiny), None,
                                gguf.shared_system_prompt(run))
    assert 'SYSTEM """You are Tilly\'s helpdesk."""' in text and "checked against it" in note
    data.write_text(data.read_text() + json.dumps({"messages": rows[0]["messages"][1:]}) + "\n")
    assert gguf.shared_system_prompt(run) == ""  # one example without it: no shared prompt
