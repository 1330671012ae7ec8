"""Diffusion-step annealing: fewer solver steps for later positions (DiSA, Zhao et al. 2025).

Later tokens of an autoregressive sequence are conditioned on more context, so their
conditional distributions are narrower and need fewer solver steps. DiSA lowers the
number of diffusion steps from ``upper`` at the first generated position to ``lower`` at
the last one (MAR: 50 -> 5, "linear").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sciogen.config import to_dict

__all__ = ["StepAnnealing", "ANNEALING_KINDS", "resolve_steps"]

ANNEALING_KINDS = ("linear", "cosine", "constant")


@dataclass(frozen=True)
class StepAnnealing:
    """Number of solver steps as a function of generation progress.

    With progress ``p = index / (count - 1)`` in [0, 1]:

    - ``"linear"``:   steps = upper + (lower - upper) p
    - ``"cosine"``:   steps = lower + (upper - lower) (1 + cos(pi p)) / 2
    - ``"constant"``: steps = upper

    rounded to the nearest integer (at least 1).
    """

    upper: int = 50
    lower: int = 5
    kind: Literal["linear", "cosine", "constant"] = "linear"

    def __post_init__(self):
        if self.kind not in ANNEALING_KINDS:
            raise ValueError(f"unknown annealing kind {self.kind!r}; allowed: {', '.join(ANNEALING_KINDS)}")
        if not 1 <= self.lower <= self.upper:
            raise ValueError(f"need 1 <= lower <= upper, got lower={self.lower}, upper={self.upper}")

    def steps(self, index: int, count: int) -> int:
        """Solver steps for generated position ``index`` of ``count`` (0-based)."""
        p = index / (count - 1) if count > 1 else 0.0
        p = min(max(p, 0.0), 1.0)
        if self.kind == "constant":
            value = self.upper
        elif self.kind == "linear":
            value = self.upper + (self.lower - self.upper) * p
        else:
            value = self.lower + (self.upper - self.lower) * 0.5 * (1.0 + math.cos(math.pi * p))
        return max(1, int(round(value)))

    def to_dict(self) -> dict:
        return to_dict(self)


def resolve_steps(steps: int | StepAnnealing, index: int, count: int) -> int:
    """``steps`` itself if it is an int, else the annealed number for this position."""
    if isinstance(steps, StepAnnealing):
        return steps.steps(index, count)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return steps
