"""Between an image's own grid and the network's grid: pad to a cube, resample, crop back.

The network works on a fixed grid (e.g. 64 x 64 or 48^3). An image of any shape is padded
symmetrically to a square / cube of side ``P = max(S)`` (so its aspect ratio is kept; no
shape is rejected), resampled to the network grid ``N`` (linear, ``align_corners=True``),
and the displacement found there is resampled back onto the image's own voxels: a
position ``q`` of the image sits at ``(q + pad) * (N - 1) / (P - 1)`` on the network grid and
displacements are multiplied by ``(P - 1) / (N - 1)``. Nothing is cropped from the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .fields import check_field, identity_grid

__all__ = ["GridMap"]


@dataclass(frozen=True)
class GridMap:
    """The map between an image grid ``shape`` and a network grid ``network_shape``."""

    shape: tuple[int, ...]
    network_shape: tuple[int, ...]

    def __post_init__(self):
        if len(self.shape) != len(self.network_shape):
            raise ValueError(
                f"a {len(self.shape)}D image cannot use a {len(self.network_shape)}D model "
                f"(image spatial shape {self.shape}, model grid {self.network_shape}); "
                f"use the {'deformation/brain-mri-2d' if len(self.shape) == 2 else 'deformation/brain-mri-3d'} model"
            )
        if len(set(self.network_shape)) != 1:
            raise ValueError(f"the network grid must be a square / cube, got {self.network_shape}")

    @property
    def side(self) -> int:
        return max(self.shape)

    @property
    def pads(self) -> list[int]:
        return [(self.side - n) // 2 for n in self.shape]

    @property
    def ratio(self) -> float:
        """Network voxels per image voxel."""
        return (self.network_shape[0] - 1) / max(self.side - 1, 1)

    def to_network(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, *shape)`` -> ``(B, C, *network_shape)``: pad with the minimum, resample."""
        if tuple(image.shape[2:]) != self.shape:
            raise ValueError(f"image shape {tuple(image.shape[2:])} != {self.shape}")
        pad: list[int] = []
        for n, before in zip(reversed(self.shape), reversed(self.pads)):
            pad += [before, self.side - n - before]
        low = image.flatten(2).min(2).values.view(*image.shape[:2], *[1] * len(self.shape))
        padded = F.pad(image.float() - low, pad) + low
        mode = "bilinear" if len(self.shape) == 2 else "trilinear"
        if tuple(padded.shape[2:]) == self.network_shape:
            return padded
        return F.interpolate(padded, size=self.network_shape, mode=mode, align_corners=True, antialias=False)

    def to_image(self, ddf: torch.Tensor) -> torch.Tensor:
        """A network-grid displacement ``(B, D, *network_shape)`` (network voxels) -> the
        image's displacement ``(B, D, *shape)`` in image voxels."""
        d = check_field(ddf, "ddf")
        if tuple(ddf.shape[2:]) != self.network_shape:
            raise ValueError(f"ddf grid {tuple(ddf.shape[2:])} != network grid {self.network_shape}")
        pos = identity_grid(self.shape, ddf.device, torch.float32)
        pos = (pos + torch.tensor(self.pads, device=ddf.device, dtype=torch.float32).view(-1, *[1] * d)) * self.ratio
        n = self.network_shape[0]
        grid = (pos * (2.0 / max(n - 1, 1)) - 1.0).movedim(0, -1).flip(-1)
        grid = grid.unsqueeze(0).expand(ddf.shape[0], *grid.shape)
        out = F.grid_sample(ddf.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out / self.ratio

    @staticmethod
    def for_image(shape: Sequence[int], network_shape: Sequence[int]) -> "GridMap":
        return GridMap(tuple(int(n) for n in shape), tuple(int(n) for n in network_shape))
