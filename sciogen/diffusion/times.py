"""Small helpers shared by every process: training-time draws and masked means."""

from __future__ import annotations

import torch

__all__ = ["stratified_times", "masked_mean"]


def stratified_times(batch: int, t_min: float = 0.0, generator=None, device=None) -> torch.Tensor:
    """Training times uniform on [t_min, 1] with stratified (low-discrepancy) offsets.

    One uniform offset u0 places the batch on the grid (u0 + i / B) mod 1, shuffled, which
    lowers the variance of the loss estimate over a batch (as in VDM). Shape: (B,) float32.
    """
    u0 = torch.rand((), generator=generator, device=device, dtype=torch.float64)
    u = (u0 + torch.arange(batch, device=device, dtype=torch.float64) / batch) % 1.0
    if batch > 1:
        u = u[torch.randperm(batch, generator=generator, device=device)]
    return (t_min + (1.0 - t_min) * u).float()


def masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the first dimension, counting only entries where ``mask`` is 1.

    Shapes: err (B, ...), mask broadcastable to err -> (B,).
    """
    dims = tuple(range(1, err.ndim))
    if mask is None:
        return err.mean(dim=dims) if dims else err
    mask = mask.to(err.dtype).expand_as(err)
    return (err * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1.0)
