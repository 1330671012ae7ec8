"""Training images: volumes (3D) or their slices (2D) on the network grid, intensities in [0, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .config import DeformationDataConfig
from .grid import GridMap
from .io import normalize_intensity, read_image

__all__ = ["resolve_files", "training_images", "volume_slices", "brain_phantom"]


def resolve_files(config: DeformationDataConfig) -> list[str]:
    """The configured files as paths (``root`` joined, ``~`` expanded); raises if one is missing."""
    root = Path(config.root).expanduser()
    out = []
    for name in config.files:
        path = str(root / name) if not Path(name.split(".npz:")[0]).is_absolute() else name
        if not Path(path.split(".npz:")[0] + (".npz" if ".npz:" in path else "")).is_file():
            raise FileNotFoundError(
                f"training file {path} not found; set data.root (now {config.root!r}) to the folder holding "
                f"the volumes (the repository's ../shared/datasets/volumes) or list other files in data.files"
            )
        out.append(path)
    return out


def volume_slices(volume: torch.Tensor, axes: Sequence[int], fraction: float) -> list[torch.Tensor]:
    """Slices ``(C, a, b)`` of ``volume`` ``(C, X, Y, Z)`` along ``axes`` from the central ``fraction``."""
    out = []
    for axis in axes:
        n = volume.shape[1 + axis]
        lo = int(round(n * (1 - fraction) / 2))
        for i in range(lo, max(lo + 1, n - lo)):
            out.append(volume.select(1 + axis, i))
    return out


def training_images(config: DeformationDataConfig, files: Sequence[str] | None = None) -> torch.Tensor:
    """All training images on the network grid, ``(N, 1, *config.shape)`` float32 in [0, 1].

    3D: one item per volume. 2D: the slices of every volume along ``slice_axes`` (central
    ``slice_fraction``), each padded to a square and resampled; nearly empty slices dropped.
    """
    files = resolve_files(config) if files is None else list(files)
    items = []
    for path in files:
        image, _ = read_image(path)
        image = normalize_intensity(image[:1][None])[0]
        if image.ndim != 4:
            raise ValueError(f"{path}: training needs 3D volumes, got an image of shape {tuple(image.shape)}")
        parts = [image] if config.spatial_dims == 3 else volume_slices(image, config.slice_axes, config.slice_fraction)
        for part in parts:
            x = GridMap.for_image(part.shape[1:], config.shape).to_network(part[None])
            if config.spatial_dims == 2 and float(x.mean()) < config.min_foreground:
                continue
            items.append(x)
    if not items:
        raise ValueError("no training images left (all slices below data.min_foreground?)")
    return torch.cat(items).float()


def brain_phantom(shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic head for demos and tests: ``(image (1, *shape) in [0, 1], labels (1, *shape))``.

    Labels: 0 background, 1 scalp, 2 grey matter, 3 white matter, 4 ventricles. Works in
    2D and 3D; no data files needed.
    """
    axes = [torch.linspace(-1, 1, n) for n in shape]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"))

    def ellipsoid(radii, centre=None):
        centre = centre or [0.0] * len(shape)
        return sum(((pos[i] - centre[i]) / radii[i]) ** 2 for i in range(len(shape))) <= 1

    d = len(shape)
    label = torch.zeros(shape, dtype=torch.int64)
    label[ellipsoid([0.92, 0.78, 0.85][:d])] = 1
    label[ellipsoid([0.82, 0.68, 0.75][:d])] = 2
    label[ellipsoid([0.62, 0.5, 0.55][:d])] = 3
    for side in (-1, 1):
        centre = [0.1, 0.16 * side, 0.0][:d]
        label[ellipsoid([0.3, 0.08, 0.12][:d], centre)] = 4
    intensity = torch.tensor([0.0, 0.35, 0.6, 0.9, 0.15])
    ripple = 0.05 * torch.sin(9 * pos[0]) * torch.cos(7 * pos[1])
    image = (intensity[label] + ripple * (label > 0)).clamp(0, 1)
    return image[None], label[None]
