"""Coordinates and the one warp: displacement fields on a voxel grid, in voxels or normalised units.

A *displacement field* ``u`` has shape ``(B, D, *S)`` for ``D = len(S)`` spatial axes (2 or 3);
channel ``i`` is the displacement along array axis ``i`` (the axis of size ``S[i]``).
:func:`warp` pulls an image back: ``warp(x, u)(p) = x(p + u(p))``. Two conventions are in use,
and :func:`warp` takes both as arguments, so each caller keeps the numbers it was measured with:

- ``units="voxels"``, ``align_corners=True`` (deformation, MONAI ``Warp``): ``p`` is the voxel
  index, the first and last voxel centres sit at -1 and 1 of ``grid_sample``'s range;
- ``units="normalized"``, ``align_corners=False`` (the longitudinal volumes' synthetic
  progression): ``p`` is in [-1, 1] over the image's extent, voxel centres at
  ``-1 + (2k + 1) / n``.

Pure torch; no MONAI import (MONAI's ``Warp`` agrees with the voxel convention to 1e-5, but
its grid arithmetic differs in the last bits and it has no normalised units, so the shipped
models' samples would change: the grid here is ours).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

__all__ = ["INTERPOLATIONS", "PADDINGS", "UNITS", "check_field", "identity_grid", "normalized_centres", "warp"]

Interpolation = Literal["bilinear", "nearest"]
Padding = Literal["border", "zeros", "reflection"]
Units = Literal["voxels", "normalized"]
INTERPOLATIONS = ("bilinear", "nearest")
PADDINGS = ("border", "zeros", "reflection")
UNITS = ("voxels", "normalized")


def check_field(field: torch.Tensor, name: str = "field") -> int:
    """Check that ``field`` is ``(B, D, *S)`` with ``D = len(S)`` in (2, 3); returns D."""
    if field.ndim not in (4, 5) or field.shape[1] != field.ndim - 2:
        raise ValueError(
            f"{name} must have shape (B, D, *S) with D = len(S) = 2 or 3 (channel i = displacement along "
            f"spatial axis i, in voxels); got {tuple(field.shape)}"
        )
    return field.ndim - 2


def identity_grid(shape: Sequence[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates ``(D, *S)``: channel i holds the index along axis i."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def normalized_centres(shape: Sequence[int], device=None, dtype=torch.float32,
                       align_corners: bool = False) -> torch.Tensor:
    """Voxel centres in normalised coordinates ``(D, *S)``, array axis order: ``-1 + (2k + 1) / n``
    (``align_corners=False``), or ``-1 + 2k / (n - 1)`` (``align_corners=True``)."""
    if align_corners:
        axes = [torch.linspace(-1.0, 1.0, n, dtype=dtype) for n in shape]
    else:
        axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).to(device)


def _sampling_grid(displacement: torch.Tensor, units: Units, align_corners: bool) -> torch.Tensor:
    """``grid_sample``'s grid ``(B, *S, D)`` for sampling at ``p + u(p)``; last dim in x, y, z order."""
    shape = tuple(displacement.shape[2:])
    d = len(shape)
    if units == "normalized":
        pos = normalized_centres(shape, displacement.device, displacement.dtype, align_corners)[None] + displacement
    elif align_corners:
        pos = identity_grid(shape, displacement.device, displacement.dtype).unsqueeze(0) + displacement
        scale = torch.tensor([2.0 / max(n - 1, 1) for n in shape], device=displacement.device,
                             dtype=displacement.dtype)
        pos = pos * scale.view(1, -1, *[1] * d) - 1.0
    else:  # voxel index k -> -1 + (2k + 1) / n
        pos = identity_grid(shape, displacement.device, displacement.dtype).unsqueeze(0) + displacement
        size = torch.tensor(shape, device=displacement.device, dtype=displacement.dtype).view(1, -1, *[1] * d)
        pos = (2.0 * pos + 1.0) / size - 1.0
    return pos.movedim(1, -1).flip(-1)


def warp(image: torch.Tensor, ddf: torch.Tensor, mode: Interpolation = "bilinear", padding_mode: Padding = "border",
         *, units: Units = "voxels", align_corners: bool = True) -> torch.Tensor:
    """Resample ``image`` at ``p + ddf(p)`` (pull-back warp).

    Args:
        image: ``(B, C, *S)``, any float dtype (integer labels: cast, use ``mode="nearest"``).
        ddf: ``(B, D, *S)`` displacement in ``units`` (B may be 1 to share one field).
        mode: ``"bilinear"`` (linear / trilinear) for images, ``"nearest"`` for labels.
        padding_mode: value outside the image: ``"border"``, ``"zeros"`` or ``"reflection"``.
        units: ``"voxels"`` (voxel indices) or ``"normalized"`` ([-1, 1] over the extent).
        align_corners: where the voxel centres sit in [-1, 1] (module docstring); the
            default pair (voxels, True) is MONAI ``Warp``'s convention.

    Returns:
        ``(B, C, *S)`` in the dtype of ``image`` (computed in float32).
    """
    check_field(ddf, "ddf")
    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {INTERPOLATIONS}; got {mode!r}")
    if padding_mode not in PADDINGS:
        raise ValueError(f"padding_mode must be one of {PADDINGS}; got {padding_mode!r}")
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}; got {units!r}")
    if image.shape[2:] != ddf.shape[2:]:
        raise ValueError(f"image spatial shape {tuple(image.shape[2:])} != ddf spatial shape {tuple(ddf.shape[2:])}")
    if ddf.shape[0] != image.shape[0]:
        ddf = ddf.expand(image.shape[0], *ddf.shape[1:])
    grid = _sampling_grid(ddf.float(), units, align_corners)
    out = F.grid_sample(image.float(), grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return out.to(image.dtype) if image.is_floating_point() else out
