"""AdamW with a warm-up then decay learning-rate schedule.

The learning rate at step ``s`` (after ``s`` optimizer steps) is ``lr * f(s)`` with

    f(s) = (s + 1) / W                                 for s < W (linear warm-up)
    f(s) = r + (1 - r) g(u),  u = (s - W) / (S - W)     afterwards

where ``W = warmup_steps``, ``S = steps``, ``r = min_lr_ratio`` and ``g`` is
``(1 + cos(pi u)) / 2`` (cosine), ``1 - u`` (linear) or 1 (constant).
Weight decay applies to matrices and higher-rank tensors only, not to biases and norms.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sciogen.config import check_choice

from .config import TrainConfig

__all__ = ["lr_factor", "build_optimizer", "build_scheduler"]

DECAYS = ("cosine", "linear", "constant")


def lr_factor(step: int, *, steps: int, warmup_steps: int = 0, decay: str = "cosine", min_lr_ratio: float = 0.0) -> float:
    """The multiplier f(step) of the base learning rate (see the module docstring)."""
    check_choice("train.decay", decay, DECAYS)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(steps - warmup_steps, 1)
    u = min(max((step - warmup_steps) / span, 0.0), 1.0)
    shape = {"cosine": 0.5 * (1.0 + math.cos(math.pi * u)), "linear": 1.0 - u, "constant": 1.0}[decay]
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, no weight decay on 0-/1-D tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor` for ``config``.

    The factor is a plain function of the step, so a resumed run follows the schedule of
    its current config (e.g. more steps), while the step count comes from the checkpoint.
    """

    def factor(step: int) -> float:
        return lr_factor(
            step, steps=config.steps, warmup_steps=config.warmup_steps,
            decay=config.decay, min_lr_ratio=config.min_lr_ratio,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
