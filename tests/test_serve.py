"""`studio serve`: the official openai client and raw HTTP against a real uvicorn server, the base and two
runs on one copy of the base weights, the adapter picked by the request's model, errors in OpenAI's shape."""

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import ROOT, SAMPLE, train
from engine.infer.batching import run_here
from engine.train.config import RunConfig
from engine.infer.serve import load_models, start

openai = pytest.importorskip("openai")
QUESTION = [{"role": "user", "content": "How heavy is the Tilly T2?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = []
    for lr, rank in ((1e-2, 8), (3e-2, 4)):  # two different adapters of the same base
        cfg = RunConfig(model=tiny_model, data=str(SAMPLE / "train.jsonl"), max_steps=8, learning_rate=lr,
                        lora_rank=rank, batch_size=8, max_length=96, save_steps=100)
        run = train(cfg, root)
        assert run.status() == "finished", (run.dir / "train.log").read_text()[-3000:]
        made.append(run)
    return root, made


@pytest.fixture(scope="module")
def server(runs, tiny_model):
    root, (a, b) = runs
    models = load_models([a.id, b.id], root=root)
    port = free_port()
    srv = start(models, port=port, api_key=None)
    yield f"http://127.0.0.1:{port}", models, a, b
    srv.should_exit = True


def served(fn, *args):
    """The client calls run on a helper thread while this (main) thread runs the generations, as in the app."""
    return run_here(fn, *args)


def test_models_lists_base_and_runs_on_one_copy_of_the_weights(server, tiny_model):
    url, models, a, b = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    ids = [m.id for m in served(lambda: list(client.models.list()))]
    assert ids == [tiny_model, a.id, b.id]
    chats = {id(models[i].chat) for i in ids}
    assert len(chats) == 1  # one ChatModel, one set of base weights, both adapters on it
    model = models[a.id].chat.model
    base_weights = [p for n, p in model.named_parameters() if "lora_" not in n]
    assert len({p.data_ptr() for p in base_weights}) == len(base_weights)
    lora_a = {n.split(".lora_A.")[1].split(".")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert lora_a == {"default", b.id}


def test_plain_answers_follow_the_requested_adapter(server, tiny_model):
    from engine.infer.chat import ChatModel

    url, models, a, b = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

    def ask(model):  # the page's repetition penalty (ChatModel's default), asked as vLLM's extra field
        return client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12, temperature=0,
                                              extra_body={"repetition_penalty": 1.1})

    replies = served(lambda: [ask(m) for m in (a.id, b.id, tiny_model, a.id)])
    want_a = ChatModel(tiny_model, a.adapter).generate(QUESTION, True, 12).text
    want_b = ChatModel(tiny_model, b.adapter).generate(QUESTION, True, 12).text
    want_base = ChatModel(tiny_model).generate(QUESTION, False, 12).text
    got = [r.choices[0].message.content for r in replies]
    assert got == [want_a, want_b, want_base, want_a]
    assert len({want_a, want_b, want_base}) == 3  # the adapters really differ, so the switch was tested
    r = replies[0]
    assert r.object == "chat.completion" and r.model == a.id and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_streamed_answer_arrives_in_pieces_that_add_up_to_the_plain_one(server):
    url, models, a, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

    def go():
        plain = client.chat.completions.create(model=a.id, messages=QUESTION, max_tokens=16, temperature=0)
        chunks = list(client.chat.completions.create(model=a.id, messages=QUESTION, max_tokens=16, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        return plain, chunks

    plain, chunks = served(go)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 16


def test_raw_http_stream_ends_with_done_and_stop_strings_end_the_answer(server):
    url, _, a, _ = server

    def go():
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                          json={"model": a.id, "messages": QUESTION, "max_tokens": 8, "stream": True}) as r:
            lines = [ln for ln in r.iter_lines() if ln]
        full = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                          json={"model": a.id, "messages": QUESTION, "max_tokens": 20, "temperature": 0}).json()
        text = full["choices"][0]["message"]["content"]
        cut = text.strip().split()[1] if len(text.split()) > 2 else text[2:4]
        stopped = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                             json={"model": a.id, "messages": QUESTION, "max_tokens": 20, "temperature": 0,
                                   "stop": [cut]}).json()
        return r.headers["content-type"], lines, text, cut, stopped

    ctype, lines, text, cut, stopped = served(go)
    assert ctype.startswith("text/event-stream")
    assert all(ln.startswith("data: ") for ln in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[1][6:])["object"] == "chat.completion.chunk"
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["message"]["content"] == text[:text.index(cut)].strip()  # answers are trimmed


def test_concurrent_requests_are_all_answered_each_under_its_own_adapter(server, monkeypatch):
    """Six clients at once, two adapters: every request is answered, and every batch the executor runs holds
    rows of one adapter with that adapter switched on (read at the switch, so no greedy near-tie of the tiny
    random model, which a batch of another size may flip, can make this pass or fail)."""
    from concurrent.futures import ThreadPoolExecutor

    url, models, a, b = server
    chat = models[a.id].chat
    batches = []
    switch = chat._switch

    def spying(rows):
        context = switch(rows)
        batches.append(([r.adapter for _, _, r in rows], chat.model.active_adapter))
        return context

    monkeypatch.setattr(chat, "_switch", spying)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

    def go():
        with ThreadPoolExecutor(6) as pool:
            return list(pool.map(lambda m: client.chat.completions.create(
                model=m, messages=QUESTION, max_tokens=6, temperature=0), [a.id, b.id] * 3))

    replies = served(go)
    assert all(r.choices[0].message.content and r.usage.completion_tokens <= 6 for r in replies)
    assert [r.model for r in replies] == [a.id, b.id] * 3
    assert sum(len(rows) for rows, _ in batches) == 6
    for rows, active in batches:
        assert len(set(rows)) == 1 and active == rows[0], batches
    assert {rows[0] for rows, _ in batches} == {"default", b.id}


def test_bad_requests_get_openai_shaped_errors(server):
    url, _, a, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")

    def go():
        out = {}
        try:
            client.chat.completions.create(model="no-such-run", messages=QUESTION)
        except openai.NotFoundError as exc:
            out["unknown"] = exc
        post = lambda body: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)  # noqa: E731
        out["role"] = post({"model": a.id, "messages": [{"role": "robot", "content": "hi"}]})
        out["none"] = post({"model": a.id, "messages": []})
        out["long"] = post({"model": a.id, "messages": QUESTION, "max_tokens": 100000})
        out["json"] = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", timeout=60,
                                 headers={"content-type": "application/json"})
        return out

    out = served(go)
    assert out["unknown"].status_code == 404 and out["unknown"].code == "model_not_found"
    assert "no-such-run" in out["unknown"].message
    for key, param in (("role", "messages.0.role"), ("none", "messages"), ("long", "messages")):
        r = out[key]
        assert r.status_code == 400, (key, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert out["long"].json()["error"]["code"] == "context_length_exceeded"
    assert "512 tokens" in out["long"].json()["error"]["message"]
    assert out["json"].status_code == 400 and "error" in out["json"].json()


def test_api_key_is_checked_on_every_request(runs, tiny_model):
    root, (a, _) = runs
    port = free_port()
    srv = start(load_models([a.id], root=root), port=port, api_key="s3cret")
    try:
        def go():
            denied = httpx.get(f"http://127.0.0.1:{port}/v1/models")
            wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope")
            try:
                wrong.models.list()
            except openai.AuthenticationError as exc:
                refused = exc
            good = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="s3cret")
            return denied, refused, [m.id for m in good.models.list()]

        denied, refused, ids = served(go)
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        assert refused.status_code == 401
        assert ids == [tiny_model, a.id]
    finally:
        srv.should_exit = True


def test_studio_serve_command_listens_on_localhost_and_answers(runs, tmp_path):
    root, (a, _) = runs
    port = free_port()
    env = {**__import__("os").environ, "STUDIO_RUNS": str(root), "STUDIO_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "serve", a.id, "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # up when it answers, however long this machine takes to import torch
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "studio serve did not start"
                time.sleep(0.5)
        assert a.id in [m["id"] for m in models["data"]]
        reply = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x").chat.completions.create(
            model=a.id, messages=QUESTION, max_tokens=5)
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 5
        listening = [c for c in __import__("psutil").Process(proc.pid).net_connections()
                     if c.status == "LISTEN" and c.laddr.port == port]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    finally:
        proc.terminate()
        proc.wait(30)


def test_unknown_run_is_refused_before_serving(tmp_path):
    from engine.infer.served import ServeError

    with pytest.raises(ServeError, match="nope: no such run"):
        load_models(["nope"], root=tmp_path)


def test_vllm_engine_without_vllm_or_a_gpu_says_so(tmp_path):
    from engine.infer.served import ServeError
    from engine.infer.serve_vllm import load_vllm_models

    with pytest.raises(ServeError, match="--engine vllm needs"):
        load_vllm_models([], root=tmp_path)
