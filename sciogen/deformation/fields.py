"""Displacement fields: random multi-scale velocities, integration, composition, warping.

Conventions (the same as MONAI's ``Warp`` / ``DVF2DDF``):

- A *displacement field* (DDF) ``u`` has shape ``(B, D, *S)`` for ``D = len(S)`` spatial
  dimensions (2 or 3); channel ``i`` is the displacement along spatial axis ``i`` of the
  tensor (the axis of size ``S[i]``), **in voxels**.
- Warping *pulls back*: ``warp(x, u)(p) = x(p + u(p))``, sampled with linear
  interpolation (``align_corners=True``: voxel centres are the grid points). :func:`warp`
  is the shared one (:func:`sciogen.imaging.spatial.warp`), whose defaults are this convention.
- ``compose(a, b)`` is the displacement of ``phi_a o phi_b``, i.e. first ``b`` then ``a`` in
  point space: ``(phi_a o phi_b)(p) = p + b(p) + a(p + b(p))``. Warping by ``b`` and then by
  ``a`` equals one warp by ``compose(b, a)``: ``warp(warp(x, b), a) ~ warp(x, compose(b, a))``.
- A *stationary velocity field* (SVF) ``v`` has the same shape and units; its exponential
  ``exp(v)`` (:func:`integrate_velocity`, scaling and squaring) is a diffeomorphism whose
  exact inverse is ``exp(-v)``. MONAI's ``DVF2DDF`` does the same with a fixed number of
  squarings and its own ``Warp``; ours chooses the number from the field's size (half a voxel
  for the first step) and keeps the grid arithmetic the shipped models were measured with.
- Fractions of the image side: ``u_frac[:, i] = u[:, i] / S[i]``
  (:func:`voxels_to_fraction`, :func:`fraction_to_voxels`), so 0.1 moves by 10% of the side.

Everything here is pure torch and differentiable; randomness comes only from an explicit
``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from sciogen.imaging.spatial import INTERPOLATIONS, PADDINGS, check_field, identity_grid, warp

__all__ = [
    "INTERPOLATIONS",
    "PADDINGS",
    "spatial_shape",
    "check_field",
    "identity_grid",
    "warp",
    "compose",
    "integrate_velocity",
    "squaring_steps",
    "multiscale_noise",
    "fraction_to_voxels",
    "voxels_to_fraction",
    "resize_field",
    "jacobian",
    "jacobian_determinant",
    "limit_folding",
]


def spatial_shape(field: torch.Tensor) -> tuple[int, ...]:
    """The spatial shape ``S`` of a field ``(B, D, *S)``."""
    return tuple(field.shape[2:])


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Displacement of ``phi_outer o phi_inner``: ``inner(p) + outer(p + inner(p))`` (voxels).

    Shapes: outer, inner ``(B, D, *S)`` -> ``(B, D, *S)``. Outside the image the outer field
    is extended by its border values.
    """
    return inner + warp(outer, inner, padding_mode="border")


def squaring_steps(velocity: torch.Tensor, max_step: float = 0.5, minimum: int = 4, maximum: int = 14) -> int:
    """Number N of squarings so that ``max |v| / 2**N <= max_step`` voxels (clamped)."""
    vmax = float(velocity.detach().norm(dim=1).max()) if velocity.numel() else 0.0
    n = math.ceil(math.log2(vmax / max_step)) if vmax > max_step else 0
    return int(min(max(n, minimum), maximum))


def integrate_velocity(velocity: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """``exp(v)``: the displacement of the flow of a stationary velocity field after unit time.

    Scaling and squaring (Arsigny et al. 2006; MONAI ``DVF2DDF``): ``u = v / 2^N``, then N
    times ``u <- u + u(p + u(p))``. With ``steps=None`` N is chosen so that the first step
    moves at most half a voxel (:func:`squaring_steps`), which keeps the result free of
    folding for smooth velocities.

    Shapes: ``(B, D, *S)`` -> ``(B, D, *S)``, voxels.
    """
    check_field(velocity, "velocity")
    n = squaring_steps(velocity) if steps is None else int(steps)
    u = velocity / (2**n)
    for _ in range(n):
        u = compose(u, u)
    return u


def multiscale_noise(batch: int, shape: Sequence[int], grids: Sequence[int] = (8, 16, 32, 64), *,
                     generator: torch.Generator, device=None, decay: float = 1.0) -> torch.Tensor:
    """Smooth random vector fields: Gaussian noise on coarse-to-fine control grids, summed.

    For each control size g (points per side, capped at half the image side: a finer grid
    would be voxel-wise noise, which no discrete integration keeps free of folding), i.i.d. standard
    normal vectors on a g^D grid are upsampled (linear, ``align_corners=True``) to ``shape``
    and weighted by ``(g_0 / g) ** decay`` (``g_0`` the coarsest grid): coarse scales carry
    most of the energy, as in DRDM. The sum is divided by the root of the summed squared
    weights, so each component has roughly unit standard deviation before upsampling.

    Returns:
        ``(batch, D, *shape)`` in **fractions of the image side** (scale it, then
        :func:`fraction_to_voxels`). Drawn on the generator's device, then moved to ``device``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must have 2 or 3 spatial sizes, got {shape}")
    if not grids or any(int(g) < 2 for g in grids):
        raise ValueError(f"grids must be a non-empty list of control-grid sizes >= 2, got {list(grids)}")
    d = len(shape)
    mode = "bilinear" if d == 2 else "trilinear"
    g0 = min(grids)
    out = torch.zeros(batch, d, *shape, device=generator.device)
    total = 0.0
    for g in sorted(grids):
        ctl = tuple(max(2, min(int(g), n // 2)) for n in shape)
        noise = torch.randn(batch, d, *ctl, generator=generator, device=generator.device)
        weight = (g0 / g) ** decay
        out += weight * F.interpolate(noise, size=shape, mode=mode, align_corners=True)
        total += weight**2
    out = out / math.sqrt(total)
    return out.to(device) if device is not None else out


def _side_scale(field: torch.Tensor) -> torch.Tensor:
    shape = spatial_shape(field)
    return torch.tensor(shape, device=field.device, dtype=field.dtype).view(1, -1, *[1] * len(shape))


def fraction_to_voxels(field: torch.Tensor) -> torch.Tensor:
    """Channel i times ``S[i]``: fractions of the image side -> voxels."""
    return field * _side_scale(field)


def voxels_to_fraction(field: torch.Tensor) -> torch.Tensor:
    """Channel i divided by ``S[i]``: voxels -> fractions of the image side."""
    return field / _side_scale(field)


def resize_field(field: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Resample a voxel-unit field to a new grid covering the same extent (``align_corners=True``).

    The displacement is rescaled per axis by ``(S_new - 1) / (S_old - 1)`` so that it keeps
    pointing at the same physical location. Shapes: ``(B, D, *S)`` -> ``(B, D, *shape)``.
    """
    d = check_field(field, "field")
    old, new = spatial_shape(field), tuple(int(n) for n in shape)
    if old == new:
        return field
    mode = "bilinear" if d == 2 else "trilinear"
    out = F.interpolate(field, size=new, mode=mode, align_corners=True)
    ratio = [(n - 1) / max(o - 1, 1) for o, n in zip(old, new)]
    return out * torch.tensor(ratio, device=field.device, dtype=field.dtype).view(1, -1, *[1] * d)


def jacobian(ddf: torch.Tensor) -> torch.Tensor:
    """``I + grad u`` at every voxel: ``(B, D, D, *S)`` with ``[:, i, j] = d phi_i / d x_j``.

    Central differences inside, one-sided differences on the outermost voxels
    (``torch.gradient``); unit voxel spacing, so the result is the same in physical units.
    """
    d = check_field(ddf, "ddf")
    rows = []
    for i in range(d):
        grads = torch.gradient(ddf[:, i], dim=tuple(range(1, d + 1)))
        rows.append(torch.stack(grads, dim=1))
    jac = torch.stack(rows, dim=1)
    eye = torch.eye(d, device=ddf.device, dtype=ddf.dtype).view(1, d, d, *[1] * d)
    return jac + eye


def jacobian_determinant(ddf: torch.Tensor) -> torch.Tensor:
    """``det(I + grad u)`` per voxel, ``(B, *S)`` (see :func:`jacobian`). <= 0 means folding."""
    j = jacobian(ddf)
    if j.shape[1] == 2:
        return j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
    return (
        j[:, 0, 0] * (j[:, 1, 1] * j[:, 2, 2] - j[:, 1, 2] * j[:, 2, 1])
        - j[:, 0, 1] * (j[:, 1, 0] * j[:, 2, 2] - j[:, 1, 2] * j[:, 2, 0])
        + j[:, 0, 2] * (j[:, 1, 0] * j[:, 2, 1] - j[:, 1, 1] * j[:, 2, 0])
    )


@torch.no_grad()
def limit_folding(ddf: torch.Tensor, min_det: float = 0.05, iterations: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a displacement onto the folding-free set by shrinking it: ``u -> lambda u``.

    For each field of the batch whose smallest Jacobian determinant (:func:`jacobian_determinant`,
    every voxel, borders included) is below ``min_det``, the largest ``lambda`` in [0, 1]
    found by bisection with ``det(I + lambda grad u) >= min_det`` everywhere is applied
    (``lambda = 0`` is the identity, so one always exists). Fields that already satisfy the
    bound are returned unchanged, which is the usual case for integrated velocities.

    Returns:
        (the fields, the factors lambda ``(B,)``; 1 where nothing changed).
    """
    check_field(ddf, "ddf")
    lam = torch.ones(ddf.shape[0], device=ddf.device, dtype=ddf.dtype)
    worst = jacobian_determinant(ddf).flatten(1).min(1).values
    out = ddf.clone()
    for b in torch.nonzero(worst < min_det).flatten().tolist():
        lo, hi = 0.0, 1.0
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            if float(jacobian_determinant(ddf[b : b + 1] * mid).min()) >= min_det:
                lo = mid
            else:
                hi = mid
        lam[b] = lo
        out[b] = ddf[b] * lo
    return out, lam
