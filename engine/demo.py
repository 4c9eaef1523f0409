"""Public-demo limits: set STUDIO_DEMO=1 (for example on a free public Space) and the studio caps
training steps, keeps to the default model and takes smaller uploads, and the page says so.

    STUDIO_DEMO=1 studio
"""

from __future__ import annotations

import dataclasses
import os

from engine.config import ConfigError, RunConfig
from engine.models import DEFAULT_MODEL

MAX_STEPS = 60
MAX_UPLOAD_MB = 5.0
NOTICE = (f"**Public demo:** training stops after {MAX_STEPS} steps, uses the default model only, and uploads "
          f"are limited to {MAX_UPLOAD_MB:g} MB. Duplicate this Space (or run it on your own machine) to train "
          "for real.")


def on() -> bool:
    return os.environ.get("STUDIO_DEMO", "").strip().lower() in ("1", "true", "yes", "on")


def limit(cfg: RunConfig) -> RunConfig:
    """The config as the demo runs it (a copy): steps capped; any other model, or ZeRO, refused with a sentence."""
    if not on():
        return cfg
    if cfg.model != DEFAULT_MODEL:
        raise ConfigError(f"model: the public demo trains {DEFAULT_MODEL} only; duplicate this Space to train "
                          "another model.")
    if cfg.distributed():
        raise ConfigError("zero_stage / num_processes: the public demo trains in one process; duplicate this Space "
                          "to use several.")
    return dataclasses.replace(cfg, max_steps=MAX_STEPS if cfg.max_steps <= 0 else min(cfg.max_steps, MAX_STEPS))
