"""The Chat tab: talk with the base model or any finished run, streamed, with a system prompt, sampling
settings, an adapter switch, optional retrieval from a collection (sources shown), Stop, and a button
that saves the exchange as a training example.

Layout and wiring only: the model side is engine/infer/playground.py, retrieval and the prompt rag/pipeline.py.

    Part of the studio page: `studio` (ui/app.py builds it with `build_chat_tab`).
"""

from __future__ import annotations

import html
import threading

import gradio as gr

from engine.errors import StudioError
from engine.infer.chat import Generation
from engine.infer.playground import BASE, answer, chat_for, examples_path, save_exchange, turns
from rag.pipeline import chat_prompt
from ui import owners
from ui.compare_tab import _pipeline, collections
from ui.notify import refuse
from ui.runs_tab import finished_runs

NO_RETRIEVAL = "none"
_STOPS: dict[str, threading.Event] = {}  # each browser session's reply in progress, for its Stop button


def choices(request: gr.Request | None = None) -> list[str]:
    return [BASE] + finished_runs(request)


def _sources(hits) -> str:
    if not hits:
        return ""
    lines = [f"{i}. **{html.escape(h.chunk.source)}** (score {h.score:.2f}): {html.escape(h.chunk.text[:160])}"
             for i, h in enumerate(hits, start=1)]
    return "**Sources**\n\n" + "\n".join(lines)


def refresh_chat_models(picked, request: gr.Request = None):
    mine = choices(request)
    return gr.update(choices=mine, value=picked if picked in mine else BASE)


def respond(question, history, who, adapter_on, system, temperature, top_p, max_tokens, collection, base_model,
            request: gr.Request = None):
    """Stream the reply into the chat; yields (chat, question box, sources, status)."""
    stop = _STOPS[getattr(request, "session_hash", None) or "-"] = threading.Event()
    history = list(history or [])
    question = (question or "").strip()
    if not question:
        yield history, "", gr.update(), refuse("Type a message first.")
        return
    try:
        if who and who != BASE:
            owners.run_of(request, who)  # only a run of one's own
        chat, use_adapter = chat_for(who, owners.model_of(request, base_model), adapter_on)
        hits = []
        if collection and collection != NO_RETRIEVAL:
            hits = _pipeline(collection, 3, 0.0, 0.0, request=request).retrieve(question)
        messages = chat_prompt(turns(history), question, system or "", hits)
        history = history + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        yield history, "", _sources(hits), "Answering..."
        for item in answer(chat, use_adapter, messages, max_tokens, temperature, top_p, cancel=stop):
            history[-1] = {"role": "assistant", "content": item.text if isinstance(item, Generation) else item}
            if isinstance(item, Generation):
                status = ("Stopped: " if item.finish_reason == "cancelled" else "") + (
                          f"{item.answer_tokens} tokens in {item.seconds:.1f} s "
                          f"({'adapter on' if use_adapter else 'adapter off' if who not in (None, BASE) else 'base'}; "
                          f"{chat.precision})")
                yield history, "", gr.update(), status
            else:
                yield history, "", gr.update(), gr.update()
    except (StudioError, ValueError, OSError) as err:
        yield history, question, gr.update(), refuse(err)


def stop_reply(request: gr.Request = None):
    """Stop: the session's reply ends at its next token (the batch goes on for everyone else)."""
    stop = _STOPS.get(getattr(request, "session_hash", None) or "-")
    if stop is not None:
        stop.set()
    return "Stopped."


def save(history, system, request: gr.Request = None):
    try:
        _, count = save_exchange(list(history or []), system or "", examples_path(owners.person(request).owner))
    except (StudioError, OSError) as err:
        return refuse(err)
    return (f"Saved as a training example: you have {count} saved. Train on them with the Data tab's "
            "\"Use the chat examples saved from the Chat tab\".")


def build_chat_tab(model):
    """The Chat tab's layout and events; returns the model picker (the page refreshes its runs)."""
    gr.Markdown("Chat with the base model or a finished run. Switch the adapter off to hear the base model on "
                "the same weights; pick a collection to answer from its documents. Good answers can be saved "
                "as training examples, so the dataset grows from use.")
    with gr.Row():
        who = gr.Dropdown([BASE], value=BASE, label="Chat with", elem_id="chat-model", scale=2)
        adapter_on = gr.Checkbox(True, label="Adapter on", elem_id="chat-adapter")
        collection = gr.Dropdown([NO_RETRIEVAL, owners.SAMPLE_COLLECTION], value=NO_RETRIEVAL, label="Retrieval from",
                                 elem_id="chat-collection")
        refresh = gr.Button("Refresh", scale=0, elem_id="chat-refresh")
    system = gr.Textbox("", label="System prompt", lines=1, elem_id="chat-system")
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature (0: greedy)", elem_id="chat-temperature")
        top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", elem_id="chat-top-p")
        max_tokens = gr.Slider(16, 1024, value=256, step=16, label="Max tokens", elem_id="chat-max-tokens")
    chatbot = gr.Chatbot([], label="Chat", height=360, elem_id="chat-log")
    with gr.Row():
        question = gr.Textbox("", label="Message", placeholder="Ask something", scale=4, elem_id="chat-input")
        send = gr.Button("Send", variant="primary", scale=0, elem_id="chat-send")
        stop = gr.Button("Stop", scale=0, elem_id="chat-stop")
    sources = gr.Markdown(elem_id="chat-sources")
    status = gr.Markdown(elem_id="chat-status")
    with gr.Row():
        clear = gr.Button("Clear chat", elem_id="chat-clear")
        keep = gr.Button("Save this exchange as a training example", elem_id="chat-save")
    saved = gr.Markdown("Saved examples go to a file of yours beside the runs; the Data tab's **Use the chat "
                        "examples saved from the Chat tab** reads it.", elem_id="chat-saved")

    inputs = [question, chatbot, who, adapter_on, system, temperature, top_p, max_tokens, collection, model]
    outputs = [chatbot, question, sources, status]
    send.click(respond, inputs, outputs, concurrency_limit=4, concurrency_id="chat")
    question.submit(respond, inputs, outputs, concurrency_limit=4, concurrency_id="chat")
    stop.click(stop_reply, None, status, queue=False)
    clear.click(lambda: ([], "", ""), None, [chatbot, sources, status], queue=False)
    keep.click(save, [chatbot, system], saved)

    def refresh_all(picked, request: gr.Request):
        return refresh_chat_models(picked, request), gr.update(choices=[NO_RETRIEVAL] + collections(request))

    refresh.click(refresh_all, who, [who, collection])
    return who, collection

