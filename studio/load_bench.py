"""Load benchmark: simulated users on the page while one training runs.

    python -m studio.load_bench [--users 20] [--questions 2] [--model MODEL] [--json out.json]

Starts the studio the way the README does (`studio`, on a free port, a fresh runs folder),
trains one short run to have a fine-tuned model, starts a long training, then lets
`--users` clients (gradio_client, one thread each) ask Compare questions (all four
columns) and browse runs at the same time. Prints requests, errors, how many waited in the
queue (and the deepest position seen), and p50 / p95 latency per kind of request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from engine.models import DEFAULT_MODEL
from engine.train.config import RunConfig, SAMPLE_TRAIN
from engine.train.preflight import create_run
from engine.train.runs import Run, launch, stop
from studio.app import running_app

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["How heavy is the Tilly T2?", "What does error E31 mean?", "Who founded Zorvane Robotics?",
             "How long does the battery last?", "Can the Tilly mow in the rain?"]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _user(url: str, run_id: str, model: str, questions: int, seed: int, out: list, lock: threading.Lock) -> None:
    from gradio_client import Client

    try:  # the page's API description, fetched while the machine trains: a slow CPU takes its time
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
    except Exception as exc:  # counted as what it is, never lost with its thread
        with lock:
            out.append({"kind": "connect", "user": seed, "ok": False, "queued_at": None, "seconds": 0.0,
                        "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        return
    for i in range(questions):
        for kind in ("compare", "runs"):
            t0 = time.monotonic()
            record = {"kind": kind, "user": seed, "ok": False, "queued_at": None}
            try:
                if kind == "compare":
                    job = client.submit(QUESTIONS[(seed + i) % len(QUESTIONS)], run_id, model, "zorvane-sample", 3,
                                        0.0, False, "", api_name="/ask")
                else:
                    job = client.submit(run_id, api_name="/run_status")
                while not job.done():
                    status = job.status()
                    if status.rank is not None and status.rank > 0:
                        record["queued_at"] = max(record["queued_at"] or 0, status.rank)
                    time.sleep(0.05)
                result = job.result()
                text = " ".join(str(x) for x in (result if isinstance(result, (list, tuple)) else [result]))
                # Server errors raise in the client; an answer may well say "Error E31", so only the
                # app's own failure sentence counts here.
                record["ok"] = bool(text.strip()) and "**Refused:**" not in text and (
                    kind == "compare" or f"Run {run_id}" in text)  # the run asked for, read from its folder
                if not record["ok"]:
                    record["error"] = text[:200]
            except Exception as exc:  # a server error is what this benchmark counts
                record["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            record["seconds"] = time.monotonic() - t0
            with lock:
                out.append(record)


def bench(model: str, users: int = 20, questions: int = 2, train_steps: int = 30) -> dict:
    """Start the app, train a short run, keep a long one training, and load the page; returns the figures."""
    home = Path(tempfile.mkdtemp(prefix="studio-load-"))
    runs = home / "runs"
    long_run: Run | None = None
    with running_app({"STUDIO_MODEL": model}, home=home) as app:
        url = app.url
        try:
            quick = create_run(RunConfig(model=model, data=str(SAMPLE_TRAIN), max_steps=train_steps,
                                         max_length=128), runs)
            launch(quick)
            deadline = time.time() + 600
            if quick.wait(timeout=600) != "finished":
                raise RuntimeError(f"the short run ended {quick.status()}: {quick.summary()['reason']}")
            long_run = create_run(RunConfig(model=model, data=str(SAMPLE_TRAIN), max_steps=10**6, max_length=128),
                                  runs)
            launch(long_run)
            while not long_run.logged() and time.time() < deadline:
                time.sleep(0.5)
            records: list[dict] = []
            lock = threading.Lock()
            threads = [threading.Thread(target=_user, args=(url, quick.id, model, questions, i, records, lock))
                       for i in range(users)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - t0
            training_alive = long_run.status() == "running"
        finally:
            if long_run is not None:
                stop(long_run)
    result = {"users": users, "requests": len(records), "errors": [r for r in records if not r["ok"]],
              "wall_s": round(wall, 1), "training_kept_running": training_alive,
              "queued": sum(1 for r in records if r["queued_at"]),
              "deepest_queue_position": max((r["queued_at"] or 0 for r in records), default=0)}
    for kind in ("compare", "runs"):
        seconds = [r["seconds"] for r in records if r["kind"] == kind and r["ok"]]
        result[kind] = {"answered": len(seconds), "p50_s": round(statistics.median(seconds), 2) if seconds else None,
                        "p95_s": round(_percentile(seconds, 0.95), 2) if seconds else None}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.load_bench", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--questions", type=int, default=2)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    r = bench(a.model, a.users, a.questions)
    print(f"{r['users']} users, {r['requests']} requests in {r['wall_s']} s while one training ran "
          f"(still running after: {r['training_kept_running']}); errors: {len(r['errors'])}; "
          f"waited in the queue: {r['queued']} (deepest position {r['deepest_queue_position']})")
    print("| request | answered | p50 s | p95 s |\n|---|---|---|---|")
    for kind in ("compare", "runs"):
        print(f"| {kind} | {r[kind]['answered']} | {r[kind]['p50_s']} | {r[kind]['p95_s']} |")
    for e in r["errors"][:5]:
        print("error:", e.get("error"))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if not r["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
