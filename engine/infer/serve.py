"""An OpenAI-compatible HTTP endpoint for the base model and finished runs: `studio serve`.

    studio serve [RUN_ID ...] [--model BASE] [--port 8000] [--host 127.0.0.1] [--api-key KEY]

Routes, in OpenAI's shapes:
- `GET /v1/models`: the base model, each run by its run id, and the embedder (`studio-embedder`).
- `POST /v1/chat/completions`: plain or streamed (server-sent events ending in `data: [DONE]`), with
  `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`, `stop`, `seed`, `presence_penalty`,
  `frequency_penalty`, `logprobs` / `top_logprobs` (the model's own: the log-softmax of its raw logits),
  `response_format` (`json_object` or `json_schema`, held to while decoding: engine/infer/constrain.py),
  and `tools` / `tool_choice` where the model's chat template renders tools (else refused, naming the
  template); a call is read back from the answer (`<tool_call>` blocks or a bare JSON call), and
  `tool_choice: "required"` or a named function holds the answer to a call's JSON shape.
- `POST /v1/completions`: `prompt` as text, a list of texts, or token ids; `max_tokens` (0 with `echo`
  scores the prompt only), `logprobs`, `echo`, `stop`, `seed`, penalties; plain or streamed. The prompt
  is read as it is (no chat template, no repetition penalty, special tokens allowed), so log-likelihoods
  and greedy answers are the model's own: what the evaluation harness's `local-completions` needs.
- `POST /v1/responses`: OpenAI's Responses API on the same executor: `input` as text or messages (text
  parts), `instructions`, `max_output_tokens`, `temperature`, `top_p`, `text.format` (json_object or a JSON
  schema), plain or streamed with its event types (response.created ... response.output_text.delta ...
  response.completed); tools, earlier responses and reasoning are refused by name.
- `POST /v1/embeddings`: the RAG embedder (`studio-embedder`), one text or a list; a text longer than the
  embedder reads is refused with a 400 naming the limit, never cut.

Streamed answers hold back an end that may still grow into a stop string (as vLLM does), so a streamed answer
is the plain one; any number of stop strings is taken (up to 256). Chat takes no repetition penalty unless the
request asks for one (vLLM's extra `repetition_penalty`), so temperature 0 is the argmax, and its logprobs are
exactly the answer's tokens (not the end token). An unknown route or method gets OpenAI's error object.

Every field of a request is honoured or refused: a field OpenAI defines that this server does not honour
(`audio`, `logit_bias`, `n` above 1, `prediction`, `store: true`, ...) gets a 400 naming it, as does a
field OpenAI does not define. `user`, `safety_identifier`, the `prompt_cache_*` hints and `metadata` are
taken and change nothing (as at OpenAI, they change no answer).

The request's `model` picks the weights: the base id, or a run id. Every adapter run of one base is
loaded onto one copy of its weights (peft's named adapters; a request switches to its own); a full
fine-tune is its own model. Requests go through the studio's one generation executor
(engine/infer/batching.py), so concurrent requests for the same model and sampling settings are
answered in one batch, as the Compare tab's are.

Errors come back in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the status
OpenAI uses: 400 a malformed request (the field named), 401 a missing or wrong key, 404 an unknown
model. With `--api-key` (or `STUDIO_API_KEY`) every request must carry `Authorization: Bearer KEY`.
The server listens on 127.0.0.1 unless `--host` says otherwise, and says so when it listens beyond this
machine without a key. FastAPI and uvicorn (both come with gradio) carry the HTTP; the generations run
on the main thread, as in the app.

The routes know a model id only through the `Served` contract (engine/infer/served.py): `load_models`
here gives the studio's own engine; on a GPU with vLLM installed, `studio serve --engine vllm` gives
engine/infer/serve_vllm.py's instead, with the runs' LoRA adapters. `start` serves either.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import re
import secrets
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from engine.infer.chat import ChatModel, Generation, Request
from engine.infer.constrain import ConstraintError, json_constraint
from engine.infer.openai_shapes import (UNSUPPORTED_CHAT, UNSUPPORTED_COMPLETION, UNSUPPORTED_RESPONSES, APIError,
                                        ChatRequest, CompletionRequest, EmbeddingRequest, ResponsesRequest, Sampling,
                                        refuse_unsupported)
from engine.infer.served import Embedding, EmbedWorker, ServeError, Served
from engine.models import DEFAULT_MODEL
from engine.train.runs import Run, runs_root

DEFAULT_MAX_TOKENS = 256
EMBEDDER_ID = "studio-embedder"


@dataclass
class ChatServed:
    """A model id answered by the studio's own executor: which ChatModel, with which adapter on (or none)."""
    id: str
    chat: ChatModel
    adapter: str | None = None  # the adapter's name in chat, None for the base weights
    created: int = 0
    owned_by: str = "studio"

    def request(self, messages, max_tokens, **options) -> Request:
        return Request(messages or [], self.adapter is not None, max_tokens, adapter=self.adapter or "default",
                       **options)

    def refusal(self, request: Request) -> str | None:
        return self.chat.refusal(request)

    def encode(self, text: str) -> list[int]:
        return list(self.chat.tokenizer(text)["input_ids"])

    def decode(self, tokens: list[int]) -> str:
        return self.chat.tokenizer.decode(tokens)

    def template_takes_tools(self) -> bool:
        return self.chat.template_takes_tools()

    def prompt_tokens(self, request: Request) -> int:
        return self.chat.prompt_tokens(request)

    def window(self) -> int:
        return self.chat.window()

    def answer_many(self, requests: list[Request]) -> Iterator[tuple[int, str | Generation]]:
        """Through the studio's executor; a client that goes away ends its rows at their next token."""
        yield from self.chat.stream_many(requests)


def load_models(run_ids: list[str], base: str | None = None, root=None) -> dict[str, Served]:
    """The served models: each base once (with every adapter run of it on the same weights), each full run."""
    root = root or runs_root()
    runs = []
    for run_id in run_ids:
        run = Run(root / run_id)
        if not (run.dir / "config.yaml").exists():
            raise ServeError(f"{run_id}: no such run in {root}.")
        if run.weights is None:
            raise ServeError(f"{run.no_weights().capitalize()}; it cannot be served.")
        runs.append(run)
    by_base: dict[str, list] = {}
    for run in runs:
        if run.model_dir is None:
            by_base.setdefault(run.base_model, []).append(run)
    if not runs or base:
        by_base.setdefault(base or (runs[0].base_model if runs else DEFAULT_MODEL), [])
    served: dict[str, Served] = {}
    for model, adapter_runs in by_base.items():
        first, rest = (adapter_runs[0], adapter_runs[1:]) if adapter_runs else (None, [])
        chat = ChatModel(model, first.adapter if first else None,
                         more_adapters={r.id: r.adapter for r in rest} or None)
        served[model] = ChatServed(model, chat, None, int(time.time()))
        for run in adapter_runs:
            served[run.id] = ChatServed(run.id, chat, "default" if run is first else run.id,
                                    int(run.dir.stat().st_mtime))
    for run in runs:
        if run.model_dir is not None:
            served[run.id] = ChatServed(run.id, ChatModel(str(run.model_dir)), None, int(run.dir.stat().st_mtime))
    return served


def _text(content, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise APIError(400, f"messages[{index}].content: only text parts are supported here.",
                           f"messages[{index}].content")
        parts.append(part["text"])
    return "".join(parts)


def _model(name: str, models: dict[str, Served]) -> Served:
    served = models.get(name)
    if served is None:
        raise APIError(404, f"The model {name!r} does not exist here; GET /v1/models lists "
                            f"{', '.join(sorted(models))}.", "model", "model_not_found")
    return served


MAX_STOPS = 256  # vLLM sets no limit; the evaluation harness adds its own to a task's (OpenAI's 4 would refuse)


def _stops(stop) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOPS:
        raise APIError(400, f"stop: at most {MAX_STOPS} sequences.", "stop")
    return tuple(s for s in stops if s)


def held_back(text: str, stops: tuple[str, ...], strip: bool = False) -> str:
    """What of a growing answer may go out now: the text before any stop string in it, less an end that may
    still grow into one (vLLM holds those back too, so a streamed answer equals the plain one); `strip`: also
    the trailing whitespace the final answer drops (a JSON answer is stripped)."""
    cut = len(text)
    for s in stops:
        found = text.find(s)
        if found >= 0:
            cut = min(cut, found)
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                cut = min(cut, len(text) - k)
                break
    out = text[:cut]
    return out.rstrip() if strip else out


def _common(body: Sampling) -> dict:
    """The Request fields every route takes from the sampling part of a request."""
    if body.n != 1:
        raise APIError(400, "n: only one choice per request is supported.", "n")
    return dict(temperature=body.temperature, top_p=body.top_p, stop=_stops(body.stop), seed=body.seed,
                presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                repetition_penalty=body.repetition_penalty)  # 1.0 unless asked: temperature 0 is the argmax


def _check(served: Served, request: Request, max_tokens: int, what: str = "messages") -> Request:
    """The engine's own refusal, and the context window, before anything is queued."""
    refused = served.refusal(request)
    if refused:
        raise APIError(400, refused, refused.split(":")[0])
    from jinja2 import TemplateError  # deferred: jinja2 comes with transformers; here it is only its error type

    try:
        prompt = served.prompt_tokens(request)
    except (TemplateError, ValueError, TypeError) as exc:  # the chat template refuses them (roles out of order)
        raise APIError(400, f"messages: the model's chat template refuses them ({exc}).", "messages") from None
    window = served.window()
    if prompt + max_tokens > window:
        raise APIError(400, f"This model's context is {window} tokens; the {what} take {prompt} and max_tokens "
                            f"asks for {max_tokens} more.", what, "context_length_exceeded")
    return request


# ---- chat completions ------------------------------------------------------------------------------------

def _tools(body: ChatRequest, served: Served) -> tuple[list[dict] | None, dict | None]:
    """The tools the template renders, and the JSON schema a required call is held to (None: free text)."""
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice: there are no tools to choose from.", "tool_choice")
        return None, None
    if not served.template_takes_tools():
        raise APIError(400, f"tools: the chat template of {served.id} does not render tools; this model cannot "
                            "be asked to call them.", "tools")
    if body.tool_choice == "none":
        return None, None
    tools = [t.model_dump(exclude_none=True) for t in body.tools]
    names = [t.function.name for t in body.tools]
    choice = body.tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or name not in names:
            raise APIError(400, f"tool_choice: names no tool of this request ({', '.join(names)}).", "tool_choice")
        names = [name]
    elif choice != "required":
        return tools, None
    calls = [{"type": "object", "properties": {"name": {"const": t.function.name},
                                               "arguments": t.function.parameters or {"type": "object"}},
              "required": ["name", "arguments"]} for t in body.tools if t.function.name in names]
    return tools, calls[0] if len(calls) == 1 else {"anyOf": calls}


def _chat_request(body: ChatRequest, models: dict[str, Served]) -> tuple[Served, Request, int, bool]:
    served = _model(body.model, models)
    refuse_unsupported(body, UNSUPPORTED_CHAT)
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs: needs logprobs set to true.", "top_logprobs")
    messages = []
    for i, m in enumerate(body.messages):
        message = {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content, i)}
        if m.tool_calls:
            message["tool_calls"] = [{**c, "function": {**c.get("function", {}), "arguments": _arguments(c)}}
                                     for c in m.tool_calls]
        if m.tool_call_id:
            message["tool_call_id"] = m.tool_call_id
        if m.name:
            message["name"] = m.name
        messages.append(message)
    if messages[-1]["role"] == "assistant":
        raise APIError(400, "messages: the last message is the assistant's; end with a user message.", "messages")
    tools, call_schema = _tools(body, served)
    constraint = call_schema
    if body.response_format and body.response_format.type != "text":
        if call_schema is not None:
            raise APIError(400, "response_format: a required tool call already fixes the answer's JSON; "
                                "leave one of them out.", "response_format")
        fmt = body.response_format
        if fmt.type == "json_schema" and (fmt.json_schema is None or fmt.json_schema.schema_ is None):
            raise APIError(400, "response_format.json_schema.schema: give the JSON schema to follow.",
                           "response_format")
        constraint = fmt.json_schema.schema_ if fmt.type == "json_schema" else {"type": "object"}
    try:
        constraint = json_constraint(constraint) if constraint is not None else None
    except ConstraintError as err:
        raise APIError(400, f"response_format: {err}", "response_format") from None
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    request = served.request(messages, max_tokens, logprobs=logprobs, constraint=constraint, tools=tools,
                             **_common(body))
    return served, _check(served, request, max_tokens), max_tokens, call_schema is not None


def _responses_chat(body: ResponsesRequest) -> ChatRequest:
    """A Responses API request as the chat request it asks for: `instructions` the system message, `input`
    (text, or messages whose content is text or input_text / output_text parts) the rest, `text.format` the
    response format."""
    refuse_unsupported(body, UNSUPPORTED_RESPONSES)
    messages = [{"role": "system", "content": body.instructions}] if body.instructions else []
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    for i, item in enumerate(items):
        if item.get("type", "message") != "message" or item.get("role") not in ("system", "developer", "user",
                                                                                 "assistant"):
            raise APIError(400, f"input[{i}]: only messages (a role and text) are taken here, not "
                                f"{item.get('type') or item.get('role')!r} items.", f"input[{i}]")
        content = item.get("content")
        if isinstance(content, list):
            if any(not isinstance(p, dict) or p.get("type") not in ("input_text", "output_text", "text")
                   for p in content):
                raise APIError(400, f"input[{i}].content: only text parts are taken here.", f"input[{i}].content")
            content = "".join(p.get("text", "") for p in content)
        messages.append({"role": item["role"], "content": content})
    fmt = (body.text.format if body.text else None) or {"type": "text"}
    kind = fmt.get("type")
    if kind == "json_schema":
        response_format = {"type": "json_schema", "json_schema": {"name": fmt.get("name") or "answer",
                                                                  "schema": fmt.get("schema"),
                                                                  "strict": fmt.get("strict")}}
    elif kind in ("json_object", "text"):
        response_format = {"type": kind}
    else:
        raise APIError(400, f"text.format.type: {kind!r} is not one of text, json_object, json_schema.",
                       "text.format")
    try:
        return ChatRequest(model=body.model, messages=messages, max_tokens=body.max_output_tokens,
                           temperature=body.temperature, top_p=body.top_p, response_format=response_format)
    except ValueError as exc:
        raise APIError(400, f"input: {str(exc).splitlines()[0]}", "input") from None


def _arguments(call: dict) -> dict:
    """A tool call's arguments as the chat template takes them (OpenAI sends them as a JSON string)."""
    args = (call.get("function") or {}).get("arguments", {})
    if isinstance(args, str):
        try:
            return json.loads(args or "{}")
        except json.JSONDecodeError:
            raise APIError(400, "messages: a tool call's arguments are not JSON.", "messages") from None
    return args


TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def tool_calls(text: str, names: list[str]) -> tuple[str | None, list[dict]]:
    """The calls in an answer: `<tool_call>{json}</tool_call>` blocks (Hermes, Qwen, SmolLM3 templates) or the
    whole answer as one JSON call; the text outside them (None when there is none)."""
    blocks = TOOL_CALL.findall(text)
    found = []
    for block in blocks or [text.strip()]:
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and call.get("name") in names:
            args = call.get("arguments", call.get("parameters", {}))
            found.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                          "function": {"name": call["name"], "arguments": json.dumps(args, ensure_ascii=False)}})
    if not found:
        return text, []
    rest = TOOL_CALL.sub("", text).strip() if blocks else ""
    return rest or None, found


def _chat_logprobs(served: Served, g: Generation) -> dict | None:
    if g.logprobs is None:
        return None

    def entry(token: int, logprob: float) -> dict:
        text = served.decode([token])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(i, v) for i, v in t.top]}
                        for t in g.logprobs], "refusal": None}


def _usage(g: Generation | list[Generation]) -> dict:
    gens = g if isinstance(g, list) else [g]
    prompt, answer = sum(x.prompt_tokens for x in gens), sum(x.answer_tokens for x in gens)
    return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}


def _final(items: Iterator[tuple[int, str | Generation]], rows: int) -> list[Generation]:
    finals: list = [None] * rows
    try:
        for row, item in items:
            if isinstance(item, Generation):
                finals[row] = item
    except ValueError as exc:  # what the engine refused on its thread (a template, an adapter)
        raise APIError(400, str(exc)) from None
    return finals


# ---- completions -------------------------------------------------------------------------------------------

def _completion_requests(body: CompletionRequest, served: Served) -> list[Request]:
    refuse_unsupported(body, UNSUPPORTED_COMPLETION)
    prompts = body.prompt
    if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
        prompts = [prompts]
    if not prompts:
        raise APIError(400, "prompt: give at least one prompt.", "prompt")
    requests = []
    for i, prompt in enumerate(prompts):
        ids = served.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise APIError(400, f"prompt[{i}]: empty; give at least one token.", "prompt")
        if body.max_tokens == 0 and not body.echo:
            raise APIError(400, "max_tokens: 0 asks for nothing unless echo is true.", "max_tokens")
        request = served.request(None, body.max_tokens, ids=ids, raw=True,
                                 suppress_special=False, logprobs=body.logprobs,
                                 echo_logprobs=body.echo and body.logprobs is not None, **_common(body))
        requests.append(_check(served, request, body.max_tokens, "prompt"))
    return requests


def _completion_logprobs(served: Served, request: Request, g: Generation, echo: bool, offset: int = 0) -> dict:
    entries = (g.prompt_logprobs or []) if echo else []
    entries = list(entries) + list(g.logprobs or [])
    tokens, logps, tops, offsets = [], [], [], []
    at = offset
    for e in entries:
        text = served.decode([e.token])
        tokens.append(text)
        logps.append(e.logprob)
        tops.append({served.decode([i]): v for i, v in e.top} if e.logprob is not None else None)
        offsets.append(at)
        at += len(text)
    return {"tokens": tokens, "token_logprobs": logps, "top_logprobs": tops, "text_offset": offsets}


# ---- the application ---------------------------------------------------------------------------------------

def create_app(models: dict[str, Served], api_key: str | None = None, embedder: Embedding | None = None):
    """The FastAPI application over `models` (and `embedder` for /v1/embeddings, when given)."""
    from fastapi import FastAPI, Request as HTTPRequest  # deferred: FastAPI is only for a server being built
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="studio serve", description="OpenAI-compatible chat completions, completions, embeddings")
    embed_worker = EmbedWorker(embedder) if embedder is not None else None

    @app.exception_handler(APIError)
    async def api_error(_, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        message = first.get("msg", "invalid")
        if first.get("type") == "extra_forbidden":
            message = "not a field this server takes; leave it out"
        return JSONResponse(APIError(400, f"{where}: {message}.", where).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def not_here(request: HTTPRequest, exc: StarletteHTTPException):  # an unknown route or method
        message = (f"{request.method} {request.url.path}: no such route here; the routes are /v1/models, "
                   "/v1/chat/completions, /v1/completions, /v1/responses and /v1/embeddings.") if exc.status_code == 404 else \
            f"{request.method} {request.url.path}: {exc.detail}."
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(APIError(exc.status_code, message, kind=kind).body(), status_code=exc.status_code)

    @app.middleware("http")
    async def check_key(request: HTTPRequest, call_next):
        if api_key:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                error = APIError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'.",
                                 None, "invalid_api_key", "authentication_error")
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    def card(s) -> dict:
        return {"id": s.id, "object": "model", "created": s.created, "owned_by": s.owned_by}

    listed = {**models, **({embedder.id: embedder} if embedder is not None else {})}

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [card(s) for s in listed.values()]}

    @app.get("/v1/models/{model_id:path}")
    def one_model(model_id: str):
        s = listed.get(model_id)
        if s is None:
            raise APIError(404, f"The model {model_id!r} does not exist here.", "model", "model_not_found")
        return card(s)

    def sse(data: dict) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def streamed(events: Iterator[str]):
        """Server-sent events ending in [DONE]; after the headers went out, an error is one more event."""
        def guarded() -> Iterator[str]:
            try:
                yield from events
            except Exception as exc:
                status, kind = (400, "invalid_request_error") if isinstance(exc, ValueError) else \
                    (500, "server_error")
                yield sse(APIError(status, str(exc), kind=kind).body())
            yield "data: [DONE]\n\n"

        return StreamingResponse(guarded(), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest):  # a plain def: FastAPI runs it on a worker thread
        served, request, _, call_required = _chat_request(body, models)
        names = [t["function"]["name"] for t in request.tools or []]
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def message_of(g: Generation) -> tuple[dict, str]:
            content, calls = tool_calls(g.text, names) if names else (g.text, [])
            if body.parallel_tool_calls is False:
                calls = calls[:1]  # one call at most, as asked
            if call_required and not calls:
                raise APIError(500, "the model's answer is not a call of the required tool.", kind="server_error")
            message = {"role": "assistant", "content": content, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            return message, "tool_calls" if calls else g.finish_reason

        if not body.stream:
            final = _final(served.answer_many([request]), 1)[0]
            message, finish = message_of(final)
            return {"id": cid, "object": "chat.completion", "created": created, "model": served.id,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                 "logprobs": _chat_logprobs(served, final)}],
                    "usage": _usage(final)}

        def chunk(delta: dict, finish=None, usage=None, logprobs=None) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served.id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]
                    if usage is None else []}
            if usage is not None:
                data["usage"] = usage
            return sse(data)

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            sent = ""
            for _, item in served.answer_many([request]):
                if names:  # a call is known only once the answer is whole: it goes out at the end
                    if isinstance(item, Generation):
                        message, finish = message_of(item)
                        delta = {"content": message["content"]} if message["content"] else {}
                        if message.get("tool_calls"):
                            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
                        yield chunk(delta, None, logprobs=_chat_logprobs(served, item))
                        yield chunk({}, finish)
                    continue
                final = isinstance(item, Generation)
                # a chat answer is stripped at both ends when whole: so is what goes out before
                text = item.text if final else held_back(item, request.stop, strip=True).lstrip()
                if text.startswith(sent) and len(text) > len(sent):
                    yield chunk({"content": text[len(sent):]})
                    sent = text
                if final:
                    yield chunk({}, item.finish_reason, logprobs=_chat_logprobs(served, item))
            if body.stream_options and body.stream_options.include_usage and isinstance(item, Generation):
                yield chunk({}, usage=_usage(item))

        return streamed(events())

    @app.post("/v1/completions")
    def completions(body: CompletionRequest):
        served = _model(body.model, models)
        requests = _completion_requests(body, served)
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prompts = [served_text(served, r) if body.echo else "" for r in requests]

        def choice(i: int, g: Generation) -> dict:
            logprobs = None
            if body.logprobs is not None:
                logprobs = _completion_logprobs(served, requests[i], g, body.echo)
            return {"text": prompts[i] + g.text, "index": i, "logprobs": logprobs, "finish_reason": g.finish_reason}

        if not body.stream:
            finals = _final(served.answer_many(requests), len(requests))
            return {"id": cid, "object": "text_completion", "created": created, "model": served.id,
                    "choices": [choice(i, g) for i, g in enumerate(finals)], "usage": _usage(finals)}

        def events() -> Iterator[str]:
            sent = list(prompts)
            for i, text in enumerate(prompts):
                if text:
                    yield sse({"id": cid, "object": "text_completion", "created": created, "model": served.id,
                               "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": None}]})
                sent[i] = ""
            finals: list = [None] * len(requests)
            for row, item in served.answer_many(requests):
                text = item.text if isinstance(item, Generation) else held_back(item, requests[row].stop)
                piece = text[len(sent[row]):] if text.startswith(sent[row]) else ""
                sent[row] = text if piece else sent[row]
                finish = item.finish_reason if isinstance(item, Generation) else None
                logprobs = None
                if isinstance(item, Generation):
                    finals[row] = item
                    if body.logprobs is not None:
                        logprobs = _completion_logprobs(served, requests[row], item, False)
                if piece or finish:
                    yield sse({"id": cid, "object": "text_completion", "created": created, "model": served.id,
                               "choices": [{"text": piece, "index": row, "logprobs": logprobs,
                                            "finish_reason": finish}]})
            if body.stream_options and body.stream_options.include_usage:
                yield sse({"id": cid, "object": "text_completion", "created": created, "model": served.id,
                           "choices": [], "usage": _usage([f for f in finals if f is not None])})

        return streamed(events())

    @app.post("/v1/responses")
    def responses(body: ResponsesRequest):
        served, request, max_tokens, _ = _chat_request(_responses_chat(body), models)
        rid, mid, created = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}", int(time.time())
        fmt = (body.text.format if body.text else None) or {"type": "text"}

        def response(status: str, text: str | None, g: Generation | None = None) -> dict:
            done = status == "completed"
            output = [] if text is None else [
                {"type": "message", "id": mid, "status": status, "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}]
            cut = g is not None and g.finish_reason == "length"
            return {"id": rid, "object": "response", "created_at": created, "status": "incomplete" if cut else status,
                    "incomplete_details": {"reason": "max_output_tokens"} if cut else None, "error": None,
                    "model": served.id, "instructions": body.instructions, "max_output_tokens": max_tokens,
                    "output": output, "parallel_tool_calls": False, "temperature": body.temperature,
                    "top_p": body.top_p, "tool_choice": "none", "tools": [], "text": {"format": fmt},
                    "metadata": body.metadata or {}, "store": False, "truncation": "disabled",
                    "usage": {"input_tokens": g.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                              "output_tokens": g.answer_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": g.prompt_tokens + g.answer_tokens} if done and g else None}

        if not body.stream:
            final = _final(served.answer_many([request]), 1)[0]
            return response("completed", final.text, final)

        def events() -> Iterator[str]:
            n = 0

            def event(kind: str, **data) -> str:
                nonlocal n
                n += 1
                return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n - 1, **data})}\n\n"

            yield event("response.created", response=response("in_progress", None))
            yield event("response.in_progress", response=response("in_progress", None))
            item = {"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []}
            yield event("response.output_item.added", output_index=0, item=item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield event("response.content_part.added", item_id=mid, output_index=0, content_index=0, part=part)
            sent, final = "", None
            try:
                answered = list_or_stream(served.answer_many([request]))
            except Exception as exc:  # after the headers: the error is one more event
                yield event("error", message=str(exc), code=None, param=None)
                return
            for _, got in answered:
                if isinstance(got, Generation):
                    final = got
                text = got.text if final else held_back(got, request.stop, strip=True).lstrip()
                if text.startswith(sent) and len(text) > len(sent):
                    yield event("response.output_text.delta", item_id=mid, output_index=0, content_index=0,
                                delta=text[len(sent):], logprobs=[])
                    sent = text
            text = final.text if final else sent
            yield event("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text,
                        logprobs=[])
            yield event("response.content_part.done", item_id=mid, output_index=0, content_index=0,
                        part={**part, "text": text})
            done = response("completed", text, final)
            yield event("response.output_item.done", output_index=0, item=done["output"][0])
            yield event("response.completed" if done["status"] == "completed" else "response.incomplete",
                        response=done)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    def embeddings(body: EmbeddingRequest):
        if embedder is None or body.model != embedder.id:
            names = f"; GET /v1/models lists it as {embedder.id!r}" if embedder is not None else \
                " (this server was started without one)"
            raise APIError(404, f"The embedding model {body.model!r} does not exist here{names}.", "model",
                           "model_not_found")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise APIError(400, "input: give at least one text.", "input")
        if not all(isinstance(t, str) for t in texts):
            raise APIError(400, "input: token arrays are not supported here; send the text.", "input")
        if any(not t for t in texts):
            raise APIError(400, "input: an empty text has no embedding.", "input")
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise APIError(400, f"dimensions: {embedder.id} gives {embedder.dimensions}; it cannot shorten its "
                                "vectors.", "dimensions")
        limit = getattr(embedder, "max_tokens", None)
        if limit:
            for i, text in enumerate(texts):
                n = embedder.count_tokens([text])
                if n > limit:
                    raise APIError(400, f"input[{i}]: {n} tokens, over the {limit} that {embedder.id} reads; split "
                                        "the text (it would be cut, and its end not embedded).", "input",
                                   "context_length_exceeded")
        vectors = embed_worker.embed(texts)

        def encoded(v: list[float]):
            if body.encoding_format == "base64":
                return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
            return [float(x) for x in v]

        tokens = embedder.count_tokens(texts)
        return {"object": "list", "model": embedder.id,
                "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app


def list_or_stream(items):
    """`items` as they come (the first is awaited here, so an error before any answer is raised at once)."""
    items = iter(items)
    try:
        first = next(items)
    except StopIteration:
        return iter(())
    return itertools.chain([first], items)


def served_text(served: Served, request: Request) -> str:
    """A completion prompt as text (for echo), from its tokens."""
    return served.decode(list(request.ids or []))


def exposed(host: str) -> bool:
    """Whether `host` listens beyond this machine (anything but a loopback address or localhost)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve to any interface


def start(models: dict[str, Served], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          embedder: Embedding | None = None):
    """Start the HTTP server on a thread; returns the uvicorn server (`.should_exit = True` stops it).
    The caller's thread should then run the generations (`engine.infer.batching.serve_forever`)."""
    import uvicorn  # deferred: as FastAPI in create_app

    if exposed(host) and not api_key:
        print(f"warning: serving on {host}:{port} without an API key: anyone who can reach this machine on that "
              "port can use these models and read what they answer; pass --api-key (or set STUDIO_API_KEY), or "
              "listen on 127.0.0.1.", file=sys.stderr, flush=True)
    app = create_app(models, api_key, embedder)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="studio serve http")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServeError(f"The server could not listen on {host}:{port} (is the port taken?).")
        time.sleep(0.05)
    return server
