"""The chat playground's model side: prompts of a multi-turn chat, with and without retrieved sources, and
exchanges saved as training examples the Data tab reads."""

import json

import pytest

from engine.data.dataset import check_files
from engine.infer.playground import PlaygroundError, save_exchange, text_of, turns
from rag.pipeline import chat_prompt


def test_prompt_keeps_the_turns_and_puts_sources_before_the_last_question():
    from rag.pipeline import sample_pipeline

    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}]
    plain = chat_prompt(turns(history), "How heavy is the Tilly T2?", "Be brief.")
    assert plain == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "How heavy is the Tilly T2?"}]
    hits = sample_pipeline().retrieve("How heavy is the Tilly T2?")
    assert hits[0].chunk.source == "02-tilly-t2.md"
    grounded = chat_prompt(turns(history), "How heavy is the Tilly T2?", "", hits)
    assert grounded[0]["role"] == "system" and "source" in grounded[0]["content"].lower()  # rag's system prompt
    assert grounded[1:3] == plain[1:3]
    assert grounded[-1]["content"].startswith("Sources:\n[1] (02-tilly-t2.md")
    assert grounded[-1]["content"].endswith("Question: How heavy is the Tilly T2?")


def test_saved_exchanges_append_chat_lines_the_data_tab_reads(tmp_path):
    path = tmp_path / "saved.jsonl"
    history = [{"role": "user", "content": "How heavy is the Tilly T2?"},
               {"role": "assistant", "content": "It weighs 4.2 kg."},
               {"role": "user", "content": "unanswered"}]
    assert save_exchange(history, "Be brief.", path) == (path, 1)
    assert save_exchange(history[:2], "", path) == (path, 2)
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"messages": [{"role": "system", "content": "Be brief."}, history[0], history[1]]}
    report = check_files([str(path)])
    assert report.ok and len(report.examples) == 2
    with pytest.raises(PlaygroundError, match="no answered question"):
        save_exchange([{"role": "user", "content": "only a question"}], "", path)
    assert text_of([{"type": "image", "url": "x"}]) is None and text_of({"text": "a"}) == "a"


def test_stop_ends_the_reply_at_its_next_token_and_keeps_what_was_said(tiny_model):
    import threading

    from engine.infer.chat import ChatModel, Generation
    from engine.infer.playground import answer

    chat = ChatModel(tiny_model)
    question = [{"role": "user", "content": "How heavy is the Tilly T2?"}]
    stop = threading.Event()
    stop.set()
    final = list(answer(chat, False, question, 200, 0.0, cancel=stop))[-1]
    assert isinstance(final, Generation) and final.finish_reason == "cancelled" and final.answer_tokens == 1
    full = list(answer(chat, False, question, 20, 0.0))[-1]
    assert full.finish_reason == "length" and full.answer_tokens == 20  # the executor serves on after a Stop
