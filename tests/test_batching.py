"""Batched answers: the same tokens as one at a time, one generate for many callers, each row streamed.

Real peft adapters on the tiny model (LoRA answers base and adapter rows in one mixed batch, DoRA
cannot and splits them), fp32, greedy."""

import json
import threading
import time

import pytest
import torch

from conftest import SAMPLE

QUESTIONS = [json.loads(line)["question"] for line in (SAMPLE / "eval.jsonl").read_text().splitlines()][:6]


def _adapter(tiny_model, path, **lora):
    from peft import LoraConfig, get_peft_model

    from engine.models import load_causal_lm

    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(tiny_model),
                           LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False, **lora))
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def lora(tiny_model, tmp_path_factory):
    return _adapter(tiny_model, tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def chat(tiny_model, lora):
    from engine.infer.chat import ChatModel

    return ChatModel(tiny_model, lora, precision="fp32")


def _requests(n=6, tokens=24):
    from engine.infer.chat import Request

    return [Request([{"role": "user", "content": q}], use_adapter=bool(i % 2), max_new_tokens=tokens)
            for i, q in enumerate(QUESTIONS[:n])]


def _count_generates(chat):
    """Rows of each batched generation `chat` runs."""
    calls = []
    original = chat._run

    def counted(rows):
        calls.append(len(rows))
        return original(rows)

    chat._run = counted
    return calls, lambda: delattr(chat, "_run")


def test_batched_greedy_answers_equal_one_at_a_time(chat):
    assert chat.mixed_batches and chat.masked and chat.own_loop and chat.precision == "fp32"
    requests = _requests()
    alone = [chat.generate(r.messages, r.use_adapter, r.max_new_tokens) for r in requests]
    calls, undo = _count_generates(chat)
    try:
        batched = chat.generate_many(_requests())
    finally:
        undo()
    assert calls == [6]  # base and adapter rows in one generate
    assert [b.text for b in batched] == [a.text for a in alone]
    assert [b.answer_tokens for b in batched] == [a.answer_tokens for a in alone]
    assert [b.prompt_tokens for b in batched] == [a.prompt_tokens for a in alone]
    # the adapter rows really are the adapter's: switched off, the same prompts answer differently
    assert [a.text for a in alone[1::2]] != [chat.generate(r.messages, False, 24).text for r in requests[1::2]]


def test_a_dora_adapter_splits_its_rows_and_still_matches(tiny_model, tmp_path):
    from engine.infer.chat import ChatModel

    dora = ChatModel(tiny_model, _adapter(tiny_model, tmp_path / "dora", use_dora=True), precision="fp32")
    assert not dora.mixed_batches  # peft has no mixed batches for DoRA
    requests = _requests(4)
    alone = [dora.generate(r.messages, r.use_adapter, r.max_new_tokens).text for r in requests]
    calls, undo = _count_generates(dora)
    try:
        batched = [g.text for g in dora.generate_many(_requests(4))]
    finally:
        undo()
    assert sorted(calls) == [2, 2] and batched == alone  # base rows adapter off, adapter rows on
    from engine.infer.chat import Answerer, Answerers

    assert "two batches" in Answerers(Answerer(dora, False), Answerer(dora, True)).batching()


def test_each_row_streams_its_own_text(chat, monkeypatch):
    from engine.infer import batching

    monkeypatch.setattr(batching, "STREAM_EVERY_S", 0.0)  # every token
    seen: dict[int, list] = {}
    for row, item in chat.stream_many(_requests(3, tokens=16)):
        seen.setdefault(row, []).append(item)
    assert sorted(seen) == [0, 1, 2]
    for items in seen.values():
        *growing, final = items
        assert len(growing) > 3 and all(isinstance(t, str) for t in growing)
        assert all(b.startswith(a) for a, b in zip(growing, growing[1:]))  # each text grows from the last
        assert final.text.startswith(growing[-1].strip()) and final.answer_tokens <= 16
    monkeypatch.setattr(batching, "STREAM_EVERY_S", 60.0)  # a caller is told at most once a minute, then the end
    throttled = [item for row, item in chat.stream_many(_requests(1, tokens=16))]
    assert len(throttled) == 2 and throttled[-1].text.startswith(throttled[0].strip())


def test_callers_at_the_same_moment_share_one_generate(chat, monkeypatch):
    from engine.infer import batching

    monkeypatch.setattr(batching, "BATCH_WINDOW_S", 1.0)  # wait long enough for every companion here
    batching._stop_executor()  # none serving yet: the first to ask starts it
    alone = [chat.generate(r.messages, r.use_adapter, r.max_new_tokens).text for r in _requests(4)]
    calls, undo = _count_generates(chat)
    answers: dict[int, str] = {}
    barrier = threading.Barrier(4)

    def user(i, request):
        barrier.wait()
        answers[i] = chat.generate(request.messages, request.use_adapter, request.max_new_tokens).text

    try:
        threads = [threading.Thread(target=user, args=(i, r)) for i, r in enumerate(_requests(4))]
        with batching._EXECUTOR_LOCK:  # no executor starts until all four have asked: they all wait together
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while batching._WORK.qsize() < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(60)
    finally:
        undo()
    assert calls == [4]  # four users' questions in one batch
    assert [answers[i] for i in range(4)] == alone


def test_rows_end_on_their_own_limit_and_stop_strings(chat):
    from engine.infer.chat import Request

    long, short = chat.generate_many([Request([{"role": "user", "content": QUESTIONS[0]}], max_new_tokens=20),
                                      Request([{"role": "user", "content": QUESTIONS[0]}], max_new_tokens=5)])
    assert long.answer_tokens == 20 and short.answer_tokens == 5 and short.finish_reason == "length"
    assert long.text.startswith(short.text)
    word = long.text.split()[2]
    cut = chat.generate_many([Request([{"role": "user", "content": QUESTIONS[0]}], max_new_tokens=20,
                                      stop=(word,))])[0]
    assert cut.finish_reason == "stop" and word not in cut.text and long.text.startswith(cut.text)


def test_a_bad_request_is_refused_and_the_batcher_keeps_serving(tiny_model, chat):
    from engine.infer.chat import ChatModel, Request

    plain = ChatModel(tiny_model, precision="fp32")
    with pytest.raises(ValueError, match="no adapter"):
        plain.generate_many([Request([{"role": "user", "content": "hi"}], use_adapter=True)])
    with pytest.raises(Exception):  # messages the chat template cannot render reach the caller, not the executor
        plain.generate_many([Request([{"no role": "x"}])])
    assert plain.generate([{"role": "user", "content": "hi"}], use_adapter=False, max_new_tokens=4).answer_tokens


def test_four_columns_and_a_full_fine_tune_as_two_batched_models(tiny_model, tmp_path, lora):
    """Answerers batch a question's columns per set of weights; a full fine-tune is a second model."""
    from engine.infer.chat import Answerers, Answerer, ChatModel
    from engine.models import load_causal_lm
    from rag.compare import compare
    from rag.pipeline import RagPipeline

    tuned_dir = tmp_path / "full"
    model = load_causal_lm(tiny_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(tuned_dir)
    from engine.models import load_tokenizer

    load_tokenizer(tiny_model).save_pretrained(tuned_dir)
    base, tuned = ChatModel(tiny_model, precision="fp32"), ChatModel(str(tuned_dir), precision="fp32")
    pair = Answerers(Answerer(base), Answerer(tuned), max_new_tokens=16)
    pipe = RagPipeline()
    pipe.index([SAMPLE / "docs"])
    calls_b, undo_b = _count_generates(base)
    calls_t, undo_t = _count_generates(tuned)
    try:
        answers = compare(QUESTIONS[0], pipe, pair)
    finally:
        undo_b(), undo_t()
    assert calls_b == [2] and calls_t == [2]  # two columns each, one generate each
    assert pair.batching().startswith("Base and fine-tuned models")
    fit_messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert answers[0].text == base.generate(fit_messages, False, 16).text
    assert answers[2].text == tuned.generate(fit_messages, False, 16).text
    assert answers[0].text != answers[2].text


def test_precision_stays_fp32_where_bf16_is_slower_or_answers_differ(tiny_model, lora, tmp_path, monkeypatch):
    import engine.capability as capability
    from engine.infer.chat import ChatModel

    monkeypatch.setenv("STUDIO_MEASURED", str(tmp_path))
    cap = capability.Capability("cpu", "seeded", (64, 128), {"fp32": 165.0, "bf16": 0.9}, {"bf16": 0.005})
    monkeypatch.setattr(capability, "capability", lambda *a, **k: cap)
    slow = ChatModel(tiny_model, lora)
    assert slow.precision == "fp32" and "slower than fp32" in slow.precision_note
    fast = capability.Capability("cpu", "seeded-fast", (64, 128), {"fp32": 165.0, "bf16": 700.0}, {"bf16": 4.2})
    monkeypatch.setattr(capability, "capability", lambda *a, **k: fast)
    chat = ChatModel(tiny_model, lora)
    cache = json.loads((tmp_path / "generation-precision.json").read_text())
    (checked,) = cache.values()  # the check ran once, on every sample question, and was cached
    assert checked["prompts"] == 20
    if checked["same"]:
        assert chat.precision == "bf16" and "match fp32's token for token" in chat.precision_note
    else:
        assert chat.precision == "fp32" and "differ from fp32's" in chat.precision_note
    # a cached "differ" keeps fp32 without checking again
    (tmp_path / "generation-precision.json").write_text(json.dumps({k: {"same": False, "prompts": 20}
                                                                     for k in cache}))
    assert ChatModel(tiny_model, lora).precision == "fp32"


def test_packed_linear_layers_give_the_plain_layers_answers(tiny_model, monkeypatch):
    from engine.infer.chat import ChatModel, Request

    packed = ChatModel(tiny_model, precision="fp32")
    monkeypatch.setenv("STUDIO_PACKED", "0")
    plain = ChatModel(tiny_model, precision="fp32")
    if "packed" not in packed.kernels:
        pytest.skip(f"no packing on this machine: {packed.kernels}")
    assert "STUDIO_PACKED=0" in plain.kernels
    requests = [Request([{"role": "user", "content": q}], max_new_tokens=24) for q in QUESTIONS]
    assert [g.text for g in packed.generate_many(requests)] == [g.text for g in plain.generate_many(requests)]


def test_masked_lora_rows_equal_peft_own_forward(tiny_model, lora, monkeypatch):
    """The masked LoRA layers add the update peft adds: answers equal peft's own mixed-batch path."""
    from engine.infer.chat import ChatModel

    monkeypatch.setenv("STUDIO_MASKED_LORA", "0")
    peft_path = ChatModel(tiny_model, lora, precision="fp32")
    monkeypatch.delenv("STUDIO_MASKED_LORA")
    masked = ChatModel(tiny_model, lora, precision="fp32")
    assert masked.masked and not peft_path.masked
    assert [g.text for g in masked.generate_many(_requests())] == [g.text for g in peft_path.generate_many(_requests())]


def test_the_own_loop_answers_as_transformers_generate_does(tiny_model, lora, monkeypatch):
    """Unpadded prompts and ended rows leaving the batch change no token: the same answers as one left-padded
    `generate` over the whole batch (peft's own mixed-adapter batch)."""
    from engine.infer.chat import ChatModel

    monkeypatch.setenv("STUDIO_OWN_LOOP", "0")
    monkeypatch.setenv("STUDIO_MASKED_LORA", "0")
    stock = ChatModel(tiny_model, lora, precision="fp32")
    monkeypatch.undo()
    own = ChatModel(tiny_model, lora, precision="fp32")
    assert own.own_loop and not stock.own_loop
    requests = _requests(6, tokens=32)
    for r, n in zip(requests, (32, 5, 17, 32, 9, 24)):  # rows end at different steps
        r.max_new_tokens = n
    expected = [(g.text, g.answer_tokens) for g in stock.generate_many(_requests(6, tokens=32)[:0] or requests)]
    for r in requests:
        r.ids = None
    assert [(g.text, g.answer_tokens) for g in own.generate_many(requests)] == expected


def test_a_round_beside_a_busy_machine_runs_on_one_thread_then_gives_the_threads_back(chat, monkeypatch):
    """Other processes keeping every core busy (read from psutil, here made to say so) put a round on one
    thread; the next thing the process does runs on its configured threads again, and the capability
    figures keep the configured count in their key (a key read as "1 threads" found no figures once)."""
    import psutil

    from engine.infer import batching
    from engine import capability

    configured = capability.threads()
    key = capability.machine_key((64, 128))
    monkeypatch.setattr(batching, "_THREADS", {})
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 100.0)  # all cores busy ...
    monkeypatch.setattr(psutil.Process, "cpu_percent", lambda self, interval=None: 0.0)  # ... none by us
    seen, answer = [], chat.answer_jobs

    def spy(jobs):
        seen.append(torch.get_num_threads())
        key_then = capability.machine_key((64, 128))
        answer(jobs)
        seen.append(key_then)

    monkeypatch.setattr(chat, "answer_jobs", spy)
    chat.generate_many(_requests(1, tokens=4))  # the first round reads the machine, the second acts on it
    chat.generate_many(_requests(1, tokens=4))
    assert seen == [configured, key, 1, key]
    assert torch.get_num_threads() == configured
