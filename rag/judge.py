"""A judge of answers: any OpenAI-compatible chat endpoint (`studio serve`, Ollama, vLLM, a hosted API, Hugging
Face's inference router) asked whether an answer is correct, with the question and the reference in its prompt,
its reply held to a JSON object by the request's `response_format` (a JSON schema, strict) and read as 1.0 or 0.0.

The prompt follows the reference-based judges (RAGAS's answer correctness, Kiln's and Oumi's judges): the
reference is the truth, an answer is correct when it states the reference's fact, extra words do not matter,
a contradiction or a missing fact does. A reply that is not the JSON asked for is retried once, then counted
as not correct and said in the judge's `failures`.

    judge = Judge("http://127.0.0.1:8000/v1", "my-judge-model")
    judge("How heavy is the T2?", "6.4 kg", "It weighs 6.4 kilograms.")   # -> 1.0

    studio eval --judge URL --judge-model NAME ; studio decide DOCS... --judge URL --judge-model NAME
No gradio, no engine: plain HTTP from the standard library. The API key comes from `api_key` or JUDGE_API_KEY.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from rag.errors import RagError

PROMPT = """You grade an answer against a reference answer that is known to be correct.

Question: {question}
Reference answer: {reference}
Answer to grade: {answer}

The answer is correct when it states the fact of the reference answer (numbers with their units, names,
what happened), even in other words or with more words around it. It is not correct when the fact is missing,
different, hedged between several options, or contradicted. Reply with JSON: {{"correct": true or false,
"reason": "one short sentence"}}."""

# the reason is bounded, so a verbose judge still closes its JSON within max_tokens
SCHEMA = {"type": "object", "properties": {"correct": {"type": "boolean"},
                                           "reason": {"type": "string", "maxLength": 120}},
          "required": ["correct", "reason"], "additionalProperties": False}


class Judge:
    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 120.0):
        if not url.startswith(("http://", "https://")):
            raise RagError(f"--judge {url!r}: give the endpoint's address, e.g. http://127.0.0.1:8000/v1.")
        if not model:
            raise RagError("--judge needs --judge-model: the model name the endpoint serves.")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.timeout = model, timeout
        self.key = api_key or os.environ.get("JUDGE_API_KEY", "")
        self.failures = 0
        self.name = f"{model} at {url}"

    def _ask(self, question: str, reference: str, answer: str) -> dict:
        body = {"model": self.model, "temperature": 0, "max_tokens": 200,
                "messages": [{"role": "user", "content": PROMPT.format(question=question, reference=reference,
                                                                       answer=answer or "(no answer)")}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {self.key}"} if self.key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RagError(f"The judge at {self.url} answered {exc.code}: "
                           f"{exc.read().decode(errors='replace')[:200]}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RagError(f"The judge at {self.url} cannot be reached ({getattr(exc, 'reason', exc)}).") from None
        return json.loads(reply["choices"][0]["message"]["content"])

    def __call__(self, question: str, reference: str, answer: str) -> float:
        for _ in range(2):
            try:
                verdict = self._ask(question, reference, answer)
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                continue
            if isinstance(verdict, dict) and isinstance(verdict.get("correct"), bool):
                return float(verdict["correct"])
        self.failures += 1
        return 0.0
