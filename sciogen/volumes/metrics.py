"""Quality measures of generated volumes, with MONAI's SSIM / MS-SSIM.

:func:`evaluate` returns plain floats:

- ``diversity_ms_ssim``: mean MS-SSIM over all pairs of samples (lower: more diverse);
- ``nearest_ssim`` / ``nearest_psnr``: for each sample, SSIM / PSNR to its closest
  reference volume, averaged (a memorisation check when the reference is the training set);
- ``histogram_w1``: Wasserstein-1 distance between the pooled intensity distributions of
  samples and reference (in the samples' units);
- ``mmd``: squared maximum mean discrepancy (Gaussian kernel, median bandwidth) between
  samples and reference, on volumes average-pooled to 8^3.

:func:`paired_error` scores conditional outputs (super-resolution, translation, inpainting)
against their references, pair by pair: PSNR, SSIM and mean absolute error.

MS-SSIM's default five scales and 11-voxel kernel need volumes of at least 161 voxels a
side; :func:`ms_ssim` uses a 3-voxel kernel and as many scales (equal weights) as the
volume allows, so it is defined for 16^3 and up (32^3: 3 scales).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.metrics.regression import MultiScaleSSIMMetric, SSIMMetric

from sciogen.train.checks import finite_array

__all__ = ["evaluate", "paired_error", "ssim", "ms_ssim", "psnr", "histogram_w1", "mmd"]


def _stack(volumes: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(volumes, torch.Tensor):
        x = volumes if volumes.ndim == 5 else volumes[None]
    else:
        shapes = {tuple(v.shape) for v in volumes}
        if len(shapes) != 1:
            raise ValueError(f"volumes must share one shape to be compared, got {sorted(shapes)}")
        x = torch.stack([torch.as_tensor(v.as_tensor() if hasattr(v, "as_tensor") else v) for v in volumes])
    if x.ndim != 5:
        raise ValueError(f"expected volumes (N, C, X, Y, Z) or a list of (C, X, Y, Z), got shape {tuple(x.shape)}")
    return finite_array("volumes", x)  # a NaN would make every measure NaN: named by (volume, channel, x, y, z)


def _range(*xs: torch.Tensor) -> float:
    lo = min(float(x.min()) for x in xs)
    hi = max(float(x.max()) for x in xs)
    return max(hi - lo, 1e-6)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """SSIM per pair of volumes ``(N, C, X, Y, Z)`` (MONAI, 7-voxel Gaussian window)."""
    data_range = data_range or _range(x, y)
    kernel = min(7, min(x.shape[2:]) // 2 * 2 - 1)
    return SSIMMetric(spatial_dims=3, data_range=data_range, win_size=kernel, reduction="none")(x, y).view(-1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """MS-SSIM per pair of volumes with scale weights valid for small volumes (module docstring)."""
    data_range = data_range or _range(x, y)
    side = min(x.shape[2:])
    scales = max(1, min(5, int(math.floor(math.log2(side / 8))) + 1))
    weights = tuple([1.0 / scales] * scales)
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=data_range, kernel_size=3, weights=weights, reduction="none")
    return metric(x, y).view(-1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) per pair of volumes."""
    data_range = data_range or _range(x, y)
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(data_range**2 / mse)


def histogram_w1(x: torch.Tensor, y: torch.Tensor, points: int = 1000) -> float:
    """Wasserstein-1 distance between the intensity distributions of two sets of volumes."""
    q = torch.linspace(0, 1, points, dtype=torch.float64)
    qx = torch.quantile(_subsample(x), q)
    qy = torch.quantile(_subsample(y), q)
    return float((qx - qy).abs().mean())


def _subsample(x: torch.Tensor, limit: int = 4_000_000) -> torch.Tensor:
    flat = x.detach().double().flatten()
    if flat.numel() > limit:  # torch.quantile's limit is 2^24 elements; a fixed stride keeps it exact enough
        flat = flat[:: math.ceil(flat.numel() / limit)]
    return flat


def mmd(x: torch.Tensor, y: torch.Tensor, pooled: int = 8) -> float:
    """Squared MMD (biased estimate) with a Gaussian kernel of median-heuristic bandwidth."""
    fx = F.adaptive_avg_pool3d(x, pooled).flatten(1).double()
    fy = F.adaptive_avg_pool3d(y, pooled).flatten(1).double()
    z = torch.cat([fx, fy])
    d2 = torch.cdist(z, z).pow(2)
    bandwidth = d2[d2 > 0].median() if (d2 > 0).any() else torch.tensor(1.0, dtype=torch.float64)
    k = torch.exp(-d2 / bandwidth)
    n = len(fx)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


def evaluate(samples: Sequence[torch.Tensor] | torch.Tensor, reference: Sequence[torch.Tensor] | torch.Tensor | None = None
             ) -> dict[str, float]:
    """The measures of the module docstring (reference measures only with a same-shape reference)."""
    x = _stack(samples)
    out: dict[str, float] = {"n": float(len(x)), "mean": float(x.mean()), "std": float(x.std())}
    if len(x) > 1:
        pairs = list(itertools.combinations(range(len(x)), 2))
        a = torch.stack([x[i] for i, _ in pairs])
        b = torch.stack([x[j] for _, j in pairs])
        out["diversity_ms_ssim"] = float(ms_ssim(a, b, _range(x)).mean())
    if reference is not None:
        y = _stack(reference)
        out["histogram_w1"] = histogram_w1(x, y)
        if y.shape[1:] == x.shape[1:]:
            data_range = _range(y)
            best_ssim, best_psnr = [], []
            for volume in x:
                repeated = volume[None].expand(len(y), *volume.shape)
                best_ssim.append(float(ssim(repeated, y, data_range).max()))
                best_psnr.append(float(psnr(repeated, y, data_range).max()))
            out["nearest_ssim"] = sum(best_ssim) / len(best_ssim)
            out["nearest_psnr"] = sum(best_psnr) / len(best_psnr)
            out["mmd"] = mmd(x, y)
    return out


def paired_error(outputs: Sequence[torch.Tensor] | torch.Tensor, references: Sequence[torch.Tensor] | torch.Tensor,
                 data_range: float | None = None) -> dict[str, float]:
    """Error of each output against its own reference (same shapes), averaged: ``psnr`` (dB),
    ``ssim`` and ``mean_abs_error``. ``data_range`` defaults to the references' range; one
    reference is compared with every output."""
    x, y = _stack(outputs), _stack(references)
    if len(y) == 1:
        y = y.expand_as(x)
    if x.shape != y.shape:
        raise ValueError(f"outputs {tuple(x.shape)} and references {tuple(y.shape)} must pair up one to one")
    data_range = _range(y) if data_range is None else float(data_range)
    return {"psnr": float(psnr(x, y, data_range).mean()), "ssim": float(ssim(x, y, data_range).mean()),
            "mean_abs_error": float((x - y).abs().mean())}
