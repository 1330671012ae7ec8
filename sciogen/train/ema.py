"""Exponential moving average (EMA) of a model's weights, used for sampling.

After each optimizer step, for every floating-point parameter ``p`` and its average ``m``:

    m <- d m + (1 - d) p,        d = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates so far (the warm-up keeps early averages from being
dominated by the random initialisation). Buffers (e.g. normalisation statistics) are
copied. The averaged weights live in :attr:`EMA.module`, a frozen copy of the model in
eval mode, ready to sample from.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """An EMA copy of ``model``.

    Args:
        model: the network being trained (not a DDP wrapper: pass ``ddp.module``).
        decay: the asymptotic decay ``d`` in (0, 1), e.g. 0.999.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` instead of ``decay``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averages one step towards ``model``'s current weights."""
        d = self.current_decay()
        for avg, new in zip(self.module.parameters(), model.parameters()):
            if avg.dtype.is_floating_point:
                avg.lerp_(new.detach(), 1.0 - d)
            else:
                avg.copy_(new)
        for avg, new in zip(self.module.buffers(), model.buffers()):
            avg.copy_(new)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights and the update counter (tensors and plain values)."""
        return {"weights": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.num_updates = int(state["num_updates"])
