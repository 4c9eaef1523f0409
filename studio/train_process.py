"""The training process the studio starts for a run: engine/train/trainer.py's main with the studio's executor
sampling GRPO's rollouts (engine/infer/rollouts.py), where it samples the same distribution faster.

    python -m studio.train_process runs/<id>/config.yaml
"""

from __future__ import annotations

import sys

from engine.infer.rollouts import executor_sampler
from engine.train import trainer


def main(argv: list[str] | None = None) -> int:
    return trainer.main(argv, sampler=executor_sampler)


if __name__ == "__main__":
    sys.exit(main())
