"""How `studio serve` holds up under concurrent clients: N requests one after another, then N at once,
through the official openai client against the real HTTP server, on the same model and prompts.

    python -m studio.serve_bench [RUN_ID] [--users 8] [--tokens 32]

Prints the wall time of each way, their ratio, and the latency spread of the concurrent requests.
Greedy decoding, so both ways produce the same answers (checked).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from engine.infer.batching import run_here
from engine.train.distributed import free_port
from engine.infer.serve import load_models, start

QUESTIONS = ["What is Zorvane?", "How heavy is the Tilly T2?", "Who founded Zorvane Robotics?",
             "What does the Tilly dock do?", "Name three colours.", "Write one sentence about the sea.",
             "What is the capital of France?", "How do I water a garden?"]


def main(argv=None) -> int:
    from openai import OpenAI

    p = argparse.ArgumentParser(prog="python -m studio.serve_bench")
    p.add_argument("run", nargs="?", help="a finished run (default: the base model)")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--tokens", type=int, default=32)
    a = p.parse_args(argv)
    models = load_models([a.run] if a.run else [])
    model = a.run or next(iter(models))
    port = free_port()
    server = start(models, port=port)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(a.users)]

    def ask(q):
        t = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": q}],
                                           max_tokens=a.tokens, temperature=0)
        return r.choices[0].message.content, r.usage.completion_tokens, time.perf_counter() - t

    def bench():
        ask(prompts[0])  # warm-up: first-call costs are not the server's steady state
        t = time.perf_counter()
        one_by_one = [ask(q) for q in prompts]
        sequential = time.perf_counter() - t
        t = time.perf_counter()
        with ThreadPoolExecutor(a.users) as pool:
            together = list(pool.map(ask, prompts))
        return one_by_one, sequential, together, time.perf_counter() - t

    try:
        one_by_one, sequential, together, concurrent = run_here(bench)
    finally:
        server.should_exit = True
    same = sum(x[0] == y[0] for x, y in zip(one_by_one, together))
    tokens = sum(x[1] for x in together)
    latencies = sorted(x[2] for x in together)
    print(f"model {model}, {a.users} requests of at most {a.tokens} tokens ({tokens} generated), "
          f"{models[model].chat.precision_note}")
    print(f"one after another: {sequential:7.2f} s  ({tokens / sequential:6.1f} tokens/s)")
    print(f"all at once:       {concurrent:7.2f} s  ({tokens / concurrent:6.1f} tokens/s)  "
          f"= {sequential / concurrent:.2f}x; latency p50 {statistics.median(latencies):.2f} s, "
          f"max {latencies[-1]:.2f} s")
    print(f"same answers both ways: {same}/{a.users}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
