"""The TSDiff denoiser: residual blocks around a bidirectional diagonal state-space layer.

Architecture (Kollovieh et al. 2023, TSDiff, Sec. 4 / App. B; S4D from Gu et al. 2022):

    h_0        = ReLU(W_in x)                                    x: (B, T, C) series + lags
    e          = MLP(sinusoid(step))                             diffusion-step embedding
    block l:   z = S4DLayer(h_l + W_t e)                         pre-norm, residual
               g = tanh(z) * sigmoid(z)                          gated activation
               h_{l+1} = h_l + Conv1x1_res(g),  skip_l = Conv1x1_skip(g)
    out        = W_2 ReLU(W_1 sum_l skip_l) (+ x with input_skip, TSDiff's ``init_skip``)

The S4D layer is a per-channel long convolution whose kernel comes from a diagonal
state-space model discretised with zero-order hold (Gu et al. 2022, "On the
Parameterization and Initialization of Diagonal State Space Models", S4D-Lin init):

    K[l] = 2 Re( sum_n C_n (exp(dt A_n) - 1) / A_n  exp(dt A_n l) ),   A_n = -1/2 + i pi n,

with a causal kernel and an anti-causal kernel (bidirectional), applied by FFT, a skip
``D u``, GELU and a position-wise output projection.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sciogen.nn import sinusoidal_embedding

__all__ = ["S4DKernel", "S4DLayer", "TSDiffBlock", "TSDiffDenoiser", "bidirectional_convolution"]


class S4DKernel(nn.Module):
    """Convolution kernels of ``kernels x channels`` diagonal SSMs with ``state // 2``
    complex modes each (S4D-Lin initialisation, log-uniform step sizes in [dt_min, dt_max]).

    Shapes: ``forward(L)`` -> (kernels, channels, L).
    """

    def __init__(self, channels: int, state: int = 64, kernels: int = 2, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if state < 2 or state % 2:
            raise ValueError(f"state must be an even number >= 2, got {state}")
        modes = state // 2
        log_dt = torch.rand(kernels, channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.c = nn.Parameter(torch.randn(kernels, channels, modes, 2) * math.sqrt(0.5))
        self.log_a_real = nn.Parameter(torch.full((kernels, channels, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes, dtype=torch.float32).expand(kernels, channels, modes).clone())

    def forward(self, length: int) -> torch.Tensor:
        dt = self.log_dt.exp()[..., None]  # (k, H, 1)
        a = torch.complex(-self.log_a_real.exp(), self.a_imag)  # (k, H, N)
        dta = a * dt
        c = torch.view_as_complex(self.c.contiguous()) * (torch.exp(dta) - 1.0) / a
        steps = torch.arange(length, device=dta.device, dtype=torch.float32)
        vandermonde = torch.exp(dta[..., None] * steps)  # (k, H, N, L)
        return 2.0 * torch.einsum("khn,khnl->khl", c, vandermonde).real


def bidirectional_convolution(u: torch.Tensor, causal: torch.Tensor, anticausal: torch.Tensor) -> torch.Tensor:
    """Per-channel two-sided convolution by FFT (S4's bidirectional mode):

        y[i] = sum_{j <= i} causal[i - j] u[j] + sum_{j > i} anticausal[j - i - 1] u[j].

    Shapes: u (B, L, H); causal, anticausal (H, L) -> (B, L, H).
    """
    length = u.shape[1]
    n = 2 * length  # one circular convolution: k0 on the past, flipped k1 on the future
    kk = torch.cat([causal, anticausal.flip(-1)], dim=-1).T  # (2L, H)
    return torch.fft.irfft(torch.fft.rfft(u, n=n, dim=1) * torch.fft.rfft(kk, n=n, dim=0), n=n, dim=1)[:, :length]


class S4DLayer(nn.Module):
    """Pre-norm residual bidirectional S4D layer on channels-last (B, L, H) tensors.

    ``y = u + W GELU(k_causal * u' + k_anticausal * u' + D u')`` with ``u' = LayerNorm(u)``
    and ``*`` a convolution along L.
    """

    def __init__(self, channels: int, state: int = 64, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.kernel = S4DKernel(channels, state, kernels=2)
        self.d = nn.Parameter(torch.randn(channels))
        self.out = nn.Linear(channels, channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[1]
        z = self.norm(u)
        k = self.kernel(length)  # (2, H, L)
        y = bidirectional_convolution(z, k[0], k[1]) + z * self.d
        return u + self.dropout(self.out(nn.functional.gelu(y)))


class TSDiffBlock(nn.Module):
    """A residual block: step embedding added, S4D layer, gated activation, residual and skip
    (the two 1x1 convolutions of TSDiff as one position-wise linear map)."""

    def __init__(self, hidden: int, state: int = 64, dropout: float = 0.0):
        super().__init__()
        self.time = nn.Linear(hidden, hidden)
        self.s4 = S4DLayer(hidden, state, dropout)
        self.res_skip = nn.Linear(hidden, 2 * hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.s4(h + self.time(emb)[:, None, :])
        res, skip = self.res_skip(torch.tanh(z) * torch.sigmoid(z)).chunk(2, dim=-1)
        return h + res, skip


class TSDiffDenoiser(nn.Module):
    """``model(x_t, t) -> eps`` for TSDiff states (see the module docstring).

    Args:
        channels: C = 1 + number of lag channels.
        hidden: width (64 in TSDiff's small configuration).
        blocks: residual blocks (3).
        state: SSM state size per channel (``state // 2`` complex modes).
        step_dim: width of the sinusoidal step features (128).
        num_steps: N of the discrete schedule: t in [0, 1] is embedded as step t N.
        input_skip: add the input to the output (TSDiff's ``init_skip``).
        dropout: dropout on the S4D outputs.

    Shapes:
        x_t (B, T, C), t (B,) in [0, 1] -> (B, T, C). Any length T.
    """

    def __init__(self, channels: int, hidden: int = 64, blocks: int = 3, state: int = 64, step_dim: int = 128,
                 num_steps: int = 100, input_skip: bool = True, dropout: float = 0.0):
        super().__init__()
        self.channels, self.step_dim, self.num_steps, self.input_skip = channels, step_dim, num_steps, input_skip
        self.inp = nn.Linear(channels, hidden)
        self.time = nn.Sequential(nn.Linear(step_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.blocks = nn.ModuleList(TSDiffBlock(hidden, state, dropout) for _ in range(blocks))
        self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        if x_t.ndim != 3 or x_t.shape[-1] != self.channels:
            raise ValueError(f"expected x_t of shape (B, T, {self.channels}), got {tuple(x_t.shape)}")
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        emb = self.time(sinusoidal_embedding(t, self.step_dim, scale=float(self.num_steps)))
        h = torch.relu(self.inp(x_t))  # (B, T, H)
        skip = 0.0
        for block in self.blocks:
            h, s = block(h, emb)
            skip = skip + s
        out = self.out(skip)
        return out + x_t if self.input_skip else out
