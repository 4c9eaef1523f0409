"""Measured decisions ("fine-tune, RAG, or both?") as folders: start one, follow it, stop it, list them.

The measurement itself (studio/decide.py) runs as its own process, like a training run, so a page can be
closed and opened again and the work goes on. Its folder, `<runs>/decisions/<id>/`, holds:

    docs/            the documents it was given (copied there by the page)
    progress.json    the stage, its step and total, the time spent and the time left (estimated)
    log.txt          one line per stage and step, as `studio decide` prints them
    report.json      everything measured: the grid, its intervals, the paired differences, the verdict,
    report.md        the time each part took, the data report and the runs it trained (also on a stop: the
                     parts done so far)
    stop             present when a stop was asked for; the process ends at its next check and keeps
                     what it measured
    owner            who it belongs to (engine/owners.py)

This module starts nothing heavy and imports no model code. Try it:

    python -m engine.advise.decisions          # lists the decisions under the runs folder
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine import owners
from engine.train.runs import runs_root, unguessable

PROCESS = "studio.decide"
STAGES = ("data", "train plain", "train RAFT", "evaluate", "forgetting", "verdict")


def decisions_root(root: Path | None = None) -> Path:
    folder = (root or runs_root()) / "decisions"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_folder(owner: str = owners.LOCAL, root: Path | None = None) -> Path:
    folder = decisions_root(root) / unguessable("decide")
    while folder.exists():
        folder = decisions_root(root) / unguessable("decide")
    folder.mkdir(parents=True)
    owners.claim(folder, owner)
    return folder


@dataclass
class Decision:
    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    def progress(self) -> dict:
        try:
            return json.loads((self.folder / "progress.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def report(self) -> dict | None:
        try:
            return json.loads((self.folder / "report.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def markdown(self) -> str:
        path = self.folder / "report.md"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def log(self) -> str:
        path = self.folder / "log.txt"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        try:  # a zombie (ended, not yet reaped) is not alive
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return True

    def status(self) -> str:
        """running, finished, stopped, failed, or interrupted (the process ended without a report)."""
        report = self.report()
        if report:
            return report.get("status", "finished")
        return "running" if self.alive() else ("interrupted" if self.pid() else "starting")

    def ask_stop(self) -> None:
        (self.folder / "stop").write_text(time.strftime("%Y-%m-%d %H:%M:%S"), encoding="utf-8")

    def stop_asked(self) -> bool:
        return (self.folder / "stop").exists()


class Progress:
    """Writes progress.json and log.txt for a decision in `folder` (used by studio/decide.py)."""

    def __init__(self, folder: Path, budget_s: float, echo=print):
        self.folder, self.budget_s, self.echo = folder, budget_s, echo
        self.start = time.monotonic()
        self.stage, self.times = "", {}
        self._stage_start = self._said = self.start

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def enter(self, stage: str, message: str = "") -> None:
        if self.stage:
            self.times[self.stage] = round(time.monotonic() - self._stage_start, 1)
        self.stage, self._stage_start = stage, time.monotonic()
        self.step(0, 0, message or stage)

    def finish(self) -> None:
        if self.stage:
            self.times[self.stage] = round(time.monotonic() - self._stage_start, 1)
        self.stage = ""

    def step(self, done: int, total: int, message: str) -> None:
        left = max(0.0, self.budget_s - self.elapsed())
        state = {"stage": self.stage, "stage_index": STAGES.index(self.stage) if self.stage in STAGES else -1,
                 "stages": list(STAGES), "done": done, "total": total, "message": message,
                 "elapsed_s": round(self.elapsed(), 1), "left_s": round(left, 1), "budget_s": self.budget_s,
                 "times": self.times}
        tmp = self.folder / "progress.json.tmp"
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.folder / "progress.json")
        line = f"[{self.elapsed():6.0f} s] {self.stage}: {message}" + (f" ({done}/{total})" if total else "")
        now = time.monotonic()
        if done in (0, total) or now - self._said >= 5:  # the log and the screen get a line every few seconds
            self._said = now
            with open(self.folder / "log.txt", "a", encoding="utf-8") as log:
                log.write(line + "\n")
            self.echo(line)


def launch(folder: Path, docs: list[str], budget_minutes: float, model: str = "", train: str = "",
           questions: str = "", owner: str = owners.LOCAL) -> subprocess.Popen:
    """Start studio/decide.py on `docs` in its own process (its output goes to the folder's log)."""
    cmd = [sys.executable, "-m", PROCESS, *docs, "--out", str(folder), "--budget-minutes", str(budget_minutes),
           "--owner", owner]
    for flag, value in (("--model", model), ("--train", train), ("--questions", questions)):
        if value:
            cmd += [flag, value]
    out = open(folder / "process.log", "ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    (folder / "pid").write_text(str(proc.pid))
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped when it ends: no zombie of the app
    return proc


def list_decisions(owner: str | None = None, root: Path | None = None) -> list[Decision]:
    """Every decision (owner None) or one person's, newest first."""
    folder = decisions_root(root)
    found = [Decision(p) for p in folder.iterdir() if p.is_dir() and (owner is None or owners.owner_of(p) == owner)]
    return sorted(found, key=lambda d: d.id, reverse=True)


if __name__ == "__main__":
    for d in list_decisions():
        r = d.report() or {}
        print(f"{d.id}  {d.status():<12} {r.get('verdict', {}).get('sentence', d.progress().get('message', ''))}")
