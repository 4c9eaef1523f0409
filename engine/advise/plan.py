"""The plan of a run on a device: memory per device against its capacity, the GPUs it needs when it does
not fit, and the time and cost from a throughput measured here.

It composes the estimate's formulas (engine/advise/estimate.py), this machine's measured capability
(engine/capability.py) and the run history (the newest run's tokens/s, engine/train/runs.py): advice,
not a formula. The Method tab's estimate shows it.

    python -m engine.advise.plan MODEL [--method lora] [--device "NVIDIA L4 (24 GB)"] [--tokens 100000]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import psutil

from engine.advise.estimate import (Estimate, GB, GPUS, OBJECTIVE_COST, OBJECTIVE_NOTES, TRAINING_UTILISATION,
                                    estimate_memory, estimate_time, gpus_needed, throughput_from_peak)
from engine.capability import auto_precision, capability
from engine.models import ModelShape, shape_of
from engine.train.runs import measured_throughput

CPU = "This machine (CPU, its RAM)"


def ram_gb() -> float:
    """This machine's memory, for a plan on its CPU."""
    return psutil.virtual_memory().total / GB


@dataclass
class Plan:
    """What a run would need and take on a device: memory per device against its capacity, the GPUs it
    needs with ZeRO-3 when it does not fit, and the time and cost from a throughput measured here."""
    shape: ModelShape
    method: str
    device: str
    gpus: int
    memory: "Estimate"
    capacity_gb: float
    gpus_needed: int | None = None  # asked only when it does not fit on a GPU; 0: not even over 512
    tokens: int | None = None
    epochs: float = 1.0
    speed: float | None = None  # tokens per second per process
    speed_source: str = ""
    price: float = 0.0
    objective: str = "sft"

    @property
    def total_gb(self) -> float:
        return self.memory.total / GB

    @property
    def fits(self) -> bool:
        return self.total_gb <= self.capacity_gb

    @property
    def time(self) -> dict | None:
        if not (self.tokens and self.speed):
            return None
        return estimate_time(int(self.tokens), self.epochs, self.speed, self.gpus, self.price)

    def bars(self) -> list[dict]:
        on = "CPU" if self.device == CPU else self.device.split(" (")[0]
        rows = [{"config": f"{self.method}, {self.gpus} x {on}", "part": part, "GiB": gb}
                for part, gb in self.memory.parts_gb().items()]
        return rows + [{"config": "available", "part": "capacity", "GiB": round(self.capacity_gb, 1)}]

    def sentences(self) -> list[str]:
        e, shape = self.memory, self.shape
        moved = f" ({e.cpu_offloaded / GB:.2f} GiB moved to CPU memory by offload)" if e.cpu_offloaded else ""
        out = [f"**{shape.name}**: {shape.params / 1e6:,.1f} M parameters; `{self.method}` trains {e.trainable:,} "
               f"({e.trainable / shape.params:.2%}).",
               *([f"Objective `{self.objective}`: " + OBJECTIVE_NOTES[self.objective]] if self.objective != "sft"
                 else []),
               f"Peak per device: **{self.total_gb:.2f} GiB**, which {'fits' if self.fits else 'does **not** fit'} "
               f"in {self.capacity_gb:.0f} GiB{moved}."]
        if self.gpus_needed is not None:
            out.append(f"With ZeRO-3 it needs {self.gpus_needed} of these GPUs." if self.gpus_needed
                       else "Too large even over 512 GPUs.")
        t = self.time
        if t:
            out.append(f"Time: {self.tokens:,.0f} tokens x {self.epochs:g} epochs at {self.speed:.0f} tokens/s "
                       f"({self.speed_source}) = **{t['hours'] * 60:.1f} min**; {t['gpu_hours']:.2f} GPU-hours = "
                       f"**{t['cost']:.2f}** at {self.price:.2f} per GPU-hour.")
        elif self.tokens:
            out.append(f"Time: {self.tokens:,.0f} tokens per epoch; run the probe (or one training) on this model "
                       "to measure its tokens per second.")
        return out


def plan(model: str, method: str = "lora", device: str = CPU, gpus: int = 1, zero_stage: int = 0,
         offload: str = "none", batch_size: int = 4, seq_len: int = 512, checkpointing: bool = False,
         rank: int = 16, epochs: float = 1.0, price: float = 0.0, tokens: int | None = None,
         objective: str = "sft") -> Plan:
    """The plan of a run of `method` on `model` over `device` (CPU, or a name of GPUS), with `tokens` per epoch.

    On this machine's CPU the memory is in the precision `auto` trains in, and the speed is the newest
    run's measured tokens/s on this model, else the matrix-product peak measured here at the share of it
    that training reaches (engine/capability.py).
    """
    shape = shape_of(model)
    on_cpu = device == CPU
    n = 1 if on_cpu else int(gpus)
    precision = auto_precision(model)[0] if on_cpu else "bf16"
    memory = estimate_memory(shape, method, precision, int(rank), int(batch_size), int(seq_len), bool(checkpointing),
                             n, int(zero_stage) if n > 1 or offload != "none" else 0, offload,
                             "cpu" if on_cpu else "gpu", objective=objective)
    result = Plan(shape, method, device, n, memory, ram_gb() if on_cpu else GPUS[device], tokens=tokens,
                  epochs=float(epochs), price=float(price or 0), objective=objective)
    if not result.fits and not on_cpu:
        result.gpus_needed = gpus_needed(shape, result.capacity_gb, method, zero_stage=3, rank=int(rank),
                                         batch_size=int(batch_size), seq_len=int(seq_len),
                                         gradient_checkpointing=bool(checkpointing))
    result.speed, result.speed_source = measured_throughput(model), "measured here on this model"
    if result.speed and objective != "sft":  # measured on SFT runs: the objective's extra work slows it
        result.speed /= OBJECTIVE_COST[objective][1]
        result.speed_source += f", divided by {OBJECTIVE_COST[objective][1]:g} for {objective}'s extra passes"
    if not result.speed and on_cpu:
        peak = capability(model).peak(precision)
        result.speed = throughput_from_peak(shape, method, peak, objective=objective)
        result.speed_source = (f"estimated: {peak:.0f} GFLOP/s measured here in {precision} at "
                               f"{TRAINING_UTILISATION:.0%} utilisation; one training run measures it")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.advise.plan", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--method", default="lora")
    p.add_argument("--device", default=CPU, choices=(CPU, *GPUS))
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--tokens", type=int, help="tokens per epoch, for the time")
    a = p.parse_args(argv)
    for line in plan(a.model, a.method, a.device, a.gpus, tokens=a.tokens).sentences():
        print(line.replace("**", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
