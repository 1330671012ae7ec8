"""The toy domain's denoiser: a residual MLP conditioned on diffusion time.

    h_0     = W_in x + e(t)
    h_{l+1} = h_l + W_2 SiLU(W_1 LayerNorm(h_l) + U_l e(t))
    out     = W_out SiLU(LayerNorm(h_L))

with ``e(t)`` the :class:`sciogen.nn.TimeEmbedding` of t in [0, 1]. The output layer
starts at zero, so the untrained network predicts 0 (the mean of eps and of
standardised x0).
"""

from __future__ import annotations

import torch
from torch import nn

from sciogen.nn import TimeEmbedding

__all__ = ["MLPDenoiser"]


class _Block(nn.Module):
    def __init__(self, hidden: int, time_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.inner = nn.Linear(hidden, hidden)
        self.time = nn.Linear(time_dim, hidden)
        self.outer = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.outer(nn.functional.silu(self.inner(self.norm(h)) + self.time(emb)))


class MLPDenoiser(nn.Module):
    """``model(x_t, t) -> prediction`` for vectors.

    Args:
        dim: data dimension D.
        hidden: width of the residual stream.
        depth: number of residual blocks.
        time_dim: width of the time embedding.

    Shapes:
        x_t (B, D), t (B,) in [0, 1] -> (B, D).
    """

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 64):
        super().__init__()
        self.time = TimeEmbedding(time_dim)
        self.inp = nn.Linear(dim, hidden)
        self.time_in = nn.Linear(time_dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, time_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if x_t.ndim != 2 or x_t.shape[1] != self.inp.in_features:
            raise ValueError(f"expected x_t of shape (B, {self.inp.in_features}), got {tuple(x_t.shape)}")
        emb = self.time(t.expand(x_t.shape[0]))
        h = self.inp(x_t) + self.time_in(emb)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.norm(h)))
