"""An OpenAI-compatible HTTP endpoint for the base model and finished runs: `studio serve`.

    studio serve [RUN_ID ...] [--model BASE] [--port 8000] [--host 127.0.0.1] [--api-key KEY]

`GET /v1/models` lists the base model and each run by its run id; `POST /v1/chat/completions` answers
plain or streamed (`"stream": true`: server-sent events ending in `data: [DONE]`) with `temperature`,
`top_p`, `max_tokens`, `stop` and the usage counts. The request's `model` picks the weights: the base
id, or a run id. Every adapter run of one base is loaded onto one copy of its weights (peft's named
adapters; a request switches to its own); a full fine-tune is its own model. Requests go through the
studio's one generation executor (engine/infer/batching.py), so concurrent requests for the same model and
sampling settings are answered in one batch, as the Compare tab's are.

Errors come back in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the status
OpenAI uses: 400 a malformed request (the field named), 401 a missing or wrong key, 404 an unknown
model. With `--api-key` (or `STUDIO_API_KEY`) every request must carry `Authorization: Bearer KEY`.
The server listens on 127.0.0.1 unless `--host` says otherwise. FastAPI and uvicorn (both come with
gradio) carry the HTTP; the generations run on the main thread, as in the app.

The routes know a model id only through the `Served` contract (engine/infer/served.py): `load_models`
here gives the studio's own engine; on a GPU with vLLM installed, `studio serve --engine vllm` gives
engine/infer/serve_vllm.py's instead, with the runs' LoRA adapters. `start` serves either.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.infer.batching import drain
from engine.infer.chat import ChatModel, Generation, Request
from engine.models import DEFAULT_MODEL
from engine.infer.served import ServeError, Served
from engine.train.runs import Run, runs_root

DEFAULT_MAX_TOKENS = 256


@dataclass
class ChatServed:
    """A model id answered by the studio's own executor: which ChatModel, with which adapter on (or none)."""
    id: str
    chat: ChatModel
    adapter: str | None = None  # the adapter's name in chat, None for the base weights
    created: int = 0
    owned_by: str = "studio"

    def request(self, messages, max_tokens, temperature, top_p, stop) -> Request:
        return Request(messages, self.adapter is not None, max_tokens, temperature, top_p, tuple(stop),
                       adapter=self.adapter or "default")

    def prompt_tokens(self, request: Request) -> int:
        return self.chat.prompt_tokens(request)

    def window(self) -> int:
        return self.chat.window()

    def answer(self, request: Request) -> Iterator[str | Generation]:
        """The reply's text as it grows, then its Generation (through the studio's executor)."""
        out: queue.Queue = queue.Queue()
        job = self.chat.submit([request], out)
        try:
            for _, _, item in drain(out, 1):
                yield item
        finally:
            job.cancelled.set()  # a client that went away mid-stream: its row leaves the batch


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


# ---- the request's shape ---------------------------------------------------------------------------------

class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant"]
    content: str | list[dict] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI's other options (logprobs, seed, ...) are accepted, unused
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


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


def _prepare(body: ChatRequest, models: dict[str, Served]) -> tuple[Served, Request]:
    served = models.get(body.model)
    if served is None:
        raise APIError(404, f"The model {body.model!r} does not exist here; GET /v1/models lists "
                            f"{', '.join(sorted(models))}.", "model", "model_not_found")
    if body.n != 1:
        raise APIError(400, "n: only one choice per request is supported.", "n")
    messages = [{"role": m.role, "content": _text(m.content, i)} for i, m in enumerate(body.messages)]
    if messages[-1]["role"] == "assistant":
        raise APIError(400, "messages: the last message is the assistant's; end with a user message.", "messages")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise APIError(400, "stop: at most 4 sequences.", "stop")
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    request = served.request(messages, max_tokens, body.temperature, body.top_p, stop)
    from jinja2 import TemplateError

    try:
        prompt = served.prompt_tokens(request)
    except (TemplateError, ValueError, TypeError) as exc:  # the chat template refuses them (roles out of order)
        raise APIError(400, f"messages: the model's chat template refuses them ({exc}).", "messages") from None
    window = served.window()
    if prompt + max_tokens > window:
        raise APIError(400, f"This model's context is {window} tokens; the messages take {prompt} and max_tokens "
                            f"asks for {max_tokens} more.", "messages", "context_length_exceeded")
    return served, request


def _usage(g: Generation) -> dict:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.answer_tokens,
            "total_tokens": g.prompt_tokens + g.answer_tokens}


def create_app(models: dict[str, Served], api_key: str | None = None):
    """The FastAPI application over `models`."""
    from fastapi import FastAPI, Request as HTTPRequest
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="studio serve", description="OpenAI-compatible chat completions")

    @app.exception_handler(APIError)
    async def api_error(_, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(APIError(400, f"{where}: {first.get('msg', 'invalid')}.", where).body(), status_code=400)

    @app.middleware("http")
    async def check_key(request: HTTPRequest, call_next):
        if api_key:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                error = APIError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'.",
                                 None, "invalid_api_key", "authentication_error")
                return JSONResponse(error.body(), status_code=401)
        return await call_next(request)

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [{"id": s.id, "object": "model", "created": s.created,
                                            "owned_by": s.owned_by} for s in models.values()]}

    @app.get("/v1/models/{model_id:path}")
    def one_model(model_id: str):
        s = models.get(model_id)
        if s is None:
            raise APIError(404, f"The model {model_id!r} does not exist here.", "model", "model_not_found")
        return {"id": s.id, "object": "model", "created": s.created, "owned_by": s.owned_by}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest):  # a plain def: FastAPI runs it on a worker thread
        served, request = _prepare(body, models)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.stream:
            try:
                final = next(item for item in served.answer(request) if isinstance(item, Generation))
            except ValueError as exc:
                raise APIError(400, str(exc)) from None
            return {"id": cid, "object": "chat.completion", "created": created, "model": served.id,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": final.text},
                                 "finish_reason": final.finish_reason}],
                    "usage": _usage(final)}

        def chunk(delta: dict, finish=None, usage=None) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": served.id,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []}
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            sent = ""
            try:
                for item in served.answer(request):
                    text = item.text if isinstance(item, Generation) else item
                    if text.startswith(sent) and len(text) > len(sent):
                        yield chunk({"content": text[len(sent):]})
                        sent = text
                    if isinstance(item, Generation):
                        yield chunk({}, item.finish_reason)
                        if body.stream_options and body.stream_options.include_usage:
                            yield chunk({}, usage=_usage(item))
            except Exception as exc:  # after the headers went out, an error can only be one more event
                yield f"data: {json.dumps(APIError(500, str(exc), kind='server_error').body())}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def start(models: dict[str, Served], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None):
    """Start the HTTP server on a thread; returns the uvicorn server (`.should_exit = True` stops it).
    The caller's thread should then run the generations (`engine.infer.batching.serve_forever`)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(models, api_key), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="studio serve http")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServeError(f"The server could not listen on {host}:{port} (is the port taken?).")
        time.sleep(0.05)
    return server
