"""The executor every generation goes through, and what a batch streams back to its callers.

One executor takes the requests waiting (a Compare column, an evaluation row, another user's
question), waits at most `BATCH_WINDOW_S` for companions when others are about, and hands each
model its jobs (`ChatModel.answer_jobs`, engine/infer/chat.py), which answers them in as few batched
generations as memory allows. `RowStreamer` splits a batch's new tokens by row, so each caller
sees its own answers grow, and ends each row at its end token, its own token limit or a stop string.

Where it runs: torch's OpenMP parallel regions cost about 40 us more each when started from a thread
other than the process's main thread (measured: a 200k-element add 11 vs 54 us, a packed
1x576 @ 576x1536 product 38 vs 86-140 us), and a decode step is hundreds of small ops. So the app's
main thread serves the executor (`serve_forever`, from ui/app.py), a command-line caller on the main
thread runs its own work while it waits (`drain`), and only otherwise does a background thread.

Used by engine/infer/chat.py; nothing here runs on its own.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from engine.capability import threads as configured_threads

BATCH_WINDOW_S = float(os.environ.get("STUDIO_BATCH_WINDOW_MS", "150")) / 1000  # wait for companions
MAX_ROWS = 32  # rows per generate at most, whatever memory allows: padding waste grows with the batch
# Growing texts go to their caller at most this often: every caller woken for every token of every row
# took the main thread's interpreter lock often enough to slow the decoding loop itself.
STREAM_EVERY_S = 0.1
COMPUTE = threading.Lock()  # one generate at a time on this machine, whichever model: they share the cores



@dataclass
class TokenLogprob:
    """One token with the model's own log-probability of it (log-softmax of the raw logits, before any
    penalty, temperature or constraint), and the most likely tokens there with theirs (`top`)."""
    token: int
    logprob: float | None  # None for a prompt's first token: nothing comes before it
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    answer_tokens: int
    seconds: float  # from the request to its last token (in a batch: its own row's last token)
    finish_reason: str = "stop"  # "stop" (an end token or a stop string) or "length"
    token_ids: list[int] = field(default_factory=list, repr=False)  # the answer's tokens (the end token too)
    logprobs: list[TokenLogprob] | None = field(default=None, repr=False)  # per answer token, when asked
    prompt_logprobs: list[TokenLogprob] | None = field(default=None, repr=False)  # per prompt token (echo)


@dataclass
class Request:
    messages: list[dict]
    use_adapter: bool = False
    max_new_tokens: int = 96
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    adapter: str = "default"  # which of the model's adapters, when use_adapter (several: engine/infer/serve.py)
    ids: list[int] | None = field(default=None, repr=False, compare=False)  # the prompt's tokens, once worked out
    # What an OpenAI client may ask (engine/infer/serve.py); the defaults are the studio's own chat.
    seed: int | None = None  # draws come from a generator of this seed: the same request, the same answer
    logprobs: int | None = None  # None: none; n >= 0: each answer token's log-probability and its n most likely
    presence_penalty: float = 0.0  # subtracted from a token's logit once it has appeared in the answer
    frequency_penalty: float = 0.0  # subtracted once for each time it has appeared in the answer
    repetition_penalty: float = 1.1  # transformers' multiplicative penalty over prompt and answer (1: none)
    suppress_special: bool = True  # never emit special tokens (role markers) as answer text
    constraint: object = None  # a grammar the answer must follow (engine/infer/constrain.py), or None
    echo_logprobs: bool = False  # also the log-probability of each prompt token (completions with echo)
    raw: bool = False  # the prompt is `ids` as given (no chat template); the answer is not stripped
    tools: list[dict] | None = field(default=None, compare=False)  # rendered by the chat template, when it can

    def sampling(self) -> tuple:
        """Rows batch together only when they decode alike."""
        common = (self.presence_penalty, self.frequency_penalty, self.repetition_penalty, self.suppress_special)
        if self.temperature <= 0:
            return (0.0, 1.0, *common)
        return (float(self.temperature), float(self.top_p), *common)

    def needs_own_loop(self) -> str | None:
        """The first option asked that only the studio's own decoding loop honours (None if none is)."""
        for name, asked in (("seed", self.seed is not None), ("logprobs", self.logprobs is not None),
                            ("presence_penalty", bool(self.presence_penalty)),
                            ("frequency_penalty", bool(self.frequency_penalty)),
                            ("response_format", self.constraint is not None), ("echo", self.echo_logprobs)):
            if asked:
                return name
        return None


@dataclass
class Job:
    """One caller's requests; the worker answers them on `out` as (tag, row, text or Generation or error),
    then (tag, None, None) when all its rows are done. Setting `cancelled` (a Stop, a client gone) ends its
    rows at their next token: they leave the batch and free it for others."""
    requests: list[Request]
    out: queue.Queue
    tag: object = None
    submitted: float = field(default_factory=time.perf_counter)
    left: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)


class RowStreamer:
    """A transformers streamer for a batch: keeps each row's new tokens, says each row's text as it grows,
    and marks a row done at its end token, its own token limit or a stop string (read by `RowsDone`)."""
    def __init__(self, tok, rows: list[tuple[Job, int, Request]], prompt_lens: list[int], ends: set[int],
                 prompts_first: bool = True):
        """`prompts_first`: the first `put` hands over the prompts (transformers' `generate` does; the studio's
        own decoding loop does not)."""
        self.tok, self.rows, self.ends, self.prompt_lens = tok, rows, ends, prompt_lens
        self.ids: list[list[int]] = [[] for _ in rows]
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in rows]  # filled by the own loop, when asked
        self.prompt_logprobs: list[list[TokenLogprob] | None] = [None] * len(rows)
        self.text = [""] * len(rows)
        self.done = [False] * len(rows)
        self.reason = ["length"] * len(rows)
        self._said: dict[int, float] = {}
        self._prompt_seen = not prompts_first

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate first hands over the prompts
            self._prompt_seen = True
            return
        for r, token in enumerate(value.reshape(-1).tolist()):
            if self.done[r]:
                continue
            job, row, req = self.rows[r]
            if req.max_new_tokens <= 0:  # scoring only (completions with echo): no answer token
                self._finish(r, "length")
                continue
            self.ids[r].append(token)
            if job.cancelled.is_set():
                self._finish(r, "cancelled")
                continue
            if token in self.ends:
                self._finish(r, "stop")
                continue
            text = self.tok.decode(self.ids[r], skip_special_tokens=not req.raw)
            cut = min((text.find(s) for s in req.stop if s and s in text), default=-1)
            if cut >= 0:
                self._finish(r, "stop", text[:cut])
                continue
            if not text.endswith("\ufffd") and text != self.text[r]:  # half a character: wait for the rest
                self.text[r] = text
                now = time.perf_counter()
                if now - self._said.get(r, float("-inf")) >= STREAM_EVERY_S:  # a waiting caller wakes a few times a second
                    self._said[r] = now
                    job.out.put((job.tag, row, text))
            if len(self.ids[r]) >= req.max_new_tokens:
                self._finish(r, "length")

    def _finish(self, r: int, reason: str, cut: str | None = None) -> None:
        """The row's answer: all its tokens but the end token decoded (or the text before a stop string)."""
        job, row, req = self.rows[r]
        self.done[r], self.reason[r] = True, reason
        ids = self.ids[r][:-1] if self.ids[r] and self.ids[r][-1] in self.ends else self.ids[r]
        self.text[r] = cut if cut is not None else self.tok.decode(ids, skip_special_tokens=not req.raw)
        logprobs = self.logprobs[r][:len(ids)] if req.logprobs is not None else None  # the answer's, not its end
        job.out.put((job.tag, row, Generation(self.text[r] if req.raw else self.text[r].strip(), self.prompt_lens[r],
                                              len(self.ids[r]), time.perf_counter() - job.submitted, reason,
                                              list(self.ids[r]), logprobs, self.prompt_logprobs[r])))
        job.left -= 1
        if job.left == 0:
            job.out.put((job.tag, None, None))

    def end(self) -> None:
        for r in range(len(self.rows)):
            if not self.done[r]:
                self._finish(r, "length")


class RowsDone:
    """Stopping criterion: each row ends when its streamer says so (its own limit, stop string or end)."""

    def __init__(self, streamer: RowStreamer):
        self.streamer = streamer

    def __call__(self, input_ids, scores, **kw):
        import torch

        return torch.tensor(self.streamer.done, dtype=torch.bool, device=input_ids.device)



# ---- the executor: one thread runs every generate (see the module's docstring for why the main one) ----

_WORK: queue.Queue = queue.Queue()  # (ChatModel, Job), or None to stop
_EXECUTOR: dict = {"thread": None, "main": False}
_EXECUTOR_LOCK = threading.Lock()
_ROUND = {"callers": 0}  # jobs the last round answered


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread() and not _EXECUTOR["main"]


_THREADS: dict = {}


def _pick_threads() -> None:
    """Generate on every core, unless other processes (a training run) keep the cores busy: then on one.
    Measured with a 2-thread matrix loop beside it, 32 rows of Compare took 21 s on one thread and 45 s on
    two: each of torch's parallel ops waits for a partner thread the other process has taken the core from."""
    import psutil
    import torch

    if "me" not in _THREADS:
        _THREADS["me"] = psutil.Process()
        psutil.cpu_percent(interval=None)
        _THREADS["me"].cpu_percent(interval=None)
        return
    busy = psutil.cpu_percent(interval=None)  # all cores, since the last round
    mine = _THREADS["me"].cpu_percent(interval=None) / (psutil.cpu_count() or 1)
    threads = 1 if busy - mine > 100 / (psutil.cpu_count() or 1) * 0.8 else configured_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _restore_threads() -> None:
    """After a round, torch goes back to the configured threads: one thread is for this round's generate
    beside a busy machine, not for what the process does next (a training step, a measurement)."""
    import torch

    if torch.get_num_threads() != configured_threads():
        torch.set_num_threads(configured_threads())


def submit(chat, job: Job) -> None:
    """Queue `job` for `chat` (a ChatModel); the main thread answers its own while it waits (see drain)."""
    _WORK.put((chat, job))
    if not _on_main_thread():
        _ensure_executor()


def _ensure_executor() -> None:
    with _EXECUTOR_LOCK:
        if _EXECUTOR["main"]:
            return
        thread = _EXECUTOR["thread"]
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=_execute, daemon=True, name="studio generate")
            thread.start()
            _EXECUTOR["thread"] = thread


def _execute(until=None, window_s: float | None = None) -> None:
    """Take waiting jobs, wait at most `window_s` (BATCH_WINDOW_S) for companions, answer each model's jobs
    together; until None arrives, or until `until()` is true."""
    window_s = BATCH_WINDOW_S if window_s is None else window_s
    while True:
        if until is not None and until():
            return
        try:
            first = _WORK.get(timeout=0.05 if until is not None else None)
        except queue.Empty:
            continue
        if first is None:
            return
        work = [first]
        # Wait for companions only where there are others about: jobs already waiting, or the last round
        # answered more than one caller. A lone user's question starts at once.
        crowded = not _WORK.empty() or _ROUND["callers"] > 1
        deadline = time.perf_counter() + (window_s if crowded else 0.0)
        while sum(len(job.requests) for _, job in work) < MAX_ROWS:
            try:
                item = _WORK.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if item is None:
                _WORK.put(None)  # answer what was gathered, then stop
                break
            work.append(item)
        _ROUND["callers"] = len(work)
        by_model: dict[int, tuple[object, list[Job]]] = {}
        for chat, job in work:
            by_model.setdefault(id(chat), (chat, []))[1].append(job)
        for chat, jobs in by_model.values():
            try:
                if chat.device == "cpu":
                    _pick_threads()
                chat.answer_jobs(jobs)
            except Exception as exc:  # e.g. messages its chat template refuses: the callers raise it, serving goes on
                for job in jobs:
                    job.out.put((job.tag, 0, exc))
            finally:
                _restore_threads()


def run_here(fn, *args, **kw):
    """Call `fn` on a helper thread while this (main) thread runs the generates it asks for, as the app's
    main thread does for its handlers; returns what `fn` returns (benchmarks measure the app's way)."""
    result: dict = {}

    def call():
        try:
            result["value"] = fn(*args, **kw)
        except BaseException as exc:  # raised again on the calling thread
            result["error"] = exc

    _EXECUTOR["main"] = True
    try:
        helper = threading.Thread(target=call, daemon=True)
        helper.start()
        _execute(until=lambda: not helper.is_alive())
        helper.join()
    finally:
        _EXECUTOR["main"] = False
    if "error" in result:
        raise result["error"]
    return result["value"]


def serve_forever() -> None:
    """Run every generate on the calling thread (the app's main thread) until the process ends."""
    _EXECUTOR["main"] = True
    _execute()


def drain(out: queue.Queue, jobs: int) -> Iterator[tuple[object, int, str | Generation]]:
    """What the batcher answers on `out` until `jobs` jobs are done; an error in a row is raised here.
    On the main thread, with no one serving there, the caller runs the waiting generates itself (no wait
    for companions: a command has none)."""
    inline = _on_main_thread()
    while jobs:
        if inline and out.empty():
            _execute(until=lambda: not out.empty(), window_s=0.0)
        tag, row, item = out.get()
        if row is None:
            jobs -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield tag, row, item


@atexit.register
def _stop_executor() -> None:
    """Let the executor finish its batch and return: torch's threads abort the exit if one is still inside."""
    thread = _EXECUTOR["thread"]
    if thread is not None and thread.is_alive():
        _WORK.put(None)
        thread.join(timeout=30)
