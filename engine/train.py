"""One training run: read runs/<id>/config.yaml, fine-tune with trl's SFTTrainer, write events.

    python -m engine.train runs/<id>/config.yaml

This is what the UI starts in a separate process, and what `studio train CONFIG.yaml`
runs in the foreground. Progress goes to `events.jsonl` beside the config (see
engine/events.py); checkpoints to `checkpoints/`; the adapter to `adapter/`.
SIGTERM or SIGINT asks the trainer to stop at the next step, save, and end as "stopped".
Errors a person can cause end the run as "failed" with one sentence; the traceback goes
to train.log only.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.data import DataError, load_examples, split_examples, tokenize_example
from engine.events import EventLog
from engine.formats import parse_mapping
from engine import methods
from engine.models import ModelError, load_causal_lm, load_tokenizer, resolve_model


class _StopRequest:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True


def sft_config(cfg: RunConfig, output_dir: Path, has_eval: bool = False):
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of all steps
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length,
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
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        report_to="none",
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not hidden
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def _event_callback(events: EventLog, stop: _StopRequest):
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.monotonic()
            self.tokens0 = state.num_input_tokens_seen
            events.write("started", pid=os.getpid(), total_steps=state.max_steps, device=str(args.device),
                         precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32")

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "eval_loss" in logs:
                events.write("logged", step=state.global_step, total_steps=state.max_steps,
                             eval_loss=float(logs["eval_loss"]))
                return
            if "loss" not in logs:
                return
            elapsed = time.monotonic() - self.t0
            step, total = state.global_step, state.max_steps
            tokens = state.num_input_tokens_seen - self.tokens0
            loss = float(logs["loss"])
            events.write(
                "logged", step=step, total_steps=total,
                loss=loss if math.isfinite(loss) else str(loss),
                learning_rate=logs.get("learning_rate"), epoch=round(state.epoch or 0, 3),
                tokens_per_s=round(tokens / elapsed, 1) if elapsed > 0 else None,
                elapsed_s=round(elapsed, 1),
                eta_s=round(elapsed / step * (total - step), 1) if step else None,
            )
            if not math.isfinite(loss):
                stop.requested = True
                self.bad_loss = loss

        def on_save(self, args, state, control, **kw):
            events.write("checkpoint", step=state.global_step,
                         path=str(Path(args.output_dir) / f"checkpoint-{state.global_step}"))

        def on_step_end(self, args, state, control, **kw):
            if stop.requested:
                control.should_training_stop = True
                control.should_save = not hasattr(self, "bad_loss")

    return EventCallback()


def _save_atomic(trainer, tokenizer, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def datasets_for(cfg: RunConfig, tokenizer):
    """Tokenized train and validation datasets (validation may be None) with loss masks."""
    from datasets import Dataset

    mapping = parse_mapping(cfg.columns)
    examples = load_examples(cfg.data_files(), mapping)
    if cfg.val_data:
        train_ex, val_ex = examples, load_examples(cfg.val_data, mapping)
    else:
        train_ex, val_ex = split_examples(examples, cfg.val_fraction, cfg.seed)

    def build(exs):
        return Dataset.from_list([tokenize_example(e, tokenizer, cfg.train_on) for e in exs]) if exs else None

    return build(train_ex), build(val_ex)


def train(cfg: RunConfig, run_dir: Path, events: EventLog, stop: _StopRequest) -> str:
    from transformers import EarlyStoppingCallback
    from trl import SFTTrainer

    refused = methods.refusal(cfg)
    if refused:
        raise ConfigError(refused)
    tokenizer = load_tokenizer(cfg.model)
    train_set, val_set = datasets_for(cfg, tokenizer)
    quant = methods.quantization_config(cfg)
    model = load_causal_lm(cfg.model, **methods.model_kwargs(cfg), **({"quantization_config": quant} if quant else {}))
    if cfg.method == "freeze":
        methods.freeze_all_but_last(model, cfg.freeze_last_n)
    args = sft_config(cfg, run_dir / "checkpoints", has_eval=val_set is not None)
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(
        len(train_set) / (cfg.batch_size * cfg.grad_accum)) * math.ceil(cfg.epochs)
    callback = _event_callback(events, stop)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        peft_config=methods.peft_config(cfg, steps),
        callbacks=[callback] + ([methods.adalora_callback()] if cfg.method == "adalora" else [])
        + ([EarlyStoppingCallback(cfg.early_stopping_patience)] if val_set is not None
           and cfg.early_stopping_patience > 0 else []),
    )
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    step = trainer.state.global_step
    if hasattr(callback, "bad_loss"):
        events.write("failed", step=step, reason=(
            f"The loss became {callback.bad_loss} at step {step}; lower the learning rate. "
            "The last good checkpoint is kept."))
        return "failed"
    adapter = run_dir / ("adapter" if methods.peft_config(cfg, steps) is not None else "model")
    _save_atomic(trainer, tokenizer, adapter)
    losses = [r["loss"] for r in events.read() if r["event"] == "logged" and isinstance(r.get("loss"), float)]
    outcome = "stopped" if stop.requested else "finished"
    events.write(outcome, step=step, adapter=str(adapter), final_loss=losses[-1] if losses else None)
    return outcome


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (DataError, ConfigError, ModelError)):
        return str(exc)
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return "Out of memory: lower batch_size or max_length, or pick a smaller model."
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}".strip(": ")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    config_path = Path(argv[0])
    run_dir = config_path.parent
    events = EventLog(run_dir / "events.jsonl")
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cfg = RunConfig.from_yaml(config_path)
        resolve_model(cfg.model)
        return 0 if train(cfg, run_dir, events, stop) in ("finished", "stopped") else 1
    except Exception as exc:  # every failure ends as one sentence in the events
        traceback.print_exc()
        events.write("failed", reason=_reason(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
