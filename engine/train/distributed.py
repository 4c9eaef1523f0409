"""Several training processes through `accelerate launch` and DeepSpeed ZeRO.

A run whose config sets `zero_stage` above 0 or `num_processes` above 1 is started as

    accelerate launch --use_deepspeed --num_processes N --deepspeed_config_file ds_config.json \\
        -m engine.train.trainer runs/<id>/config.yaml

(`launch_command` builds it; `studio train CONFIG --print-command` prints it for other
machines). Each process runs engine.train.trainer as one rank; rank 0 alone writes events and
outputs. On a GPU machine each process drives one GPU over NCCL; on a machine without a
GPU the processes talk over gloo (DeepSpeed's CPU accelerator), so the same config runs
here and on a GPU cluster.

    python -m engine.train.distributed CONFIG.yaml    # prints the DeepSpeed config for a run config
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def deepspeed_config(cfg) -> dict:
    """The DeepSpeed config for a RunConfig; "auto" values are filled in by transformers' Trainer."""
    zero: dict = {"stage": cfg.zero_stage}
    pin = has_cuda()
    if cfg.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if cfg.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # a whole model file, not shards
    return {
        "zero_optimization": zero,
        # Given, not "auto": the Trainer would size the global batch before the processes meet.
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # the Trainer's AdamW also works with offload
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(cfg, config_path: Path, ds_config_path: Path, port: int | None = None,
                   machines: int = 1, machine_rank: int = 0, main_ip: str | None = None) -> list[str]:
    """`accelerate launch` with DeepSpeed for this run; `num_processes` counts processes on all machines."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--use_deepspeed", "--deepspeed_config_file", str(ds_config_path),
           "--num_processes", str(cfg.num_processes * machines), "--num_machines", str(machines),
           "--mixed_precision", "no",  # the DeepSpeed config decides ("auto" follows the Trainer)
           "--main_process_port", str(port or free_port())]
    if machines > 1:
        cmd += ["--machine_rank", str(machine_rank), "--main_process_ip", main_ip or "MAIN_MACHINE_IP"]
    return cmd + ["-m", "engine.train.trainer", str(config_path)]


def launch_env() -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not has_cuda():
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed's CPU accelerator: gloo between processes
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def is_rank_process() -> bool:
    """True inside a process started by `accelerate launch` (one rank of a distributed run)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes of this run (1 outside `accelerate launch`)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def prepare_rank_state() -> None:
    """Set up accelerate's process state for DeepSpeed before the Trainer does.

    Without a GPU, accelerate starts DeepSpeed's process group but records no backend and
    counts one process, so its gathers fail; naming gloo here makes it count them all. The
    Trainer is then told to use this state (`accelerator_config.use_configured_state`).
    """
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(**({} if has_cuda() else {"backend": "gloo"}))


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (so a Stop ends all ranks at the same step)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device="cuda" if has_cuda() and dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def write_deepspeed_config(cfg, run_dir: Path) -> Path:
    path = run_dir / "ds_config.json"
    path.write_text(json.dumps(deepspeed_config(cfg), indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    from engine.train.config import RunConfig

    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    print(json.dumps(deepspeed_config(RunConfig.from_yaml(sys.argv[1])), indent=2))
