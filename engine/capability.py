"""What this machine's matrix products do in each number format, measured once and cached.

CPUs of the same kind differ by two orders of magnitude in bf16: an EPYC with AVX-512 BF16
runs bf16 products about 2x fp32, a Zen 3 with AVX2 only about 180x slower than fp32, an
Intel Xeon with AMX about 7x faster. So nothing here assumes a CPU feature: `capability()`
times a second of matrix products per dtype at the model's own layer shapes, and caches the
figures in `$STUDIO_CACHE/capability.json` (default `~/.cache/studio`; `$STUDIO_MEASURED` names
another folder for them), keyed by CPU
model, torch version, device, threads and shapes. The Train form's `precision: auto`, the
refusal of a slow bf16, the Method tab's time estimate, the probe and `studio bench` all read
these same figures.

    python -m engine.capability [MODEL]      # prints the measured GFLOP/s and what auto picks
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.models import cache_dir, shape_of

# A CPU run takes bf16 under `auto` only when its products are this many times faster than fp32: at the
# measured 2.2x of an AVX-512 BF16 EPYC, training ran about 1.2x faster end to end with the loss up to
# 10% behind fp32 (see `studio bench`), which is not worth making the default; AMX (about 7x) is.
AUTO_CPU_BF16_MIN_RATIO = 3.0
TOKENS = 512  # rows of the measured products: about one batch of a small run
SECONDS_PER_DTYPE = 1.0
DEFAULT_SHAPE = (576, 1536)  # SmolLM2-135M's hidden and MLP widths, when no model is named


@dataclass
class Capability:
    device: str            # "cpu" or the GPU's name
    key: str               # what the cache is keyed by
    shape: tuple[int, int]  # (hidden, intermediate) the products were measured at
    gflops: dict[str, float]  # fp32 / bf16 / fp16 -> best measured GFLOP/s (0.0: not supported here)
    ratios: dict[str, float]  # dtype -> median speed against fp32 in the same rounds (the decisions use it)

    @property
    def cuda(self) -> bool:
        return self.device != "cpu"

    def ratio(self, dtype: str) -> float:
        """How many times faster `dtype` products run than fp32 here (below 1: slower)."""
        if dtype in self.ratios:
            return self.ratios[dtype]
        base = self.gflops.get("fp32") or 0.0  # figures cached without ratios (or seeded by hand)
        return (self.gflops.get(dtype) or 0.0) / base if base else 0.0

    def faster(self, dtype: str) -> bool:
        return self.ratio(dtype) > 1.0

    def describe(self, dtype: str) -> str:
        """'bf16 products run 2.2x fp32 here (408 vs 187 GFLOP/s)', or '... 180x slower ...'."""
        r, a, b = self.ratio(dtype), self.gflops.get(dtype, 0.0), self.gflops.get("fp32", 0.0)
        where = f"on this {'GPU' if self.cuda else 'CPU'} (at best {_fmt(a)} vs {_fmt(b)} GFLOP/s, measured at " \
                f"{self.shape[0]}x{self.shape[1]} layers)"
        if r >= 1:
            return f"{dtype} matrix products run {r:.1f}x as fast as fp32 {where}"
        if r <= 0:
            return f"{dtype} matrix products do not run {where}"
        return f"{dtype} matrix products run {1 / r:.0f}x slower than fp32 {where}"

    def peak(self, dtype: str) -> float:
        return self.gflops.get(dtype) or 0.0


def _fmt(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def cache_path() -> Path:
    """The measured figures: `$STUDIO_MEASURED/capability.json` where that is set (the tests' own folder),
    else in the studio cache."""
    folder = os.environ.get("STUDIO_MEASURED")
    return (Path(folder) if folder else cache_dir()) / "capability.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The matrix-product features of this CPU that decide the bf16 speed: AVX-512, its bf16 instructions, AMX."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    names = {"avx512f": "AVX-512", "avx512_bf16": "AVX512_BF16", "amx_bf16": "AMX"}
    return [name for flag, name in names.items() if flag in flags]


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


_THREADS: list[int] = []


def threads() -> int:
    """The threads torch was set to compute on in this process, read before anything of ours changes it.

    engine.infer.batching drops torch to one thread while other processes keep the cores busy, and back; the
    figures belong to the configured count, so the cache key and the measurement use this one, not
    whatever torch is set to at that moment (a batched generate beside a busy machine once left the key
    reading "1 threads" in one process and "2 threads" in the next, so the figures were not found)."""
    import torch

    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
    return _THREADS[0]


def machine_key(shape: tuple[int, int]) -> str:
    import torch

    return (f"v2 | {cpu_model()} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__} | "
            f"{_device()} | {threads()} threads | {shape[0]}x{shape[1]}")


def measure(dtypes: tuple[str, ...], shapes: list[tuple[int, int, int]],
            seconds: float = SECONDS_PER_DTYPE) -> tuple[dict[str, float], dict[str, float]]:
    """(peak GFLOP/s, ratio to fp32) of each dtype over matrix products of `shapes` (m, k, n).

    The dtypes take turns, round after round, each timing a block of products long enough to measure, so
    a load that comes and goes slows them alike; a dtype's ratio is the median over rounds of its speed
    against fp32's in the same round, its peak the best block. A dtype with no kernel here gets 0.0. The
    budget is about `seconds` per dtype, with at least one round, so a dtype 180x slower costs seconds.
    """
    import statistics

    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    kinds = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    pairs, reps, ok = {}, {}, {d: True for d in dtypes}
    for d in dtypes:
        for shape in shapes:
            m, k, n = shape
            try:
                a, b = torch.randn(m, k, device=dev).to(kinds[d]), torch.randn(k, n, device=dev).to(kinds[d])
                sync()
                t = time.perf_counter()
                a @ b  # the first product sets the kernels up, and says how many make a 20 ms block
                sync()
                reps[d, shape] = max(1, min(200, int(0.02 / max(time.perf_counter() - t, 1e-6))))
                pairs[d, shape] = (a, b)
            except (RuntimeError, TypeError):  # no kernel for this dtype here
                ok[d] = False
    rounds: list[dict[str, float]] = []
    end = time.perf_counter() + seconds * len(dtypes)
    while not rounds or time.perf_counter() < end:
        speeds = {}
        for d in dtypes:
            if not ok[d]:
                continue
            flops = elapsed = 0.0
            for shape in shapes:
                (a, b), r = pairs[d, shape], reps[d, shape]
                sync()
                t = time.perf_counter()
                for _ in range(r):
                    a @ b
                sync()
                elapsed += time.perf_counter() - t
                flops += 2 * shape[0] * shape[1] * shape[2] * r
            speeds[d] = flops / elapsed / 1e9
        rounds.append(speeds)
    peak = {d: round(max(r[d] for r in rounds), 1) if ok[d] else 0.0 for d in dtypes}
    ratio = {d: round(statistics.median(r[d] / r["fp32"] for r in rounds), 3) if ok[d] else 0.0 for d in dtypes}
    return peak, ratio


def shapes_for(shape: tuple[int, int]) -> list[tuple[int, int, int]]:
    hidden, inter = shape
    rows = TOKENS * (16 if _device() != "cpu" else 1)
    return [(rows, hidden, inter), (rows, inter, hidden)]


def model_shape(model: str | None) -> tuple[int, int]:
    """(hidden, intermediate) of `model` from its config; the default shape when it cannot be read."""
    if not model:
        return DEFAULT_SHAPE
    try:

        s = shape_of(model)
        return (int(s.hidden), int(s.intermediate))
    except Exception:  # an unreadable or remote model: measure at the default shape rather than fail
        return DEFAULT_SHAPE


def capability(model: str | None = None, refresh: bool = False) -> Capability:
    """The measured figures for this machine at `model`'s shapes, from the cache when it has them."""
    shape = model_shape(model)
    key = machine_key(shape)
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not refresh and key in cache:
        c = cache[key]
        return Capability(c["device"], key, tuple(c["shape"]), c["gflops"], c.get("ratios") or {})
    import torch

    dtypes = ("fp32", "bf16", "fp16") if _device() != "cpu" else ("fp32", "bf16")
    now = torch.get_num_threads()
    torch.set_num_threads(threads())  # measure on the threads the key names
    try:
        peak, ratios = measure(dtypes, shapes_for(shape))
    finally:
        torch.set_num_threads(now)
    cap = Capability(_device(), key, shape, peak, ratios)
    if cap.device == "cpu":
        cap.gflops["fp16"] = cap.ratios["fp16"] = 0.0  # transformers trains fp16 on a GPU only
    cache[key] = {k: v for k, v in asdict(cap).items() if k != "key"}
    save_cache(path, cache)
    return cap


def save_cache(path: Path, cache: dict) -> None:
    """Write `cache` as JSON in one step (a reader never sees half a file); a read-only home keeps it unsaved."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


def auto_precision(model: str | None = None) -> tuple[str, str]:
    """What `precision: auto` trains in here, and why, in one sentence."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16", f"auto is bf16: this GPU ({_device()}) supports bf16."
        return "fp32", f"auto is fp32: this GPU ({_device()}) has no bf16."
    cap = capability(model)
    r = cap.ratio("bf16")
    if r >= AUTO_CPU_BF16_MIN_RATIO:
        return "bf16", f"auto is bf16: {cap.describe('bf16')}."
    why = f"{cap.describe('bf16')}" + (f"; auto takes bf16 on a CPU only from {AUTO_CPU_BF16_MIN_RATIO:g}x, "
                                       "since the loss trails fp32's" if r >= 1 else "")
    return "fp32", f"auto is fp32: {why}."


def slowdown(precision: str, model: str | None = None) -> str | None:
    """Why `precision` would train slower than fp32 on this machine, as a clause; None when it would not."""
    if precision not in ("bf16", "fp16"):
        return None
    import torch

    if torch.cuda.is_available():
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return f"this GPU ({_device()}) has no bf16"
        return None
    cap = capability(model)
    return None if precision != "bf16" or cap.faster("bf16") else cap.describe("bf16")


def onednn_available() -> bool:
    """Whether this torch has oneDNN's linear: the inference path's packed layers (engine/infer/kernels.py) and
    the training step's frozen products (engine/train/fast_step.py) use it."""
    import torch

    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    model = argv[0] if argv else None
    cap = capability(model, refresh="--refresh" in argv)
    print(f"machine: {cap.key}")
    for d, g in cap.gflops.items():
        print(f"  {d}: {g:,.1f} GFLOP/s" + ("" if d == "fp32" or not g else f"  ({cap.ratio(d):.2f}x fp32)"))
    print(auto_precision(model)[1])
    print(f"cache: {cache_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

