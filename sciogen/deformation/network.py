"""The recovery network: a small time-conditioned U-Net for 2D and 3D images.

    h = conv_in(x)                     (a strided "patchify" convolution when stem > 1)
    down:  per level, a residual block  h <- h + conv(SiLU(GN(conv(SiLU(GN(h))) + e(t))))
           then a strided convolution (except at the last level)
    up:    nearest upsampling, concatenation with the skip, residual block
    out:   conv_out(SiLU(GN(h))), initialised to zero (the untrained net predicts no motion),
           upsampled (linear) back to the input grid when stem > 1

with ``e(t)`` the :class:`sciogen.nn.TimeEmbedding` of t in [0, 1] projected to each
block's width. MONAI's ``DiffusionModelUNet`` was the first choice; it always puts
self-attention in its middle block, which needs ``einops`` and costs O(N^2) in the
number of voxels of the bottleneck (4096 tokens at 64^3 / 4), too slow on a CPU, so this
module keeps to convolutions.

``stem`` > 1 lets the network see a fine grid (e.g. 64^3) while its blocks work on a grid
``stem`` times coarser: the velocity it predicts is smooth (the random deformations have
at most 32 control points per side), so predicting it on the coarse grid and upsampling
loses little, and a 3D step costs about ``stem^3`` times less.

Shapes: ``x`` ``(B, C, *S)`` with ``len(S) = spatial_dims`` and every ``S[i]`` divisible by
``stem * 2 ** (len(channels) - 1)``; ``t`` ``(B,)`` or scalar -> ``(B, spatial_dims, *S)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sciogen.nn import TimeEmbedding

__all__ = ["RecoveryUNet", "ShapeNotDivisibleError"]


class ShapeNotDivisibleError(ValueError):
    """The spatial shape does not divide the network's downsampling factor."""


def _conv(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, spatial_dims: int, cin: int, cout: int, time_dim: int):
        super().__init__()
        conv = _conv(spatial_dims)
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = conv(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = conv(cout, cout, 3, padding=1)
        self.skip = conv(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.act(self.norm1(h)))
        y = y + self.time(emb).view(*y.shape[:2], *[1] * (h.ndim - 2))
        y = self.conv2(self.act(self.norm2(y)))
        return self.skip(h) + y


class RecoveryUNet(nn.Module):
    """``model(x, t) -> w``: the recovery velocity in units of sigma(t) (see process.py).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels: widths per resolution level (``len(channels) - 1`` downsamplings).
        time_dim: width of the time embedding.
        stem: downsampling factor of the input convolution (1: none); the output is
            upsampled by the same factor.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64),
                 time_dim: int = 64, stem: int = 1):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) < 1:
            raise ValueError("channels must name at least one level")
        if int(stem) < 1:
            raise ValueError(f"stem must be >= 1, got {stem}")
        conv = _conv(spatial_dims)
        self.spatial_dims, self.in_channels, self.channels = spatial_dims, in_channels, tuple(channels)
        self.stem = int(stem)
        self.time = TimeEmbedding(time_dim)
        self.conv_in = (conv(in_channels, channels[0], 3, padding=1) if self.stem == 1
                        else conv(in_channels, channels[0], self.stem, stride=self.stem))
        self.down = nn.ModuleList(_ResBlock(spatial_dims, c_prev, c, time_dim)
                                  for c_prev, c in zip((channels[0], *channels[:-1]), channels))
        self.pool = nn.ModuleList(conv(c, c, 3, stride=2, padding=1) for c in channels[:-1])
        self.mid = _ResBlock(spatial_dims, channels[-1], channels[-1], time_dim)
        self.up = nn.ModuleList(_ResBlock(spatial_dims, channels[i + 1] + channels[i], channels[i], time_dim)
                                for i in reversed(range(len(channels) - 1)))
        self.norm_out = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.conv_out = conv(channels[0], spatial_dims, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def divisor(self) -> int:
        """Every spatial size must be a multiple of this."""
        return self.stem * 2 ** (len(self.channels) - 1)

    def check_shape(self, x: torch.Tensor) -> None:
        """Raise a clear error for inputs this network cannot process."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected x of shape (B, {self.in_channels}, {', '.join('S%d' % i for i in range(self.spatial_dims))}), "
                f"got {tuple(x.shape)}"
            )
        bad = [n for n in x.shape[2:] if n % self.divisor]
        if bad:
            raise ShapeNotDivisibleError(
                f"spatial shape {tuple(x.shape[2:])} is not divisible by the network's downsampling factor "
                f"{self.divisor}; pad or resample the image (the deformation generator and transforms do this for you)"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        self.check_shape(x)
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).expand(x.shape[0])
        emb = self.time(t)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](h)
        h = self.mid(h, emb)
        for block in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        w = self.conv_out(nn.functional.silu(self.norm_out(h)))
        if self.stem > 1:
            w = nn.functional.interpolate(w, size=x.shape[2:], mode="bilinear" if self.spatial_dims == 2 else "trilinear",
                                          align_corners=False)
        return w
