"""Typed run events as JSON lines: the only channel from a training process to anyone else.

A run appends one JSON object a line to `runs/<id>/events.jsonl`. Each has `event` (one
of EVENTS) and `time` (unix seconds). Readers (the UI, the CLI) only read that file, so a
page reload or a restarted app sees the same run. Lines are written whole and flushed;
a torn last line (a process killed mid-write) is skipped by the reader.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# queued / dequeued: the run waited for the machine's one training slot (see engine.train.queue_slot) |
# launched: (written by the registry just before it starts a process, also on resume) |
# started: pid, total_steps, device, precision | logged: step, total_steps, loss, learning_rate, epoch,
# tokens_per_s, elapsed_s, eta_s | checkpoint: step, path | finished / stopped: step,
# adapter | failed: reason | interrupted: reason (written by the registry for a dead run) |
# warning: message (a forced slow precision, a damaged checkpoint set aside) |
# stopping: step, grace_s (the registry asked the trainer to stop; it finishes the step and saves)
EVENTS = ("launched", "queued", "dequeued", "started", "logged", "checkpoint", "finished", "stopped", "failed",
          "interrupted", "warning", "stopping")
TERMINAL = ("finished", "stopped", "failed", "interrupted")


class EventLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, event: str, **fields) -> dict:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def read(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
