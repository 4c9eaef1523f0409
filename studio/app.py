"""Start the studio's web app the way the README does, wait until the page answers, stop it after.

    with running_app({"STUDIO_MODEL": model}) as app:
        print(app.url, app.start_s)

The one helper the benchmarks (`studio bench`, `python -m studio.load_bench`), the browser tests and
the screenshot walkthrough start the app with: a free port, its own runs folder unless one is given,
the log in a file, and a wait on the page itself (not a fixed sleep), failing with the log's end if
the app exits or does not answer in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.train.distributed import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class App:
    url: str
    proc: subprocess.Popen
    home: Path
    log: Path
    start_s: float  # seconds from starting `studio` to the page answering


class AppDidNotStart(RuntimeError):
    pass


def end_runs(runs: Path) -> None:
    """Kill the process group of every run under `runs` that is still going (a test or a benchmark that
    ends, or fails, must leave no trainer behind: a second torch process slows the next work 15-40x)."""
    for pid_file in [*runs.glob("*/pid"), *runs.glob("decisions/*/pid")]:  # runs, and measured decisions
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError, OSError):
            pass


@contextmanager
def running_app(env: dict | None = None, home: Path | None = None, timeout_s: float = 240,
                args: list[str] | None = None) -> Iterator[App]:
    """The app started with `env` added to this process's environment (a None value removes a variable);
    stopped (its whole process group)
    when the block ends. `args` replaces the command (default: the `studio` script beside this Python)."""
    home = home or Path(tempfile.mkdtemp(prefix="studio-app-"))
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full = {**os.environ, "STUDIO_RUNS": str(home / "runs"), "STUDIO_EXAMPLES": str(home / "chat-examples.jsonl"),
            "GRADIO_ANALYTICS_ENABLED": "False",
            **(env or {}), "GRADIO_SERVER_PORT": str(port)}
    full = {k: v for k, v in full.items() if v is not None}  # None in `env`: leave that variable out
    log = home / "app.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(args or [str(Path(sys.executable).with_name("studio"))], env=full, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if proc.poll() is not None:
                    raise AppDidNotStart("the studio exited before answering:\n" + log.read_text()[-3000:]) from None
                if time.monotonic() - t0 > timeout_s:
                    raise AppDidNotStart(f"the studio did not answer within {timeout_s:.0f} s:\n"
                                         + log.read_text()[-3000:]) from None
                time.sleep(0.2)
        yield App(url, proc, home, log, time.monotonic() - t0)
    finally:
        end_runs(home / "runs")  # the app's trainers run in sessions of their own: they end with it here
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
