"""The run registry: `runs/<id>/` folders, starting training processes, stopping them.

Each run is a folder holding `config.yaml`, `events.jsonl`, `train.log`, `pid`, its
checkpoints and the final `adapter/`. A run is started as a separate process
(`python -m studio.train_process runs/<id>/config.yaml`: engine/train/trainer.py's main, with the
studio's executor for GRPO's rollouts) in its own process group, so Stop can end
the trainer and anything it spawned (the ranks of a DeepSpeed run included). One run trains
at a time per machine; others wait in a queue. Everything here is derived from those files: a
restarted app finds the same runs.

The runs folder is `$STUDIO_RUNS`, else `/data/runs` when `/data` is writable (persistent
storage on Hugging Face Spaces), else `./runs`.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

from engine import owners
from engine.errors import RunError
from engine.train.checkpoints import newest
from engine.train.config import RunConfig
from engine.train.events import Evaluated, EventLog, Logged, RunState, TERMINAL

# Stop during training waits for the step and a save: twice the run's slowest measured step plus two saves
# (checkpoint and adapter), and at least the floor; before any step is timed, the first-step grace.
STOP_GRACE_FLOOR_S = 30.0
FIRST_STEP_GRACE_S = 120.0
# A trainer still starting ends at once on Stop; this is how long "at once" may take (a C call in progress).
STARTUP_GRACE_S = 30.0
# the training process's module: the trainer composed with what this stage may not import (studio/train_process.py)
TRAINER = "studio.train_process"
ACTIVE = ("running", "queued", "stopping")  # a process is alive for the run


def runs_root() -> Path:
    if os.environ.get("STUDIO_RUNS"):
        root = Path(os.environ["STUDIO_RUNS"])
    elif os.path.isdir("/data") and os.access("/data", os.W_OK):
        root = Path("/data/runs")
    else:
        root = Path("runs")
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def _pid_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (ended, not yet reaped by its parent) counts as ended."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


@dataclass
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def owner(self) -> str:
        """Whose run it is (engine/owners.py); runs made before owners existed are the local owner's."""
        return owners.owner_of(self.dir)

    @property
    def events(self) -> EventLog:
        return EventLog(self.dir / "events.jsonl")

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_yaml(self.dir / "config.yaml")

    @property
    def adapter(self) -> Path | None:
        path = self.dir / "adapter"
        return path if (path / "adapter_config.json").exists() else None

    @property
    def base_model(self) -> str:
        """The weights the adapter was trained on: the config's model, or, for a run started from another
        run's adapter (init_from), that run merged (written when this run started)."""
        cfg = self.config
        if not cfg.init_from:
            return cfg.model
        start = Run(self.dir.parent / cfg.init_from)
        return str(start.model_dir or start.dir / "merged")

    @property
    def model_dir(self) -> Path | None:
        """The whole fine-tuned model, for methods that train the model's own weights (full, freeze)."""
        path = self.dir / "model"
        return path if (path / "config.json").exists() else None

    @property
    def weights(self) -> Path | None:
        """What the run answers with: its whole model (full, freeze) or its adapter; None until it saved one."""
        return self.model_dir or self.adapter

    def no_weights(self) -> str:
        """The sentence for a run with no weights yet (`weights` is None), for any action that needs them."""
        return f"run {self.id} has no saved adapter or model yet ({self.status()})"

    def pid(self) -> int | None:
        try:
            return int((self.dir / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def state(self) -> RunState:
        """What the run's events say (engine.train.events.fold), read from where this process last stopped reading."""
        return self.events.state()

    def status(self) -> str:
        """created, queued, running, stopping, finished, stopped, failed or interrupted. Only reads: a process
        that ended without a word reads as interrupted (stopped, if a Stop was asked); `launch` records it."""
        return _status(self.state(), self.pid())

    def logged(self) -> list[Logged]:
        """The logged training steps, in order, over every process of the run."""
        return list(self.state().logged)

    def evaluations(self) -> list[Evaluated]:
        return list(self.state().evaluations)

    def wait(self, timeout: float | None = None, poll_s: float = 0.3) -> str:
        """Block until the run is no longer running or queued; its status then. TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.status()) in ACTIVE:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} is still {status} after {timeout:.0f} s")
            time.sleep(poll_s)
        return status

    def summary(self) -> dict:
        st = self.state()
        last = st.logged[-1] if st.logged else None
        status = _status(st, self.pid())
        return {
            "id": self.id,
            "status": status,
            "step": last.step if last else 0,
            "total_steps": st.total_steps,
            "loss": last.loss if last else None,
            "tokens_per_s": last.tokens_per_s if last else None,
            "eta_s": last.eta_s if last else None,
            "memory_mb": last.memory_mb if last else None,
            "rewards_accuracy": last.rewards_accuracy if last else None,
            "rewards_margin": last.rewards_margin if last else None,
            "reward": last.reward if last else None,
            "reward_std": last.reward_std if last else None,
            "generate_share": last.generate_share if last else None,
            "reason": st.ended.reason if st.ended else _unsaid_ending(self, st)[1] if status in TERMINAL else None,
            "warnings": st.warnings,
            "queue_position": queue_position(self) if status == "queued" else None,
            "stopping": st.stopping,
        }


def _status(st: RunState, pid: int | None) -> str:
    if st.ended:
        return st.ended.kind
    if pid is not None and _pid_alive(pid):
        return "stopping" if st.stopping else "queued" if st.waiting else "running"
    if pid is None:  # being launched this instant, or never launched
        return "queued" if st.launches else "created"
    return "stopped" if st.stopping else "interrupted"


def _unsaid_ending(run: Run, st: RunState) -> tuple[str, str]:
    """(kind, reason) for the newest process when it ended without writing how."""
    if st.stopping:
        return "stopped", _stopped_reason(run, st)
    return "interrupted", "the training process ended without saying why (killed, or out of memory)"


# What libraries that write files say when the disk is full: some wrap the OSError in their own error
# (safetensors: "Os { code: 28 ..."); torch.save's writer only sees a short write ("unexpected pos").
_FULL = ("no space left on device", "file too large", "disk quota exceeded", "os { code: 28", "os { code: 27",
         "pytorchstreamwriter failed writing", "unexpected pos")


def storage_problem(exc: BaseException) -> str | None:
    """One sentence for a full disk or an output folder that cannot be written; None for other errors."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or any(s in str(exc).lower() for s in _FULL):
        return "The disk is full: free space where the runs are kept (or set STUDIO_RUNS to another disk), then resume."
    if code in (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOTDIR):
        return (f"The runs folder cannot be written ({exc.strerror}: {exc.filename}); "
                "set STUDIO_RUNS to a writable folder.")
    return None


def unguessable(what: str) -> str:
    """An id for a run or a decision: its date and time to read it by, what it is, and 40 random bits, so a
    person who knows when another's run started still cannot name it (ids are what the page checks)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{what}-{secrets.token_hex(5)}"


def register(config: RunConfig, root: Path | None = None, owner: str = owners.LOCAL) -> Run:
    """Write a new run folder with its owner and its config, relative paths made absolute first. It checks
    nothing: a run is created through engine/train/preflight.py's `create_run`, which refuses what cannot run
    first."""
    config.data = [str(Path(p).expanduser().resolve()) if Path(p).expanduser().exists() else p
                   for p in config.data_files()]
    for name in ("val_data", "model"):
        path = Path(getattr(config, name)).expanduser()
        if getattr(config, name) and path.exists():
            setattr(config, name, str(path.resolve()))
    root = root or runs_root()
    what = config.method + (f"-{config.objective}" if config.objective != "sft" else "")
    run_dir = root / unguessable(what)
    while run_dir.exists():
        run_dir = root / unguessable(what)
    run_dir.mkdir(parents=True)
    owners.claim(run_dir, owner)  # before the config: a listing never sees the run without its owner
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    return Run(run_dir)


def list_runs(root: Path | None = None, owner: str | None = None) -> list[Run]:
    """Every run (None), or those of `owner`, newest first."""
    root = root or runs_root()
    runs = [Run(p) for p in root.iterdir() if (p / "config.yaml").exists()
            and (owner is None or owners.owner_of(p) == owner)]
    # newest first by when each was created (two runs made in the same second share their id's time stamp)
    return sorted(runs, key=lambda r: ((r.dir / "config.yaml").stat().st_mtime_ns, r.id), reverse=True)


def measured_throughput(model: str, root: Path | None = None) -> float | None:
    """Tokens per second of the newest SFT run of `model` that logged any, for time estimates."""
    for run in list_runs(root):
        logged = run.logged()
        if logged and logged[-1].tokens_per_s:
            try:
                used, objective = run.config.model, run.config.objective
            except Exception:  # a run folder with an unreadable config is skipped, not fatal
                continue
            if used in (model, str(Path(model).expanduser().resolve())) and objective == "sft":
                return float(logged[-1].tokens_per_s)
    return None


def active_run(root: Path | None = None) -> Run | None:
    return next((r for r in list_runs(root) if r.status() == "running"), None)


def _slot_runs(root: Path) -> list[Run]:
    """Every run that takes the machine's one training slot of the runs folder `root`: its runs and its
    probes' (runs/probes/, engine/advise/probe.py)."""
    root = root.parent if root.name == "probes" else root
    probes = root / "probes"
    return list_runs(root) + (list_runs(probes) if probes.is_dir() else [])


def runs_in_flight(owner: str, root: Path | None = None) -> list[Run]:
    """`owner`'s runs queued, running or stopping (their probes' included): what the per-person limit counts."""
    return [r for r in _slot_runs(root or runs_root()) if r.owner == owner and r.status() in ACTIVE]


def queue_order(root: Path | None = None) -> list[Run]:
    """The waiting runs in the order they will train, fair between people: first the runs whose owner has
    the fewest runs ahead of them (training, or waiting since earlier), then the run whose turn came first:
    when it was queued, or when its owner's last training ended if that was later. So a person's second run
    waits behind everyone else's first, even after their first has ended, and a run of one person is never
    delayed by another's queue of runs; with one owner it is first come, first served."""
    training, waiting, last_trained = {}, [], {}
    for run in _slot_runs(root or runs_root()):
        status, st = run.status(), run.state()
        if status in ("running", "stopping"):
            training[run.owner] = training.get(run.owner, 0) + 1
        elif status == "queued":
            queued = [e.time for e in st.session if e.kind in ("queued", "launched")]
            waiting.append((queued[-1] if queued else float("inf"), run.id, run))
        elif st.ended and st.started:  # trained, then ended: its owner had a turn until then
            last_trained[run.owner] = max(last_trained.get(run.owner, 0.0), st.ended.time)
    order, ahead = [], dict(training)
    for when, rid, run in sorted(waiting, key=lambda w: (w[0], w[1])):
        order.append((ahead.get(run.owner, 0), max(when, last_trained.get(run.owner, 0.0)), rid, run))
        ahead[run.owner] = ahead.get(run.owner, 0) + 1
    return [run for *_, run in sorted(order, key=lambda o: o[:3])]


def queue_position(run: Run) -> int | None:
    """1 for the next run to train, 2 for the one after, ... (see `queue_order`); None when `run` is not
    waiting."""
    ids = [r.id for r in queue_order(run.dir.parent)]
    return 1 + ids.index(run.id) if run.id in ids else None


def launch(run: Run, lock: Path | None = None) -> subprocess.Popen:
    """Start the training process for `run` in its own process group.

    Only one run trains at a time on a machine: if another holds the slot, the new process
    waits in the queue (status "queued", see `queue_position`) and starts when it is free.
    The slot is the lock file `lock` (default: `.training.lock` in the run's folder of runs).
    """
    pid = run.pid()
    deadline = time.monotonic() + 15  # a process that wrote its last event may still be exiting
    while pid is not None and _pid_alive(pid) and run.status() in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid is not None and _pid_alive(pid):
        raise RunError(f"Run {run.id} is already {run.status()}.")
    st = run.state()
    if pid is not None and st.launches and st.ended is None:  # the last process ended without a word: say so
        kind, reason = _unsaid_ending(run, st)
        run.events.write(kind, reason=reason)
    (run.dir / "pid").unlink(missing_ok=True)
    others_busy = any(r.id != run.id and r.status() in ACTIVE for r in list_runs(run.dir.parent))
    run.events.write("launched")  # before the process exists: its own events always come after
    if others_busy:
        run.events.write("queued")  # shown at once; the process leaves the queue when the slot is free
    log = open(run.dir / "train.log", "ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STUDIO_LOCK": str(lock or run.dir.parent / ".training.lock")}
    proc = subprocess.Popen(
        [sys.executable, "-m", TRAINER, str(run.dir / "config.yaml")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env, cwd=Path(__file__).resolve().parents[2],
    )
    (run.dir / "pid").write_text(str(proc.pid))
    # Reap the child when it ends so it never lingers as a zombie of the app.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def _launches(run: Run) -> int:
    return run.state().launches


def stop_grace(run: Run) -> tuple[float, float]:
    """(grace, expected) seconds for a trainer to finish its step and save: expected is one step and two
    saves (checkpoint, adapter) at the slowest measured in any of the run's processes; the grace twice that,
    and at least the floor."""
    st = run.state()
    if st.slowest_step_s is None:
        return FIRST_STEP_GRACE_S, FIRST_STEP_GRACE_S / 2
    expected = st.slowest_step_s + 2 * st.slowest_save_s
    return max(STOP_GRACE_FLOOR_S, 2 * expected), expected


def _stopped_reason(run: Run, st: RunState) -> str:
    kept = newest(run.dir / "checkpoints")
    if st.waiting:
        return "Stopped while waiting in the queue; nothing was trained."
    if st.started is None:
        return (f"Stopped before training began; {kept.name} is kept, and Resume continues from it." if kept
                else "Stopped before training began; nothing was trained.")
    return (f"Stopped; {kept.name} is the newest complete checkpoint, and Resume continues from it." if kept
            else "Stopped; no checkpoint had been saved, so Resume starts from the beginning.")


def stop(run: Run, wait: bool = True, grace_s: float | None = None) -> str:
    """Ask the trainer to stop; end its whole process group only if it has not ended within the grace.

    A trainer still starting (queued, importing, loading, tokenizing) ends at once. One that is training
    finishes its step and saves a checkpoint; the grace comes from its own measured step and save times
    (`stop_grace`), and the status reads "stopping" meanwhile. `wait=False` returns at once and watches the
    process from a thread (the UI); `grace_s` overrides the grace (0: end it now).
    """
    pid = run.pid()
    if pid is None or not _pid_alive(pid) or run.status() not in ACTIVE:
        return run.status()
    st = run.state()
    training = st.started is not None
    grace, expected = stop_grace(run) if training else (STARTUP_GRACE_S, 0.0)
    grace = grace if grace_s is None else grace_s
    if st.stopping is None:
        run.events.write("stopping", step=(st.logged[-1].step + 1) if training and st.logged else None,
                         grace_s=round(grace, 1), expected_s=round(expected, 1), training=training)
    launches = _launches(run)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not wait:
        threading.Thread(target=_end_stop, args=(run, pid, launches, grace), daemon=True).start()
        return run.status()
    return _end_stop(run, pid, launches, grace)


def _end_stop(run: Run, pid: int, launches: int, grace: float) -> str:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    killed = _pid_alive(pid)
    if killed:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for _ in range(50):  # the kill takes effect within moments
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
    st = run.state()
    if _launches(run) == launches and st.ended is None:  # only about the process signalled, not a later Resume
        if killed:

            kept = newest(run.dir / "checkpoints")
            run.events.write("interrupted", reason=f"Stop did not end the trainer within {grace:.0f} s, so its "
                             "processes were ended; " + (f"{kept.name} is the newest complete checkpoint, and "
                                                          "Resume continues from it." if kept else
                                                          "no checkpoint had been saved, so Resume starts from "
                                                          "the beginning."))
        else:  # it ended on the signal without a word (still importing, before its handler was set)
            run.events.write("stopped", reason=_stopped_reason(run, st))
    return run.status()


def history(root: Path | None = None, owner: str | None = None) -> list[dict]:
    """One row per run (of `owner`, or every run), newest first, read from the run folders (so it survives a
    restart)."""
    rows = []
    for run in list_runs(root, owner):
        try:
            cfg = run.config
        except Exception:  # a folder whose config cannot be read still shows, as broken
            rows.append({"run": run.id, "status": "unreadable"})
            continue
        st = run.state()
        losses = st.losses()
        rows.append({
            "run": run.id, "status": run.status(), "model": Path(cfg.model).name, "method": cfg.method,
            "objective": cfg.objective + (f" from {cfg.init_from}" if cfg.init_from else ""),
            "data": ", ".join(Path(p).name for p in cfg.data_files()),
            "final loss": round(losses[-1].loss, 4) if losses else None,
            "steps": losses[-1].step if losses else 0,
            "minutes": round((st.last_time - st.first_time) / 60, 1) if st.first_time is not None else 0.0,
        })
    return rows


def curves(run_ids: list[str], root: Path | None = None) -> list[dict]:
    """(run, step, loss) rows of several runs, to draw their loss curves over each other."""
    root = root or runs_root()
    return [{"run": rid, "step": e.step, "loss": e.loss} for rid in run_ids for e in Run(root / rid).state().losses()]


def smoothed(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's start-up correction (weight 0: the values as they are).

    pandas' `ewm(adjust=True)` is that very average: each point weighs the earlier ones by weight**age
    and divides by the weights' sum, which is the correction TensorBoard applies.
    """
    if not weight or not values:
        return list(values)
    return pd.Series(values, dtype=float).ewm(alpha=1 - weight, adjust=True).mean().tolist()


def metrics(run: Run, smoothing: float = 0.6) -> dict[str, list[dict]]:
    """What the Train tab plots, as rows: loss (train raw, train smoothed, eval), learning rate, tokens/s."""
    st = run.state()
    logged = st.losses()
    steps = [e.step for e in logged]
    loss = [{"step": e.step, "value": e.loss, "series": "train"} for e in logged]
    loss += [{"step": s, "value": v, "series": "train, smoothed"}
             for s, v in zip(steps, smoothed([e.loss for e in logged], smoothing))]
    loss += [{"step": e.step, "value": e.eval_loss, "series": "eval"} for e in st.evaluations
             if isinstance(e.eval_loss, (int, float))]
    return {
        "loss": loss,
        "learning_rate": [{"step": e.step, "value": e.learning_rate} for e in logged
                          if isinstance(e.learning_rate, (int, float))],
        "tokens_per_s": [{"step": e.step, "value": e.tokens_per_s} for e in logged
                         if isinstance(e.tokens_per_s, (int, float))],
        # preference objectives: trl's rewards (DPO, KTO, SimPO, ORPO) and ORPO's log-odds ratio, train and eval
        "rewards": _series(st, (("rewards_chosen", "chosen"), ("rewards_rejected", "rejected"),
                                ("rewards_margin", "margin"))),
        "reward_accuracy": _series(st, (("rewards_accuracy", "accuracy"),)),
        "log_odds_ratio": _series(st, (("log_odds_ratio", "log-odds ratio"),)),
        # GRPO: the total reward (mean, and mean +- spread) and each function's mean; completion length; KL
        "grpo_reward": _grpo_rewards(logged_all(st)),
        "completion_length": _series(st, (("completion_length", "mean length"),)),
        "kl": _series(st, (("kl", "KL"),)),
    }


def logged_all(st) -> list:
    """Every logged step that carries a GRPO reward."""
    return [e for e in st.logged if isinstance(e.reward, (int, float))]


def _grpo_rewards(logged: list) -> list[dict]:
    rows = []
    for e in logged:
        rows.append({"step": e.step, "value": e.reward, "series": "total"})
        if isinstance(e.reward_std, (int, float)):
            rows += [{"step": e.step, "value": e.reward - e.reward_std, "series": "total - spread"},
                     {"step": e.step, "value": e.reward + e.reward_std, "series": "total + spread"}]
        for name, (mean, _std) in (e.reward_functions or {}).items():
            if isinstance(mean, (int, float)):
                rows.append({"step": e.step, "value": mean, "series": name})
    return rows


def samples(run: Run, last: int = 3) -> list[dict]:
    """GRPO's sampled completions of the run's last `last` sample events, newest first, as table rows."""
    rows = []
    for event in reversed(run.state().samples[-last:]):
        for r in event.rows:
            said = ", ".join(f"{k} {v:.2f}" if isinstance(v, (int, float)) else f"{k} -"
                             for k, v in (r.get("rewards") or {}).items())
            rows.append({"step": event.step, "prompt": r.get("prompt", ""), "completion": r.get("completion", ""),
                         "reference": r.get("answer") or "", "rewards": said, "total": r.get("total")})
    return rows


def _series(st, fields) -> list[dict]:
    out = []
    for source, prefix in ((st.logged, ""), (st.evaluations, "eval ")):
        for e in source:
            for name, label in fields:
                value = getattr(e, name, None)
                if isinstance(value, (int, float)):
                    out.append({"step": e.step, "value": value, "series": prefix + label})
    return out


def config_diff(run_ids: list[str], root: Path | None = None) -> list[dict]:
    """The config fields on which the runs differ: one row per field, one column per run."""
    root = root or runs_root()
    configs = {rid: Run(root / rid).config.to_dict() for rid in run_ids}
    fields = list(next(iter(configs.values()), {}))
    return [{"field": f, **{rid: str(c.get(f)) for rid, c in configs.items()}} for f in fields
            if len({str(c.get(f)) for c in configs.values()}) > 1]
