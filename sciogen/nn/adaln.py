"""Adaptive layer norm (AdaLN-Zero, Peebles & Xie 2023) and the small AdaLN-MLP denoiser.

AdaLN replaces a layer norm's learned affine parameters by ones predicted from a
conditioning vector ``c``:

    h   = LayerNorm(x) * (1 + scale(c)) + shift(c)
    out = x + gate(c) * f(h)

with ``(shift, scale, gate) = Linear(SiLU(c))`` initialised to zero, so every residual
block starts as the identity. :class:`AdaLNMLP` stacks such blocks into the per-token
diffusion head of MAR (Li et al. 2024) / UniGenX: it denoises a small vector conditioned
on a hidden state and the diffusion time, and is called as ``model(x_t, t, cond=h)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .embeddings import sinusoidal_embedding

__all__ = ["modulate", "AdaLNModulation", "AdaLNResBlock", "AdaLNFinal", "AdaLNMLP"]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` (shapes broadcast)."""
    return x * (1.0 + scale) + shift


class AdaLNModulation(nn.Module):
    """``c -> chunks`` of ``SiLU -> Linear(cond_dim, chunks * width)``, zero-initialised.

    Shapes: c (..., cond_dim) -> a tuple of ``chunks`` tensors (..., width).
    """

    def __init__(self, cond_dim: int, width: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(cond_dim, chunks * width)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(nn.functional.silu(c)).chunk(self.chunks, dim=-1)


class AdaLNResBlock(nn.Module):
    """Residual MLP block with AdaLN-Zero conditioning.

    ``x + gate * MLP(LN(x) * (1 + scale) + shift)``, MLP = Linear -> SiLU -> Linear.

    Shapes: x (..., width), c (..., cond_dim) -> (..., width).
    """

    def __init__(self, width: int, cond_dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))
        self.ada = AdaLNModulation(cond_dim, width, 3)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class AdaLNFinal(nn.Module):
    """Final AdaLN layer: ``Linear(LN(x) * (1 + scale) + shift)`` with a zero-initialised output.

    Shapes: x (..., width), c (..., cond_dim) -> (..., out_dim).
    """

    def __init__(self, width: int, cond_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNModulation(cond_dim, width, 2)
        self.linear = nn.Linear(width, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c)
        return self.linear(modulate(self.norm(x), shift, scale))


class AdaLNMLP(nn.Module):
    """Small denoiser of a vector conditioned on a hidden state and the diffusion time.

    ``c = MLP(sinusoidal(t)) + Linear(cond)``, then ``Linear(x_t) -> depth x AdaLNResBlock(c)
    -> AdaLNFinal(c)``. The output starts at zero (AdaLN-Zero), i.e. an eps-model that
    initially predicts no noise.

    Args:
        dim: size of the denoised vector (D).
        cond_dim: size of the conditioning hidden state (C).
        width: width of the residual blocks.
        depth: number of residual blocks.

    Called as ``model(x_t, t, cond=h)`` so the core solvers drive it directly.

    Shapes: x_t (..., D), t (...) or (B,) broadcastable to x_t's leading dims, cond (..., C)
    -> (..., D), the prediction (eps / x0 / v, as the process was trained).
    """

    def __init__(self, dim: int, cond_dim: int, width: int = 256, depth: int = 3, mlp_ratio: float = 1.0, freq_dim: int = 128):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.dim = dim
        self.freq_dim = freq_dim
        self.input = nn.Linear(dim, width)
        self.time = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width, width, mlp_ratio) for _ in range(depth))
        self.final = AdaLNFinal(width, width, dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if x_t.shape[-1] != self.dim:
            raise ValueError(f"AdaLNMLP expects x_t (..., {self.dim}), got {tuple(x_t.shape)}")
        lead = x_t.shape[:-1]
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim > len(lead) or any(a not in (b, 1) for a, b in zip(t.shape, lead)):
            raise ValueError(f"time of shape {tuple(t.shape)} does not match x_t's leading shape {tuple(lead)}")
        t = t.reshape(t.shape + (1,) * (len(lead) - t.ndim)).expand(lead)
        c = self.time(sinusoidal_embedding(t, self.freq_dim).to(x_t.dtype)) + self.cond(cond)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c)
