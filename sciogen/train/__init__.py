"""The training engine shared by every domain: trainer, EMA, checkpoints, configs, DDP.

- :class:`Trainer` (``trainer.py``): AdamW, warm-up/decay, clipping, accumulation, EMA,
  mixed precision, DDP under torchrun, progress bar, CSV/TensorBoard metrics, validation,
  atomic checkpoints, SIGINT/SIGTERM checkpoints and exact resume.
- :class:`Generator` (``generator.py``): the base class with fit / sample / evaluate /
  save / load that every domain generator derives from.
- ``config.py``: typed config dataclasses that round-trip through YAML.
- ``checkpoint.py``: plain, atomically written checkpoints that load with
  ``torch.load(weights_only=True)``.
- ``distributed.py``: process group, device and backend from the environment.

Names are imported lazily, so ``sciogen.train.config`` can be read without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Trainer": "trainer", "TrainingInterrupted": "trainer",
    "Generator": "generator",
    "EMA": "ema",
    "TrainConfig": "config", "DiffusionConfig": "config", "SamplingConfig": "config", "RunConfig": "config",
    "ConfigError": "config", "from_dict": "config", "to_dict": "config", "apply_overrides": "config",
    "save_config": "config", "load_yaml": "config",
    "CheckpointError": "checkpoint", "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "export_checkpoint": "checkpoint", "latest_checkpoint": "checkpoint",
    "ShardedBatchSampler": "batches",
    "seed_everything": "seeding", "derive_seed": "seeding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sciogen.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
