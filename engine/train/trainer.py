"""One training run: read runs/<id>/config.yaml, fine-tune with trl's SFTTrainer (or, for a preference
objective, trl's DPO / ORPO / KTO / CPO trainer, for grpo its GRPO trainer: engine/train/objectives.py), write events.

    python -m engine.train.trainer runs/<id>/config.yaml

This is what the UI starts in a separate process, and what `studio train CONFIG.yaml`
runs in the foreground. Progress goes to `events.jsonl` beside the config (see
engine/train/events.py); checkpoints to `checkpoints/`; the adapter to `adapter/`.
SIGTERM or SIGINT while the run is still starting (importing, loading, tokenizing) ends it at
once as "stopped before training began"; during training it asks the trainer to finish the
step, save a checkpoint and end as "stopped".
Errors a person can cause end the run as "failed" with one sentence; the traceback goes
to train.log only.

`main(argv, sampler=...)` takes what samples GRPO's rollouts in place of transformers' `generate`: the
process the studio starts (studio/train_process.py) passes the executor's (engine/infer/rollouts.py), which
this stage may not import.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from engine.data.dataset import DataError, load_examples, split_examples, tokenize_example
from engine.data.formats import parse_mapping
from engine.data import prompts
from engine.data.pairs import data_refusal, rows
from engine.train.merge import merge_weights
from engine.models import ModelError, load_causal_lm, load_tokenizer, resolve_model
from engine.train import checkpoints, distributed, fast_step, methods, objectives, preflight, rewards
from engine.train.config import ConfigError, RunConfig
from engine.train.events import Evaluated, EventLog
from engine.train.runs import Run, queue_position, storage_problem


EVALUATED_FIELDS = {f.name for f in dataclasses.fields(Evaluated)}


class StopBeforeTraining(BaseException):
    """Raised by a Stop while the run is still starting: nothing is trained yet, so it ends at once.

    A BaseException, like KeyboardInterrupt, so that no library's `except Exception` swallows it.
    """


class _StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self.abort = False  # True while starting up: a Stop then ends the process at once

    def __call__(self, signum, frame) -> None:
        self.requested = True
        if self.abort:
            self.abort = False
            raise StopBeforeTraining()


def _reporters(cfg: RunConfig) -> list[str]:
    import importlib.util

    modules = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for name in cfg.reporters():
        if importlib.util.find_spec(modules[name]) is None:
            raise ConfigError(f"report_to: {name} is not installed (pip install {name}); "
                              "or leave it out of report_to.")
    return cfg.reporters()


def sft_config(cfg: RunConfig, output_dir: Path, has_eval: bool = False, ds_config: Path | None = None,
               padding_free: bool | None = None):
    """trl's config for the run: SFTConfig, or the preference trainer's (engine/train/objectives.py).
    `padding_free`: whether batches go end to end (default: as the config says; the faster step may ask it)."""
    from trl import SFTConfig

    common = trainer_arguments(cfg, output_dir, has_eval, ds_config)
    if cfg.objective != "sft":

        return objectives.trainer_class_and_args(cfg, common)[1]
    padding_free = cfg.padding_free if padding_free is None else padding_free
    if padding_free or cfg.packing:
        # no padding in such batches, and "non_padding" would skip every token equal to the pad id (the
        # default model's end of turn): each token counts
        common["include_num_input_tokens_seen"] = "all"
    return SFTConfig(
        **common,
        # Padding-free batches are cut to max_length when tokenized (trl does not cut them itself); packed
        # rows are max_length long, and trl's best-fit packing cuts an example longer than that.
        max_length=None if padding_free and not cfg.packing else cfg.max_length,
        padding_free=padding_free,
        packing=cfg.packing,
    )


def trainer_arguments(cfg: RunConfig, output_dir: Path, has_eval: bool = False,
                      ds_config: Path | None = None) -> dict:
    """The arguments every trl trainer of the studio takes alike."""
    import torch

    on_gpu = torch.cuda.is_available()
    precision = preflight.precision(cfg)  # once: `auto` reads the measured capability (a file and the model's config)
    extra = {"deepspeed": str(ds_config), "accelerator_config": {"use_configured_state": True}} if ds_config else {}
    return dict(
        **extra,
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of all steps
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,  # trl turns it on by default; it costs time
        # Early stopping compares evaluations and keeps the best checkpoint.
        load_best_model_at_end=has_eval and cfg.early_stopping_patience > 0,
        metric_for_best_model="eval_loss" if has_eval and cfg.early_stopping_patience > 0 else None,
        greater_is_better=False if has_eval and cfg.early_stopping_patience > 0 else None,
        seed=cfg.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu and precision == "bf16",  # transformers' way of allowing CPU autocast
        report_to=_reporters(cfg) or "none",
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not hidden
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def _numel(p) -> int:
    """Numbers in a parameter as the model defines it: a 4-bit one is packed two to a byte, a ZeRO-3 one split."""
    quant = getattr(p, "quant_state", None)
    if quant is not None and getattr(quant, "shape", None) is not None:
        return quant.shape.numel()
    return getattr(p, "ds_numel", None) or p.numel()


def _event_callback(events: EventLog, stop: _StopRequest, rollouts: objectives.Rollouts | None = None,
                    cfg: RunConfig | None = None, step: str | None = None):
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        losses: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            stop.abort = False  # from here on a Stop finishes the step and saves
            self.t0 = self.step_end = self.last_log = time.monotonic()
            self.generated = 0.0
            self.tokens0 = state.num_input_tokens_seen
            model = kw.get("model")
            params = [(_numel(p), p.requires_grad) for p in model.parameters()] if model is not None else []
            events.write("started", pid=os.getpid(), total_steps=state.max_steps, device=str(args.device),
                         processes=args.world_size, params=sum(n for n, _ in params),
                         trainable_params=sum(n for n, grad in params if grad),
                         precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
                         **({"rollouts": rollouts.sampled_by} if rollouts is not None else {}),
                         **({"step": step} if step else {}))

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "eval_loss" in logs:
                events.write("evaluated", step=state.global_step, total_steps=state.max_steps,
                             eval_loss=float(logs["eval_loss"]), **_preference_metrics(logs, "eval_"))
                return
            if "loss" not in logs:
                return
            elapsed = time.monotonic() - self.t0
            step, total = state.global_step, state.max_steps
            tokens = state.num_input_tokens_seen - self.tokens0
            loss = float(logs["loss"])
            self.losses.append(loss)
            grpo = {}
            if rollouts is not None:  # GRPO: each function's reward, and the share of the time spent generating
                now = time.monotonic()
                share = (rollouts.generate_s - self.generated) / max(now - self.last_log, 1e-9)
                self.last_log, self.generated = now, rollouts.generate_s
                grpo = {"reward_functions": objectives.reward_metrics(logs), "generate_share": round(min(share, 1), 3)}
            events.write(
                "logged", step=step, total_steps=total,
                loss=loss if math.isfinite(loss) else str(loss),
                learning_rate=logs.get("learning_rate"), epoch=round(state.epoch or 0, 3),
                tokens=tokens, tokens_per_s=round(tokens / elapsed, 1) if elapsed > 0 else None,
                elapsed_s=round(elapsed, 3),
                eta_s=round(elapsed / step * (total - step), 1) if step else None,
                memory_mb=peak_memory_mb(), **_preference_metrics(logs), **grpo,
            )
            if rollouts is not None and cfg.sample_every and (step % cfg.sample_every == 0 or step == 1):
                events.write("samples", step=step, rows=rollouts.samples())
            if not math.isfinite(loss):  # stop now, and never save the broken weights as a checkpoint
                stop.requested = True
                self.bad_loss = loss
                control.should_training_stop = True
                control.should_save = False
                control.should_evaluate = False

        def on_save(self, args, state, control, **kw):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if distributed.rank() == 0 and path.is_dir():
                checkpoints.mark_complete(path)  # after the trainer's save: the checkpoint is whole
            # seconds: from the end of the step to the end of the save (logging and evaluation included),
            # which Stop's grace is measured from.
            events.write("checkpoint", step=state.global_step, path=str(path),
                         seconds=round(time.monotonic() - self.step_end, 3))

        def on_step_end(self, args, state, control, **kw):
            self.step_end = time.monotonic()
            stop.requested = distributed.any_rank(stop.requested)  # every rank stops at the same step
            if stop.requested:
                control.should_training_stop = True
                control.should_save = not hasattr(self, "bad_loss")

    return EventCallback()


def _preference_metrics(logs: dict, prefix: str = "") -> dict:
    """The rewards and log-odds a preference trainer logs, and GRPO's reward, KL and lengths, as event fields
    (none for SFT); an evaluation's are those the Evaluated event holds."""
    keep = EVALUATED_FIELDS if prefix else None
    return {field: float(logs[prefix + key]) for key, field in objectives.METRICS.items()
            if isinstance(logs.get(prefix + key), (int, float)) and (keep is None or field in keep)}


def _save_atomic(trainer, tokenizer, target: Path) -> None:
    """Write the output to a temporary name, then rename: a half-written output never looks finished."""
    tmp = target.with_name(target.name + ".tmp")
    main = distributed.rank() == 0
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # every rank takes part (ZeRO-3 gathers the weights); rank 0 writes
    if main:
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)


def peak_memory_mb() -> float:
    """Peak memory of this training process: allocated GPU memory on a GPU, else its peak resident memory.

    Linux's VmHWM is the process's own peak since it started; ru_maxrss would also carry the peak of the
    process that forked it (the app, at 1 GB and more), so a small run would read as large as the app.
    """
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        with open("/proc/self/status") as fh:
            return round(int(next(l for l in fh if l.startswith("VmHWM")).split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError, IndexError):  # not Linux
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _fault() -> tuple[str, float] | None:
    """STUDIO_FAULT=nan@STEP, oom@STEP or slow@SECONDS injects a fault into training (for the fault tests).

    STUDIO_FAULT=@FILE reads the same from FILE when the run starts (none when FILE is missing), so one
    app started for a test module can give a single run a fault.
    """
    text = os.environ.get("STUDIO_FAULT", "")
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text().strip()
        except OSError:
            return None
    kind, _, value = text.partition("@")
    try:
        number = float(value)
    except ValueError:
        return None
    return (kind, number) if kind in ("nan", "oom", "slow") else None


def _install_fault(trainer) -> None:
    """STUDIO_FAULT=nan@STEP makes that step's loss NaN; oom@STEP raises out-of-memory there; slow@SECONDS
    makes every training step last at least SECONDS (a step that is slow for certain, for the Stop tests).

    A forward hook on the model's backbone (the decoder every step runs, whichever computes the loss after
    it: trl's head, the studio's faster step, a preference trainer), so the trainer itself is unchanged; a
    NaN there makes the loss NaN.
    """
    fault = _fault()
    if fault is None:
        return
    import torch

    kind, step = fault

    def hook(module, args, kwargs, output):
        if kind == "slow":
            if module.training:
                time.sleep(step)
            return output
        # nan: a training forward only (with gradients); GRPO's sampling runs without them, and NaN logits
        # there would fail the sampler before the loss could show the NaN
        if module.training and trainer.state.global_step + 1 == step and (kind == "oom" or torch.is_grad_enabled()):
            if kind == "oom":
                raise torch.OutOfMemoryError("out of memory: tried to allocate 2.00 GiB (injected by STUDIO_FAULT)")
            output["last_hidden_state"] = output["last_hidden_state"] * float("nan")
        return output

    causal = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    causal.base_model.register_forward_hook(hook, with_kwargs=True)


def _starting_weights(cfg: RunConfig, run_dir: Path) -> str:
    """The model the run trains: the config's, or (init_from) another finished run merged into its base, so a
    new adapter trains on top of it and that merged model is the preference reference."""
    if not cfg.init_from:
        return cfg.model

    start = Run(run_dir.parent / cfg.init_from)
    if not (start.dir / "config.yaml").exists():
        raise ConfigError(f"init_from: there is no run {cfg.init_from} beside this one.")
    if start.weights is None:
        raise ConfigError(f"init_from: {start.no_weights()}.")
    if start.config.model != cfg.model and start.base_model != cfg.model:
        raise ConfigError(f"init_from: run {cfg.init_from} fine-tuned {start.config.model}, not {cfg.model}.")
    return str(merge_weights(start))


def datasets_for(cfg: RunConfig, tokenizer, padding_free: bool | None = None):
    """Tokenized train and validation datasets (validation may be None) with loss masks; cut to max_length
    here when the batches are padding-free (`padding_free`, default: as the config says)."""
    from datasets import Dataset


    mapping = parse_mapping(cfg.columns)
    examples = load_examples(cfg.data_files(), mapping, cfg.objective)
    if cfg.val_data:
        train_ex, val_ex = examples, load_examples(cfg.val_data, mapping, cfg.objective)
    else:
        train_ex, val_ex = split_examples(examples, cfg.val_fraction, cfg.seed)
    refused = data_refusal(cfg.objective, {e.kind for e in examples + (val_ex or [])}, cfg.kto_from_pairs)
    if refused:
        raise DataError(refused)
    if cfg.objective == "grpo":  # prompts: the model writes the answers
        return tuple(Dataset.from_list(prompts.rows(exs, tokenizer, cfg.prompt_limit)) if exs else None
                     for exs in (train_ex, val_ex))
    if cfg.objective != "sft":  # trl tokenizes preference data itself, with the chat template
        return tuple(Dataset.from_list(rows(exs, cfg.objective, tokenizer, cfg.prompt_limit)) if exs else None
                     for exs in (train_ex, val_ex))

    padding_free = cfg.padding_free if padding_free is None else padding_free

    def cut(row: dict) -> dict:
        return {k: v[:cfg.max_length] for k, v in row.items()} if padding_free else row

    def build(exs):
        return Dataset.from_list([cut(tokenize_example(e, tokenizer, cfg.train_on)) for e in exs]) if exs else None

    return build(train_ex), build(val_ex)


def train(cfg: RunConfig, run_dir: Path, events: EventLog, stop: _StopRequest, sampler=None,
          callbacks: tuple = ()) -> str:
    """Train `cfg` in this process. `sampler(cfg, base)`: a rollout_func for trl's GRPOTrainer, or None where
    it does not apply (then trl samples with the model's `generate`); `callbacks`: more trainer callbacks
    (studio/step_profile.py's)."""
    import torch
    from transformers import EarlyStoppingCallback
    from trl import SFTTrainer

    refused = preflight.refusal(cfg)
    if refused:
        raise ConfigError(refused)
    warning = preflight.precision_warning(cfg)
    if warning:
        print(warning, flush=True)
        events.write("warning", message=warning)
    base = _starting_weights(cfg, run_dir)
    tokenizer = load_tokenizer(base, cfg.revision, cfg.trust_remote_code)
    quant = methods.quantization_config(cfg)
    if cfg.trust_remote_code:
        print(f"warning: running the model's own code from {cfg.model} at revision {cfg.revision}", flush=True)
    model = load_causal_lm(base, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                           **methods.model_kwargs(cfg, preflight.precision(cfg), torch.cuda.is_available()), **({"quantization_config": quant} if quant else {}))
    step = fast_step.plan(cfg, model.config, torch.cuda.is_available(), distributed.world_size(),
                          preflight.precision(cfg))
    padding_free = cfg.padding_free or cfg.packing or step.varlen
    if step.varlen:  # each example attends to itself alone (and transformers builds no mask for it)
        fast_step.register()
        model.set_attn_implementation(fast_step.ATTENTION)
    print(f"training step: {step.describe()}", flush=True)
    train_set, val_set = datasets_for(cfg, tokenizer, padding_free)
    if cfg.method == "freeze":
        methods.freeze_all_but_last(model, cfg.freeze_last_n)
    ds_config = None
    if cfg.distributed():
        distributed.prepare_rank_state()
        ds_config = run_dir / "ds_config.json"
    args = sft_config(cfg, run_dir / "checkpoints", has_eval=val_set is not None, ds_config=ds_config,
                      padding_free=padding_free)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(
        len(train_set) / (cfg.batch_size * cfg.grad_accum)) * math.ceil(cfg.epochs)
    rollouts, extra = None, {}
    if cfg.objective == "grpo":
        missing = prompts.missing_references(load_examples(cfg.data_files(), parse_mapping(cfg.columns), "grpo"))
        built = rewards.rewards_from(cfg.rewards, references=missing is None, where=missing)
        rollouts = objectives.Rollouts(built)
        extra = {"reward_funcs": [rollouts.wrap(r) for r in built]}
        sample = sampler(cfg, base) if sampler is not None else None
        if sample is not None:
            extra["rollout_func"] = rollouts.timed(sample)
            rollouts.sampled_by = "the studio's executor"
        print(f"GRPO rollouts are sampled by {rollouts.sampled_by}", flush=True)
    callback = _event_callback(events, stop, rollouts, cfg, step.describe())
    make = fast_step.studio_sft_trainer() if step.compact_loss else SFTTrainer
    if cfg.objective != "sft":
        make = objectives.trainer_class(cfg.objective)
    trainer = make(
        **extra,
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        peft_config=methods.peft_config(cfg, steps),
        callbacks=[callback, *callbacks] + ([methods.adalora_callback()] if cfg.method == "adalora" else [])
        + ([EarlyStoppingCallback(cfg.early_stopping_patience)] if val_set is not None
           and cfg.early_stopping_patience > 0 else []),
    )
    _install_fault(trainer)
    if step.bf16_weights:
        fast_step.hold_frozen_in_bf16(trainer.model)
    if step.dropout_bits:
        fast_step.faster_dropout(trainer.model)
    if step.onednn:
        fast_step.onednn_frozen_linears(trainer.model)
    if rollouts is not None:
        rollouts.time_generation(trainer.model)
    if cfg.objective in ("orpo", "simpo"):

        objectives.count_tokens(trainer)
    found, notes = checkpoints.sort_out(run_dir / "checkpoints")
    for note in notes:
        print(f"warning: {note}", flush=True)
        events.write("warning", message=note)
    trainer.train(resume_from_checkpoint=str(found[-1]) if found else None)
    step = trainer.state.global_step
    if hasattr(callback, "bad_loss"):
        events.write("failed", step=step, reason=(
            f"The loss became {callback.bad_loss} at step {step}; lower the learning rate. "
            "The last good checkpoint is kept."))
        return "failed"
    adapter = run_dir / ("adapter" if methods.peft_config(cfg, steps) is not None else "model")
    _save_atomic(trainer, tokenizer, adapter)
    losses = callback.losses
    outcome = "stopped" if stop.requested else "finished"
    kept = checkpoints.newest(run_dir / "checkpoints")
    reason = (f"Stopped at step {step}; {kept.name} is saved, and Resume continues from it." if kept else
              f"Stopped at step {step}; no checkpoint could be saved.") if outcome == "stopped" else None
    events.write(outcome, step=step, adapter=str(adapter), final_loss=losses[-1] if losses else None,
                 peak_memory_mb=peak_memory_mb(), **({"reason": reason} if reason else {}))
    return outcome


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (DataError, ConfigError, ModelError)):
        return str(exc)
    text = str(exc)
    problem = storage_problem(exc)
    if problem:
        return problem + " The last complete checkpoint is kept."
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        return ("Out of memory: lower batch_size (raise grad_accum to keep the same effective batch) or "
                "max_length, turn on gradient_checkpointing, or pick qlora or a smaller model. "
                "The last checkpoint is kept.")
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}".strip(": ")


class _NoEvents(EventLog):
    """Ranks other than 0 of a distributed run write no events (rank 0 speaks for all)."""

    def write(self, event: str, **fields) -> dict:
        return {"event": event, **fields}


@contextmanager
def queue_slot(lock_path: Path, events: EventLog, stop: _StopRequest, my_turn=lambda: True):
    """Hold the machine's one training slot; while another run holds it, wait in the queue.

    Yields True once the slot is held, False when a Stop came while waiting. The slot is a file lock
    (filelock, an flock on Linux), so it is released however this process ends. A waiting run tries
    the slot only when `my_turn()` says it is first in the queue's order (engine/train/runs.py's
    `queue_order`: fair between people, then first come), so the order shown is the order kept.
    """
    lock = FileLock(str(lock_path))
    waiting = events.state().waiting  # the registry saw a busy slot when it launched this run
    while True:
        try:
            if waiting and not my_turn():
                raise Timeout(str(lock_path))
            lock.acquire(timeout=0)
            break
        except Timeout:
            if not waiting:
                events.write("queued")
                waiting = True
            if stop.requested:
                yield False
                return
            time.sleep(0.5)
    try:
        if waiting:
            events.write("dequeued")
        yield True
    finally:
        lock.release()


def _run_ranks(cfg: RunConfig, config_path: Path, events: EventLog, stop: _StopRequest) -> int:
    """Start the ranks with `accelerate launch` and wait; they get Stop's signal with this process group."""
    run_dir = config_path.parent
    ds_path = distributed.write_deepspeed_config(cfg, run_dir)
    cmd = distributed.launch_command(cfg, config_path.resolve(), ds_path)
    proc = subprocess.Popen(cmd, env=distributed.launch_env(), cwd=Path(__file__).resolve().parents[2])
    code = proc.wait()
    if events.state().ended is None:
        what = "was stopped" if stop.requested else f"ended with code {code}"
        events.write("stopped" if stop.requested else "failed",
                     reason=f"A training process {what} before saying why; see train.log.")
        return 1
    return code


def main(argv: list[str] | None = None, sampler=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    config_path = Path(argv[0])
    run_dir = config_path.parent
    rank_process = distributed.is_rank_process()
    events = EventLog(run_dir / "events.jsonl") if distributed.rank() == 0 else _NoEvents(run_dir / "none")
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cfg = RunConfig.from_yaml(config_path)
        if rank_process:  # one rank of a distributed run: its launcher already holds the slot
            _starting(stop)
            return 0 if train(cfg, run_dir, events, stop, sampler) in ("finished", "stopped") else 1
        lock = Path(os.environ.get("STUDIO_LOCK") or run_dir.parent / ".training.lock")
        turn = lambda: queue_position(Run(run_dir)) in (None, 1)  # noqa: E731
        with queue_slot(lock, events, stop, turn) as held:
            if not held:
                events.write("stopped", reason="Stopped while waiting in the queue; nothing was trained.")
                return 0
            if not cfg.distributed():  # the launcher of ranks only waits: its ranks stop themselves
                _starting(stop)
            resolve_model(cfg.model)
            if cfg.distributed():
                refused = preflight.refusal(cfg)
                if refused:
                    raise ConfigError(refused)
                _starting_weights(cfg, run_dir)  # an init_from run is merged once, before the ranks start
                return _run_ranks(cfg, config_path, events, stop)
            return 0 if train(cfg, run_dir, events, stop, sampler) in ("finished", "stopped") else 1
    except StopBeforeTraining:
        kept = checkpoints.newest(run_dir / "checkpoints")
        events.write("stopped", reason=f"Stopped before training began; {kept.name} is kept, and Resume continues "
                     "from it." if kept else "Stopped before training began; nothing was trained.")
        return 0
    except Exception as exc:  # every failure ends as one sentence in the events
        traceback.print_exc()
        events.write("failed", reason=_reason(exc))
        return 1


def _starting(stop: _StopRequest) -> None:
    """From here until training begins, a Stop ends the process at once (a Stop already asked for, now)."""
    stop.abort = True
    if stop.requested:
        stop.abort = False
        raise StopBeforeTraining()


if __name__ == "__main__":
    sys.exit(main())
