"""Conditional volume networks: covariates with classifier-free guidance, and an image by
channel concatenation.

:class:`ConditionalUNet` wraps MONAI's ``DiffusionModelUNet``:

- **covariates** (``config.condition.scalars`` / ``classes``): each is embedded
  (:class:`CovariateEmbedding`: a small MLP of the standardised value for a scalar, a table
  for a class) and the sum is added to the U-Net's time embedding, so every residual block
  sees it (MONAI's own ``class_labels`` path, generalised to several covariates and to
  scalars). A missing covariate (NaN) takes that covariate's learned *null* embedding;
  training drops all covariates of a sample with probability ``condition.dropout``, so the
  same network is also the unconditional model that classifier-free guidance needs
  (:func:`sciogen.diffusion.classifier_free`).
- **an image** (``condition.image``): ``"lowres"`` (super-resolution: the condition is the
  target degraded by :func:`degrade`, i.e. averaged over ``factor``^3 blocks and upsampled
  back), ``"paired"`` (any paired volume, e.g. another modality) or ``"masked"`` (inpainting:
  the volume with a region blanked plus the region's mask, :func:`blank`; training blanks
  random boxes, :func:`random_boxes`), concatenated to the noisy volume as input channels.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from sciogen.train.checks import finite_array

__all__ = ["CovariateEmbedding", "ConditionalUNet", "degrade", "blank", "random_boxes", "covariate_tensor"]


class CovariateEmbedding(nn.Module):
    """Covariates ``(B, K)`` (scalars, then class indices as floats; NaN = missing or dropped)
    -> one embedding ``(B, dim)``, the sum of one embedding per covariate.

    Args:
        scalars: names of the scalar covariates (standardised with ``mean`` / ``std``).
        classes: name -> number of classes of the categorical covariates.
        dim: the embedding width (the U-Net's time-embedding width).
    """

    def __init__(self, scalars: Sequence[str], classes: Mapping[str, int], dim: int):
        super().__init__()
        self.scalars, self.classes = list(scalars), dict(classes)
        self.names = [*self.scalars, *self.classes]
        self.register_buffer("mean", torch.zeros(len(self.scalars)))
        self.register_buffer("std", torch.ones(len(self.scalars)))
        self.scalar_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim)) for _ in self.scalars)
        self.scalar_nulls = nn.Parameter(torch.zeros(len(self.scalars), dim))
        self.tables = nn.ModuleList(nn.Embedding(n + 1, dim) for n in self.classes.values())  # index n: null

    def forward(self, covariates: torch.Tensor) -> torch.Tensor:
        if covariates.ndim != 2 or covariates.shape[1] != len(self.names):
            raise ValueError(f"covariates must be (B, {len(self.names)}) for {self.names}, got {tuple(covariates.shape)}")
        out = 0.0
        for k, mlp in enumerate(self.scalar_mlps):
            value = covariates[:, k : k + 1].float()
            missing = torch.isnan(value)
            z = torch.where(missing, torch.zeros_like(value), (value - self.mean[k]) / self.std[k])
            out = out + torch.where(missing, self.scalar_nulls[k].expand(value.shape[0], -1), mlp(z))
        for j, (table, n) in enumerate(zip(self.tables, self.classes.values())):
            value = covariates[:, len(self.scalars) + j]
            index = torch.where(torch.isnan(value), torch.full_like(value, n), value).round().long()
            out = out + table(index)
        return out


class ConditionalUNet(nn.Module):
    """MONAI ``DiffusionModelUNet`` with covariates and / or image channels (module docstring).

    Called as ``network(x, timesteps=k, covariates=(B, K) or None, image=(B, C, *S))``;
    ``covariates=None`` is the unconditional model (every covariate null).
    """

    def __init__(self, unet_options: Mapping[str, Any], *, scalars: Sequence[str] = (),
                 classes: Mapping[str, int] | None = None, image_channels: int = 0):
        super().__init__()
        classes = dict(classes or {})
        self.image_channels = int(image_channels)
        self.has_covariates = bool(scalars or classes)
        options = dict(unet_options)
        options["in_channels"] = options.get("in_channels", 1) + self.image_channels
        if self.has_covariates:
            options["num_class_embeds"] = 1  # replaced below: MONAI adds class_embedding(labels) to the time embedding
        self.unet = DiffusionModelUNet(**options)
        if self.has_covariates:
            self.unet.class_embedding = CovariateEmbedding(scalars, classes, dim=4 * options["channels"][0])

    @property
    def covariates(self) -> CovariateEmbedding | None:
        return self.unet.class_embedding if self.has_covariates else None

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, covariates: torch.Tensor | None = None,
                image: torch.Tensor | None = None) -> torch.Tensor:
        if self.image_channels:
            if image is None:
                raise ValueError(f"this network is conditioned on an image ({self.image_channels} channel(s)): "
                                 "pass image=")
            x = torch.cat([x, image.to(x.dtype)], 1)
        elif image is not None:
            raise ValueError("this network takes no image condition")
        labels = None
        if self.has_covariates:
            n = len(self.covariates.names)
            labels = (torch.full((x.shape[0], n), math.nan, device=x.device) if covariates is None
                      else covariates.to(x.device).float().expand(x.shape[0], -1))
        return self.unet(x, timesteps=timesteps, class_labels=labels)


def degrade(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The low-resolution version of ``x`` ``(B, C, X, Y, Z)`` on the same grid: means over
    ``factor``^3 blocks, upsampled back trilinearly (the super-resolution condition)."""
    if factor < 2:
        raise ValueError(f"the super-resolution factor must be >= 2, got {factor}")
    if any(s % factor for s in x.shape[2:]):
        raise ValueError(f"the volume shape {tuple(x.shape[2:])} must be a multiple of the factor {factor}")
    low = F.avg_pool3d(x, factor)
    return F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)


def blank(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inpainting condition: ``x`` ``(B, 1, *S)`` set to 0 where ``mask`` (``(B, 1, *S)``,
    1 = to generate) is set, and the mask itself: ``(B, 2, *S)``."""
    mask = mask.to(x.dtype)
    return torch.cat([x * (1.0 - mask), mask], 1)


def random_boxes(shape: Sequence[int], n: int, generator: torch.Generator, device: torch.device | str = "cpu",
                 low: float = 0.2, high: float = 0.5) -> torch.Tensor:
    """``n`` masks ``(n, 1, *shape)``, each one box with sides between ``low`` and ``high``
    of the volume's, placed uniformly (the training holes of the ``"masked"`` condition)."""
    mask = torch.zeros((n, 1, *shape), device=device)
    for i in range(n):
        u = torch.rand(2 * len(shape), generator=generator, device=generator.device).tolist()
        box = []
        for axis, size in enumerate(shape):
            side = max(1, round(size * (low + (high - low) * u[axis])))
            start = int(u[len(shape) + axis] * (size - side + 1))
            box.append(slice(start, start + side))
        mask[(i, 0, *box)] = 1.0
    return mask


def covariate_tensor(values: Mapping[str, Any] | None, names: Sequence[str], classes: Mapping[str, int],
                     n: int) -> torch.Tensor | None:
    """User covariates -> ``(n, K)`` floats (NaN where not given).

    ``values`` maps names to a number or a sequence of ``n`` numbers (finite and real; a
    name left out or given None is not conditioned on); None gives None (the unconditional
    model). Unknown names, NaN / inf / complex values and class indices out of range raise.
    """
    if values is None:
        return None
    if not isinstance(values, Mapping):
        raise ValueError(f"condition must map covariate names to values, e.g. {{'{(list(names) or ['age'])[0]}': 70}}; "
                         f"got {values!r}")
    if not names:
        raise ValueError("this model was trained without covariates; it takes no condition=")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown covariate(s) {unknown}; the model knows {list(names)}")
    out = torch.full((n, len(names)), math.nan)
    for k, name in enumerate(names):
        if name not in values or values[name] is None:
            continue
        value = finite_array(f"condition {name!r}", values[name]).flatten()  # None (not NaN) leaves it out
        if value.numel() not in (1, n):
            raise ValueError(f"covariate {name!r} needs one value or {n} values, got {value.numel()}")
        if name in classes:
            bad = value[(value != value.round()) | (value < 0) | (value >= classes[name])]
            if bad.numel():
                raise ValueError(f"covariate {name!r} is a class in 0..{classes[name] - 1}, got {bad[0].item():g}")
        out[:, k] = value.expand(n)
    return out
