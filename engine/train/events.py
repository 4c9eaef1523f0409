"""Typed run events as JSON lines: the only channel from a training process to anyone else.

A run appends one JSON object a line to `runs/<id>/events.jsonl`: `event` (the kind) and `time`
(unix seconds), then the fields of that kind's dataclass below. Readers only read that file, so a
page reload or a restarted app sees the same run. Lines are written whole and flushed; a torn last
line (a process killed mid-write) is left for the next read.

    EventLog(path).write("logged", step=3, loss=2.1)   # checked against the Logged dataclass
    EventLog(path).events()                            # every event, typed
    EventLog(path).state()                             # RunState: fold() of the events, read by byte offset

`fold(events) -> RunState` is the one place a run's state is worked out from its events; the UI,
the CLI, the probe and the benchmark all read it. `state()` keeps a RunState per file and reads only
the lines added since the last call, so a Train tab that ticks every second on a 10,000-step run
parses one new line, not the whole file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = ""
    time: float = 0.0

    def to_json(self) -> dict:
        return {"event": self.kind, **{k: v for k, v in asdict(self).items() if v is not None}}


@dataclass(frozen=True, kw_only=True)
class Launched(Event):
    """Written by the registry just before it starts a process (also on resume)."""
    kind: ClassVar[str] = "launched"


@dataclass(frozen=True, kw_only=True)
class Queued(Event):
    """The run waits for the machine's one training slot (engine.train.trainer.queue_slot)."""
    kind: ClassVar[str] = "queued"


@dataclass(frozen=True, kw_only=True)
class Dequeued(Event):
    kind: ClassVar[str] = "dequeued"


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    pid: int | None = None
    total_steps: int | None = None
    device: str | None = None
    processes: int | None = None
    params: int | None = None
    trainable_params: int | None = None
    precision: str | None = None
    rollouts: str | None = None  # GRPO: what samples the completions
    step: str | None = None  # what the training step does (engine/train/fast_step.py's plan)


@dataclass(frozen=True, kw_only=True)
class Logged(Event):
    """One logged training step. `loss` is a string ("nan", "inf") when it is not finite."""
    kind: ClassVar[str] = "logged"
    step: int
    total_steps: int | None = None
    loss: float | str | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    memory_mb: float | None = None
    # preference objectives (trl's rewards/*, ORPO's log-odds ratio)
    rewards_chosen: float | None = None
    rewards_rejected: float | None = None
    rewards_margin: float | None = None
    rewards_accuracy: float | None = None
    log_odds_ratio: float | None = None
    # GRPO: the total reward (mean, spread), each function's {name: [mean, std]}, the KL to the start, the mean
    # completion length, the share cut at max_completion_length, the share of the time spent generating
    reward: float | None = None
    reward_std: float | None = None
    reward_functions: dict | None = None
    kl: float | None = None
    completion_length: float | None = None
    clipped_ratio: float | None = None
    generate_share: float | None = None


@dataclass(frozen=True, kw_only=True)
class Samples(Event):
    """GRPO: a few completions of the step's rollout with their rewards (prompt, completion, answer, rewards
    {name: value}, total)."""
    kind: ClassVar[str] = "samples"
    step: int
    rows: list = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Evaluated(Event):
    kind: ClassVar[str] = "evaluated"
    step: int
    total_steps: int | None = None
    eval_loss: float | None = None
    rewards_chosen: float | None = None
    rewards_rejected: float | None = None
    rewards_margin: float | None = None
    rewards_accuracy: float | None = None
    log_odds_ratio: float | None = None
    reward: float | None = None
    reward_std: float | None = None


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Event):
    """A checkpoint saved; `seconds` from the end of the step to the end of the save."""
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str | None = None
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class Warned(Event):
    """A forced slow precision, a damaged checkpoint set aside: said once, the run goes on."""
    kind: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True, kw_only=True)
class Stopping(Event):
    """The registry asked the trainer to stop; it finishes `step` and saves, within `grace_s`."""
    kind: ClassVar[str] = "stopping"
    step: int | None = None
    grace_s: float | None = None
    expected_s: float | None = None
    training: bool = False


@dataclass(frozen=True, kw_only=True)
class Ended(Event):
    """How a process of the run ended; the subclasses are the four endings."""
    step: int | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Finished(Ended):
    kind: ClassVar[str] = "finished"
    adapter: str | None = None
    final_loss: float | None = None
    peak_memory_mb: float | None = None


@dataclass(frozen=True, kw_only=True)
class Stopped(Finished):
    kind: ClassVar[str] = "stopped"


@dataclass(frozen=True, kw_only=True)
class Failed(Ended):
    kind: ClassVar[str] = "failed"


@dataclass(frozen=True, kw_only=True)
class Interrupted(Ended):
    """Written by the registry for a process that ended without a word (killed, out of memory)."""
    kind: ClassVar[str] = "interrupted"


KINDS: dict[str, type[Event]] = {c.kind: c for c in (Launched, Queued, Dequeued, Started, Logged, Samples,
                                                     Evaluated, Checkpoint, Warned, Stopping, Finished, Stopped,
                                                     Failed, Interrupted)}
EVENTS = tuple(KINDS)
TERMINAL = ("finished", "stopped", "failed", "interrupted")


def from_json(record: dict) -> Event | None:
    """The typed event of one JSON record; None for a kind this version does not know (written by a newer one).

    Fields it does not know are left out. Older files logged evaluations as `logged` with `eval_loss`.
    """
    kind = record.get("event")
    if kind == "logged" and "eval_loss" in record and "loss" not in record:
        kind = "evaluated"
    cls = KINDS.get(kind)
    if cls is None:
        return None
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in record.items() if k in known})
    except TypeError:  # a record missing a field its kind needs: unreadable, like a torn line
        return None


@dataclass
class RunState:
    """What a run's events say, folded in order. `session` is what the newest process wrote (from its
    `launched` on): a resumed run is judged by its new process, its curve by every process."""
    launches: int = 0
    session: list[Event] = field(default_factory=list)
    logged: list[Logged] = field(default_factory=list)
    evaluations: list[Evaluated] = field(default_factory=list)
    samples: list[Samples] = field(default_factory=list)  # GRPO's sampled completions, every sample_every steps
    first_started: Started | None = None
    first_time: float | None = None
    last_time: float | None = None
    slowest_step_s: float | None = None  # seconds per step, the slowest measured in any process
    slowest_save_s: float = 0.0
    _last: tuple[int, float] | None = None  # (step, elapsed_s) of the latest logged step of this session

    def add(self, e: Event) -> None:
        self.first_time = e.time if self.first_time is None else self.first_time
        self.last_time = e.time
        if isinstance(e, Launched):
            self.launches += 1
            self.session = []
            self._last = None
        self.session.append(e)
        if isinstance(e, Started) and self.first_started is None:
            self.first_started = e
        elif isinstance(e, Logged):
            self.logged.append(e)
            if e.elapsed_s is not None and e.step:
                step0, t0 = self._last or (0, 0.0)
                if e.step > step0 and e.elapsed_s >= t0:
                    per = (e.elapsed_s - t0) / (e.step - step0)
                    self.slowest_step_s = max(self.slowest_step_s or 0.0, per)
                self._last = (e.step, e.elapsed_s)
        elif isinstance(e, Evaluated):
            self.evaluations.append(e)
        elif isinstance(e, Samples):
            self.samples.append(e)
        elif isinstance(e, Checkpoint) and e.seconds:
            self.slowest_save_s = max(self.slowest_save_s, e.seconds)

    def _last_of(self, cls: type) -> Event | None:
        return next((e for e in reversed(self.session) if isinstance(e, cls)), None)

    @property
    def ended(self) -> Ended | None:
        """How the newest process ended, if it has."""
        return self._last_of(Ended)

    @property
    def started(self) -> Started | None:
        return self._last_of(Started)

    @property
    def stopping(self) -> Stopping | None:
        return self._last_of(Stopping)

    @property
    def waiting(self) -> bool:
        """In the queue: queued and not yet let in."""
        kinds = [e.kind for e in self.session]
        return "queued" in kinds and "dequeued" not in kinds and "started" not in kinds

    @property
    def warnings(self) -> list[str]:
        return [e.message for e in self.session if isinstance(e, Warned)]

    @property
    def total_steps(self) -> int | None:
        last = self.logged[-1] if self.logged else None
        return (last.total_steps if last else None) or (self.first_started.total_steps if self.first_started
                                                         else None)

    def losses(self) -> list[Logged]:
        """The logged steps whose loss is a number."""
        return [e for e in self.logged if isinstance(e.loss, (int, float))]


def fold(events) -> RunState:
    state = RunState()
    for e in events:
        state.add(e)
    return state


_TAILS: dict[str, tuple[int, int, RunState]] = {}  # path -> (inode, byte offset read to, state so far)
_TAILS_LOCK = threading.Lock()


class EventLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, kind: str, **values) -> dict:
        """Append one event; its fields are checked against its dataclass (a wrong name is a bug here)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event {kind!r}")
        record = KINDS[kind](time=round(time.time(), 3), **values).to_json()
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def read(self) -> list[dict]:
        """Every whole line as its raw JSON record (for tools and tests that check the file itself)."""
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

    def events(self) -> list[Event]:
        return [e for e in map(from_json, self.read()) if e is not None]

    def state(self) -> RunState:
        """The fold of every event, reading only what was appended since this process last asked."""
        key = str(self.path)
        with _TAILS_LOCK:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                _TAILS.pop(key, None)
                return RunState()
            inode, offset, state = _TAILS.get(key, (st.st_ino, 0, None))
            if state is None or inode != st.st_ino or st.st_size < offset:  # new, replaced or cut: from the top
                inode, offset, state = st.st_ino, 0, RunState()
            if st.st_size > offset:
                with open(self.path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(st.st_size - offset)
                whole = chunk.rfind(b"\n") + 1  # a line still being written is read next time
                for line in chunk[:whole].splitlines():
                    try:
                        e = from_json(json.loads(line))
                    except ValueError:
                        continue
                    if e is not None:
                        state.add(e)
                offset += whole
            _TAILS[key] = (inode, offset, state)
            return state
