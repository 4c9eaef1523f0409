"""The README's llama.cpp figures: the default model converted to GGUF, checked in transformers and in
llama.cpp itself, then the same greedy answers timed in llama.cpp and in transformers (fp32).

    python -m studio.gguf_bench [--model M] [--quants f16,q8_0] [--tokens 64]

Needs llama-cpp-python (`pip install llama-cpp-python`, which compiles llama.cpp; CI does not). For each
quantisation: the export check's counts in both runtimes, then three prompts answered greedily by
llama.cpp from the GGUF and by transformers from the model folder, with decode tokens per second and
whether the answers are the same text. Run it alone: both runtimes use every core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.export import gguf
from engine.models import DEFAULT_MODEL, resolve_model


def _transformers(model_dir: Path, prompts, tokens: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    answers, made, spent = [], 0, 0.0
    for prompt in prompts:
        x = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                    return_dict=True, return_tensors="pt")
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**x, max_new_tokens=tokens, do_sample=False)[0, x["input_ids"].shape[1]:]
        spent += time.perf_counter() - t0
        made += len(out)
        answers.append(tok.decode(out, skip_special_tokens=True).strip())
    return answers, made / spent


def _llama_cpp(path: Path, prompts, tokens: int):
    """Answers and decode tokens/s from llama.cpp, in a child process (a crash of its build is a row, not
    the end of the benchmark); a sentence when it crashed."""
    done = subprocess.run([sys.executable, "-m", "studio.gguf_bench", "--time-llama-cpp", str(path),
                           "--tokens", str(tokens)], input=json.dumps(prompts), capture_output=True, text=True)
    if done.returncode < 0:
        return None, f"crashed (signal {-done.returncode})"
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["answers"], got["tokens_per_s"]


def _time_llama_cpp(path: Path, tokens: int) -> int:
    llm = gguf.llama_cpp_model(path, n_ctx=1024)
    answers, made, spent = [], 0, 0.0
    for prompt in json.load(sys.stdin):
        t0 = time.perf_counter()
        out = llm.create_chat_completion([{"role": "user", "content": prompt}], temperature=0, max_tokens=tokens)
        spent += time.perf_counter() - t0
        made += out["usage"]["completion_tokens"]
        answers.append(out["choices"][0]["message"]["content"].strip())
    print(json.dumps({"answers": answers, "tokens_per_s": made / spent}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.gguf_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--quants", default="f16,q8_0")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--time-llama-cpp", help=argparse.SUPPRESS)  # the child that times llama.cpp
    a = p.parse_args(argv)
    if a.time_llama_cpp:
        return _time_llama_cpp(Path(a.time_llama_cpp), a.tokens)
    if not gguf.llama_cpp_installed():
        raise SystemExit("gguf_bench: llama-cpp-python is not installed (pip install llama-cpp-python)")
    model_dir = Path(resolve_model(a.model))
    prompts = ("How heavy is the Tilly T2?",) + gguf.CHECK_PROMPTS
    want, hf_speed = _transformers(model_dir, prompts, a.tokens)
    print(f"{a.model}: transformers fp32 greedy, {hf_speed:.1f} tokens/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quant in a.quants.split(","):
            t0 = time.perf_counter()
            path = gguf.convert(model_dir, Path(tmp) / f"model-{quant}.gguf", quant)
            converted = time.perf_counter() - t0
            check = gguf.check_roundtrip(model_dir, path, quant)
            got, speed = _llama_cpp(path, list(prompts), a.tokens)
            same = sum(x == y for x, y in zip(got, want)) if got else None
            rows.append((quant, path.stat().st_size / 2**20, converted, check, speed, same))
            print(f"{quant}: check {'passed' if check.passed else 'FAILED'}: {check.describe()}")
    print(f"\n| GGUF | size | convert | check in transformers | check in llama.cpp | llama.cpp tokens/s "
          f"| vs transformers fp32 | same {a.tokens}-token answers |")
    print("|---|---|---|---|---|---|---|---|")
    for quant, size, converted, check, speed, same in rows:
        lc = check.llama_cpp
        read = "crashed" if lc.crashed else f"{lc.same}/{lc.positions} (max {lc.max_logit_diff:.3f})"
        timed = (f"{speed} | | " if same is None else
                 f"{speed:.0f} | {speed / hf_speed:.2f}x | {same}/{len(prompts)}")
        print(f"| {quant} | {size:.0f} MB | {converted:.0f} s | {check.same}/{check.positions} "
              f"(max logit change {check.max_logit_diff:.3f}) | {read} | {timed} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
