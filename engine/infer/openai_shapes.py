"""The requests of the OpenAI-compatible endpoint (engine/infer/serve.py), as pydantic models: every field
OpenAI defines is declared, so a field it does not define is named in a 400 (`Strict`), and the fields
OpenAI defines that this server does not honour are refused by name (`UNSUPPORTED_*`, `refuse_unsupported`).
Errors are `APIError`s, which serve.py returns in OpenAI's error shape.

    Imported by engine/infer/serve.py; nothing to run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


# ---- the requests' shapes ----------------------------------------------------------------------------------

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field OpenAI does not define is named in a 400


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    name: str | None = None
    tool_calls: list[dict] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # the call a tool message answers
    refusal: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # only changes padding OpenAI adds to chunks: nothing here


class JsonSchemaFormat(Strict):
    name: str
    schema_: dict | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDef(Strict):
    name: str
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionDef


# OpenAI's fields this server does not honour: a request that sets one gets a 400 naming it. `None` (and the
# values listed, which ask for nothing beyond what is done anyway) are taken.
UNSUPPORTED_CHAT = {"audio": (None,), "function_call": (None,), "functions": (None,), "logit_bias": (None, {}),
                    "modalities": (None, ["text"]), "prediction": (None,), "reasoning_effort": (None,),
                    "verbosity": (None,), "web_search_options": (None,), "store": (None, False),
                    "service_tier": (None, "auto", "default"), "moderation": (None,)}
UNSUPPORTED_COMPLETION = {"logit_bias": (None, {}), "suffix": (None, ""), "best_of": (None, 1)}


class Sampling(Strict):
    model: str
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    repetition_penalty: float = Field(default=1.0, gt=0, le=2)  # vLLM's extra: none unless asked
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Any = None
    metadata: dict[str, str] | None = None
    logit_bias: dict[str, float] | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    parallel_tool_calls: bool | None = None
    audio: Any = None
    function_call: Any = None
    functions: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None
    store: bool | None = None
    service_tier: str | None = None
    moderation: Any = None


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int = Field(default=COMPLETION_MAX_TOKENS, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(Strict):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class ResponseText(Strict):
    format: dict | None = None  # {"type": "text" | "json_object" | "json_schema", "name", "schema", "strict"}
    verbosity: str | None = None


class ResponsesRequest(Strict):
    """OpenAI's Responses API (`POST /v1/responses`): text or messages in, one message out."""
    model: str
    input: str | list[dict]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stream: bool = False
    text: ResponseText | None = None
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    tools: list[dict] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    reasoning: dict | None = None
    include: list[str] | None = None
    truncation: str | None = None
    background: bool | None = None
    service_tier: str | None = None
    prompt: dict | None = None
    prompt_cache_key: str | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None
    stream_options: dict | None = None


UNSUPPORTED_RESPONSES = {"tools": (None, []), "tool_choice": (None, "none", "auto"), "previous_response_id": (None,),
                         "conversation": (None,), "reasoning": (None,), "include": (None, []),
                         "background": (None, False), "store": (None, False), "prompt": (None,),
                         "max_tool_calls": (None,), "top_logprobs": (None, 0), "truncation": (None, "disabled"),
                         "service_tier": (None, "auto", "default")}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def refuse_unsupported(body: BaseModel, table: dict) -> None:
    for name, taken in table.items():
        value = getattr(body, name)
        if value not in taken:
            raise APIError(400, f"{name}: not supported by this server; leave it out.", name, "unsupported_parameter")
