"""Pictures of deformations: warped slices with the deformation grid overlaid, Jacobian maps."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .fields import jacobian_determinant

__all__ = ["central_slice", "draw_grid", "plot_deformations"]


def central_slice(x: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """The central slice ``(C, a, b)`` of a 3D channel-first ``(C, X, Y, Z)`` tensor along ``axis``
    (2D inputs are returned as they are)."""
    if x.ndim == 3:
        return x
    return x.select(1 + axis, x.shape[1 + axis] // 2)


def draw_grid(ax, ddf2d: torch.Tensor, spacing: int = 6, **style) -> None:
    """Overlay the deformed grid lines of a 2D displacement ``(2, H, W)`` (voxels) on ``ax``.

    The pull-back warp shows, at pixel p, the content of p + u(p); lines drawn at the
    positions ``p + u(p)`` of a regular grid show where the content came from.
    """
    h, w = ddf2d.shape[1:]
    ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    y, x = ii + ddf2d[0], jj + ddf2d[1]
    style = {"color": "yellow", "linewidth": 0.5, "alpha": 0.8, **style}
    for i in range(0, h, spacing):
        ax.plot(x[i].numpy(), y[i].numpy(), **style)
    for j in range(0, w, spacing):
        ax.plot(x[:, j].numpy(), y[:, j].numpy(), **style)


def _slice_field(ddf: torch.Tensor, axis: int) -> torch.Tensor:
    """In-plane components of a 3D field's central slice along ``axis``: ``(2, a, b)``."""
    if ddf.shape[0] == 2:
        return ddf
    keep = [i for i in range(3) if i != axis]
    return central_slice(ddf, axis)[keep]


def plot_deformations(image: torch.Tensor, samples: Sequence[dict], path: str | Path | None = None, axis: int = 0,
                      grid_spacing: int | None = None):
    """A figure: the original (central slice), then per sample the warped slice with the grid
    and the Jacobian determinant map of the full field on that slice (red: contraction)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(samples)
    fig, axes = plt.subplots(2, n + 1, figsize=(3 * (n + 1), 6), squeeze=False)
    base = central_slice(torch.as_tensor(image).float(), axis)[0]
    axes[0, 0].imshow(base, cmap="gray")
    axes[0, 0].set_title("original")
    axes[1, 0].axis("off")
    spacing = grid_spacing or max(2, max(base.shape) // 16)
    for k, s in enumerate(samples, start=1):
        ddf = torch.as_tensor(s["ddf"]).float()
        warped = central_slice(torch.as_tensor(s["image"]).float(), axis)[0]
        axes[0, k].imshow(warped, cmap="gray")
        draw_grid(axes[0, k], _slice_field(ddf, axis), spacing)
        axes[0, k].set_xlim(0, warped.shape[1] - 1)
        axes[0, k].set_ylim(warped.shape[0] - 1, 0)
        axes[0, k].set_title(f"sample {k}")
        det = central_slice(jacobian_determinant(ddf[None]), axis)[0] if ddf.shape[0] == 3 else jacobian_determinant(ddf[None])[0]
        im = axes[1, k].imshow(det, cmap="RdBu", vmin=0, vmax=2)
        axes[1, k].set_title(f"det J (min {float(det.min()):.2f})")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1, 1:].tolist(), shrink=0.8)
    if path is not None:
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
    return fig
