"""Public-demo limits: set STUDIO_DEMO=1 (for example on a free public Space) and the studio caps
training steps, keeps to the default model and takes smaller uploads, and the page says so.
Shared by every stage: uploads read the size cap here, and engine/train/preflight.py's `demo_limit`
applies the training caps to a config.

    STUDIO_DEMO=1 studio
"""

from __future__ import annotations

import os

MAX_STEPS = 60
MAX_UPLOAD_MB = 5.0
NOTICE = (f"**Public demo:** training stops after {MAX_STEPS} steps, uses the default model only, and uploads "
          f"are limited to {MAX_UPLOAD_MB:g} MB. Duplicate this Space (or run it on your own machine) to train "
          "for real.")


def on() -> bool:
    return os.environ.get("STUDIO_DEMO", "").strip().lower() in ("1", "true", "yes", "on")
