"""Deformation diffusion and recovery (DRDM, Zheng et al. 2024), folding-free by construction.

**Forward ("deformation diffusion").** At level ``t`` in [0, 1] the clean image ``x_0`` is
warped by a random diffeomorphism::

    eps ~ multi-scale velocity noise  (control grids g = 8 ... 64, fractions of the side)
    v_t = sigma(t) * eps,  sigma(t) = max_velocity * t ** power
    phi_t = exp(v_t)                  (scaling and squaring)
    x_t = x_0 o phi_t                 (pull-back warp)

DRDM composes t small random steps instead; one stationary velocity per level gives the
same kind of multi-scale field, is free of folding (the exponential of a smooth velocity),
and has an exact inverse ``exp(-v_t)``, which is the recovery target.

**Recovery network.** ``model(x_t, t) -> w``, a velocity in units of ``sigma(t)`` (so its
output is O(1) at every level): the recovery ``r = exp(sigma(t) w)`` should undo the
deformation, ``x_t o r ~ x_0``; the network sees only the warped image and t. The loss is
DRDM's, on the recovery displacement (fractions of the side) against the exact inverse
``r* = exp(-v_t)``: relative squared error ``|r - r*|^2 / |r*|^2`` plus a cosine term
``1 - cos(r, r*)`` per voxel, plus ``reg_weight * mean(relu(-det(I + grad r)))``
(optionally averaged over the image's foreground only, see :attr:`foreground`).

**Sampling.** Deform to level ``T'`` (:attr:`level`), then recover in a few steps
``T' = t_0 > t_1 > ... > t_K = t_end``; step k moves a fraction ``(t_k - t_{k+1}) / t_k`` of
the predicted recovery (DDIM-like) and composes it into one running field
``Phi <- Phi o exp(...)``. Each factor is the exponential of a smooth velocity, so the
composition is a diffeomorphism; the original image is warped once per step by the
composed field (no accumulated blur) and once more at the end by the caller. DRDM uses 80
recovery steps; 4 are the default here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .fields import (
    compose,
    fraction_to_voxels,
    integrate_velocity,
    jacobian_determinant,
    multiscale_noise,
    voxels_to_fraction,
    warp,
)

__all__ = ["DeformationProcess", "recovery_times"]

Model = Callable[..., torch.Tensor]


def recovery_times(level: float, steps: int, t_end: float = 0.0) -> list[float]:
    """The levels ``[T', ..., t_end]`` (``steps + 1`` values, uniform) of a recovery."""
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must be in (0, 1], got {level}")
    if not 0.0 <= t_end < level:
        raise ValueError(f"t_end must be in [0, level={level}), got {t_end}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [level + (t_end - level) * k / steps for k in range(int(steps) + 1)]


@dataclass(frozen=True)
class DeformationProcess:
    """The random deformation of level t and the recovery loss / sampler.

    Attributes:
        grids: control-grid sizes of the velocity noise (points per side).
        max_velocity: ``sigma(1)``, the velocity scale at t = 1 as a fraction of the side.
        power: ``sigma(t) = max_velocity * t ** power``.
        decay: weight ``(g_0 / g) ** decay`` of each control grid.
        t_min: smallest training level (the relative loss is ill-posed at t = 0).
        reg_weight: weight of the negative-Jacobian regulariser.
        cos_weight: weight of the cosine term.
        foreground: if > 0, the recovery terms are averaged over the voxels where the clean
            image exceeds this value (dilated by 2 voxels) instead of over the whole grid: a
            deformation of empty background is invisible, so it cannot be recovered there
            (DRDM averages over all voxels: ``foreground=0``).
    """

    grids: tuple[int, ...] = (4, 8, 16, 32)
    max_velocity: float = 0.08
    power: float = 1.0
    decay: float = 1.0
    t_min: float = 0.05
    reg_weight: float = 10.0
    cos_weight: float = 1.0
    foreground: float = 0.0

    def __post_init__(self):
        if self.max_velocity <= 0 or self.power <= 0:
            raise ValueError(f"max_velocity and power must be > 0, got {self.max_velocity}, {self.power}")
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {self.t_min}")

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Velocity scale at level t (fraction of the side), same shape as t."""
        return self.max_velocity * t.clamp(0, 1) ** self.power

    def noise(self, batch: int, shape, *, generator: torch.Generator, device=None) -> torch.Tensor:
        """Unit-scale multi-scale velocity noise ``(B, D, *shape)`` (fractions of the side)."""
        return multiscale_noise(batch, shape, self.grids, generator=generator, device=device, decay=self.decay)

    def velocity(self, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v_t = sigma(t) * eps`` in voxels, ``(B, D, *S)``."""
        s = self.sigma(t.to(eps)).view(-1, *[1] * (eps.ndim - 1))
        return fraction_to_voxels(s * eps)

    def deform(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator,
               mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
        """Forward process: ``(x_t, v_t)`` for images ``(B, C, *S)`` and levels ``t`` (B,)."""
        eps = self.noise(x0.shape[0], x0.shape[2:], generator=generator, device=x0.device)
        v = self.velocity(eps, t)
        return warp(x0, integrate_velocity(v), mode=mode), v

    def predict_velocity(self, model: Model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The recovery velocity in voxels from ``model(x_t, t)`` (output in units of sigma(t))."""
        w = model(x_t, t)
        s = self.sigma(t.to(w)).view(-1, *[1] * (w.ndim - 1))
        return fraction_to_voxels(s * w)

    def loss(self, model: Model, x0: torch.Tensor, *, generator: torch.Generator,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample DRDM recovery loss ``(B,)`` of clean images ``x0`` ``(B, C, *S)``
        (``mask`` ``(B, *S)``: the region the recovery terms are averaged over, see :meth:`loss_weights`)."""
        terms = self.loss_terms(model, x0, generator=generator, mask=mask)
        return terms["rse"] + self.cos_weight * terms["cos"] + self.reg_weight * terms["fold"]

    def loss_terms(self, model: Model, x0: torch.Tensor, *, generator: torch.Generator,
                   mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss's terms, each ``(B,)``: ``rse`` (relative squared error), ``cos`` (1 - the
        mean cosine, softened by ``0.01 * mean |r*|^2`` so that voxels that barely move count
        less: 0 for the exact recovery up to those voxels, 1 for no recovery) and ``fold`` (mean of
        ``relu(-det(I + grad r))``)."""
        b = x0.shape[0]
        t = self.t_min + (1 - self.t_min) * torch.rand(b, generator=generator, device=generator.device).to(x0.device)
        x_t, v = self.deform(x0, t, generator=generator)
        target = voxels_to_fraction(integrate_velocity(-v))
        pred_vox = integrate_velocity(self.predict_velocity(model, x_t, t))
        pred = voxels_to_fraction(pred_vox)
        weight = self.loss_weights(x0, mask)
        space = tuple(range(1, pred.ndim - 1))
        rse = (weight * (pred - target).square().sum(1)).sum(space) / ((weight * target.square().sum(1)).sum(space) + 1e-12)
        norm2 = (weight * target.square().sum(1)).sum(space, keepdim=True) / weight.sum(space, keepdim=True)
        cos = (pred * target).sum(1) / torch.sqrt(pred.square().sum(1) * target.square().sum(1) + (0.01 * norm2) ** 2 + 1e-30)
        cos_loss = 1.0 - (weight * cos).sum(space) / weight.sum(space)
        fold = torch.relu(-jacobian_determinant(pred_vox)).flatten(1).mean(1)
        return {"rse": rse, "cos": cos_loss, "fold": fold}

    def loss_weights(self, x0: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-voxel weights ``(B, *S)`` of the recovery terms: ``mask`` ``(B, *S)`` (e.g. the
        labelled region) if given, else the voxels brighter than ``foreground`` (all voxels when
        it is 0); dilated by 2 voxels; an empty region falls back to all voxels."""
        if mask is None and self.foreground <= 0:
            return torch.ones(x0.shape[0], *x0.shape[2:], device=x0.device, dtype=x0.dtype)
        if mask is not None:
            mask = (mask > 0).to(x0.dtype)[:, None]
        else:
            mask = (x0.amax(1, keepdim=True) > self.foreground).to(x0.dtype)
        pool = torch.nn.functional.max_pool2d if x0.ndim == 4 else torch.nn.functional.max_pool3d
        mask = pool(mask, 5, stride=1, padding=2)[:, 0]
        empty = mask.flatten(1).sum(1) == 0  # an empty image: fall back to all voxels
        return torch.where(empty.view(-1, *[1] * (mask.ndim - 1)), torch.ones_like(mask), mask)

    @torch.no_grad()
    def recover(self, model: Model, image: torch.Tensor, *, level: float, steps: int, t_end: float = 0.0,
                generator: torch.Generator, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Deform ``image`` to ``level`` and recover it in ``steps`` steps; returns the total
        displacement ``(B, D, *S)`` in voxels (apply it with :func:`warp`).

        Args:
            model: the recovery network ``model(x, t)``.
            image: network-ready images ``(B, C, *S)`` (intensities as in training).
            level: T' in (0, 1], the level of the initial random deformation.
            steps: recovery steps K.
            t_end: level where recovery stops (0: full recovery as in DRDM).
            generator: source of the initial random velocity.
            eps: optional unit noise ``(B, D, *S)`` instead of drawing it.

        Raises FloatingPointError naming the step and level when the image, the network's
        output or the field holds NaN / inf (as the core solvers do).
        """
        times = recovery_times(level, steps, t_end)
        b = image.shape[0]
        if eps is None:
            eps = self.noise(b, image.shape[2:], generator=generator, device=image.device)
        _check_finite(image, "the input image", 0, level)
        ddf = _check_finite(integrate_velocity(self.velocity(eps, torch.full((b,), float(level), device=image.device))),
                            "the initial deformation", 0, level)
        for k, (t_k, t_next) in enumerate(zip(times[:-1], times[1:]), start=1):
            t = torch.full((b,), t_k, device=image.device)
            w = _check_finite(self.predict_velocity(model, warp(image, ddf), t), "the network's recovery velocity",
                              k, t_k)
            ddf = _check_finite(compose(ddf, integrate_velocity(w * ((t_k - t_next) / t_k))), "the composed field",
                                k, t_k)
        return ddf


def _check_finite(x: torch.Tensor, what: str, step: int, t: float) -> torch.Tensor:
    """``x``, or a FloatingPointError naming the recovery step and level (as the core solvers do)."""
    if not math.isfinite(float(x.sum())):  # one reduction: NaN and inf propagate into the sum
        raise FloatingPointError(
            f"non-finite values in {what} at recovery step {step} (level t = {t:.5f}); the input image "
            "must be finite, and a network that outputs NaN / inf needs a good checkpoint (retrain, or lower the "
            "learning rate)"
        )
    return x
