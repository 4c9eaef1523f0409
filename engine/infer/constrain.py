"""JSON mode: an answer held to JSON while it is decoded, token by token.

`json_constraint(schema)` makes a constraint for a request (`Request.constraint`): any JSON object
(OpenAI's `response_format: {"type": "json_object"}`) or a JSON schema (`json_schema`). At each step the
decoding loop (engine/infer/chat.py's `Decoding`) asks which tokens may come next and masks the rest,
so the answer parses whatever the model would have said.

The grammar engine is lm-format-enforcer's (a well-kept library, one of vLLM's guided-decoding back
ends): pure Python, so it installs on any CPU or GPU machine without a compiler, CUDA or triton
(xgrammar, the fastest, pulls triton on Linux; outlines builds a regular expression index per schema
and cannot express unbounded nesting for a plain `json_object`). Its cost is a prefix tree over the
vocabulary built once per tokenizer (about a second for a 49k vocabulary) and a few milliseconds a step.

    python -m engine.infer.constrain MODEL '{"type": "object"}'    # the tokens allowed at the start
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass

from engine.errors import StudioError

_TOKENIZERS: dict[tuple, object] = {}  # (id(tokenizer), end tokens) -> lm-format-enforcer's data, built once
_LOCK = threading.Lock()


class ConstraintError(StudioError, ValueError):
    """A schema the grammar engine cannot follow, in one sentence."""


def _regular_tokens(tokenizer) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) of every token that is not special and decodes to whole characters: the
    text as it reads after another token (so a leading space a tokenizer drops at the start is kept). A
    token that is part of a character's bytes is left out: in JSON mode a character is written with a
    token that holds all of it."""
    special = set(tokenizer.all_special_ids)
    anchor = tokenizer.encode("0", add_special_tokens=False)[-1]
    lead = len(tokenizer.decode([anchor]))
    out = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        after = tokenizer.decode([anchor, token])[lead:]
        if "\ufffd" in after:  # a piece of a character (byte-level vocabularies): no text to check it by
            continue
        out.append((token, after, len(after) > len(tokenizer.decode([token]))))
    return out


def tokenizer_data(tokenizer, ends: list[int]):
    """lm-format-enforcer's prefix tree over this tokenizer's vocabulary, built once per tokenizer.
    (Its own transformers integration imports names transformers 5 no longer has, so the tree is made
    here through the library's documented constructor.)"""
    # deferred: lm-format-enforcer imports torch, which the CLI and the server's start-up need not wait for
    from lmformatenforcer import TokenEnforcerTokenizerData
    from lmformatenforcer.tokenizerprefixtree import JsonFreetextTokenCache

    with _LOCK:
        key = (id(tokenizer), tuple(sorted(ends)))
        if key not in _TOKENIZERS:
            tokens = _regular_tokens(tokenizer)
            data = TokenEnforcerTokenizerData(tokens, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"),
                                              sorted(ends), False, len(tokenizer))
            # Inside a JSON string the library lets through any token without a quote or a newline, a tab or
            # another control character too, which strict JSON (Python's json, every client) refuses in a
            # string: the tokens a string may take are rebuilt from the printable ones only.
            free = JsonFreetextTokenCache(False, len(tokenizer))
            for token, text, _ in tokens:
                if text.isprintable():
                    free.add_token(text, token)
            free.freeze()
            data.tokenizer_tree.json_freetext_tokens = free
            _TOKENIZERS[key] = data
        return _TOKENIZERS[key]


class Enforcer:
    """One answer's grammar state: which tokens may follow the tokens so far (prompt and answer)."""

    def __init__(self, tokenizer, ends: list[int], schema: dict):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer  # deferred: as tokenizer_data

        self._enforcer = TokenEnforcer(tokenizer_data(tokenizer, ends), JsonSchemaParser(schema))

    def allowed(self, ids: list[int]) -> list[int]:
        return list(self._enforcer.get_allowed_tokens(ids).allowed_tokens)


@dataclass(frozen=True)
class JsonConstraint:
    schema_text: str  # the JSON schema, as canonical text (a frozen, comparable value)

    @property
    def schema(self) -> dict:
        return json.loads(self.schema_text)

    def enforcer(self, tokenizer, ends: list[int]) -> Enforcer:
        """The grammar for one answer; `ends` are the tokens that end it (allowed once the JSON is whole)."""
        return Enforcer(tokenizer, ends, self.schema)


def json_constraint(schema: dict | None = None) -> JsonConstraint:
    """A constraint to `schema` (a JSON schema), or to any JSON object when None. A schema the engine
    cannot read is refused here, before anything is decoded."""
    schema = {"type": "object"} if schema is None else schema
    if not isinstance(schema, dict):
        raise ConstraintError("the JSON schema must be an object.")
    try:
        from lmformatenforcer import JsonSchemaParser  # deferred: as tokenizer_data

        JsonSchemaParser(schema)
    except Exception as exc:  # the library's own errors name what it could not read
        raise ConstraintError(f"the JSON schema cannot be followed here ({str(exc).splitlines()[0][:200]}).") from None
    return JsonConstraint(json.dumps(schema, sort_keys=True))


if __name__ == "__main__":
    from engine.models import load_tokenizer

    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tok = load_tokenizer(sys.argv[1])
    start = tok("Answer in JSON:")["input_ids"]
    allowed = json_constraint(json.loads(sys.argv[2])).enforcer(tok, [tok.eos_token_id]).allowed(start)
    print(f"{len(allowed)} tokens may start the answer, e.g. {[tok.decode([t]) for t in allowed[:10]]}")
