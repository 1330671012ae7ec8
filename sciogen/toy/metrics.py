"""Sample-quality measures for vectors: energy distance, moments, mixture likelihood."""

from __future__ import annotations

import torch

from sciogen.diffusion import GaussianMixture

__all__ = ["energy_distance", "vector_metrics"]


def _subsample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if x.shape[0] <= n:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:n]]


def energy_distance(x: torch.Tensor, y: torch.Tensor, max_points: int = 2000) -> float:
    """Székely's energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (0 iff same law).

    Shapes: x (n, D), y (m, D); each is subsampled to ``max_points`` rows (fixed seed).
    """
    x = _subsample(x.double(), max_points, 0)
    y = _subsample(y.double(), max_points, 1)
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def vector_metrics(samples: torch.Tensor, reference: torch.Tensor, mixture: GaussianMixture | None = None) -> dict[str, float]:
    """Metrics of samples (n, D) against reference draws (m, D).

    Returns ``energy_distance``; ``mean_error`` = |mean_s - mean_r|_2; ``cov_error`` =
    |C_s - C_r|_F / |C_r|_F; with a ``mixture``, also ``nll`` (mean -log p(x) of the
    samples under the mixture) and ``reference_nll`` (the same for the reference).
    """
    if samples.ndim != 2 or reference.ndim != 2 or samples.shape[1] != reference.shape[1]:
        raise ValueError(
            f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} must both be (N, D) with the same D"
        )
    s, r = samples.double(), reference.double()
    c_s, c_r = torch.cov(s.T).reshape(s.shape[1], -1), torch.cov(r.T).reshape(r.shape[1], -1)
    out = {
        "energy_distance": energy_distance(s, r),
        "mean_error": float((s.mean(0) - r.mean(0)).norm()),
        "cov_error": float((c_s - c_r).norm() / c_r.norm()),
    }
    if mixture is not None:
        out["nll"] = float(-mixture.log_prob(s).mean())
        out["reference_nll"] = float(-mixture.log_prob(r).mean())
    return out
