"""Orthogonal slice views of volumes (matplotlib, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

__all__ = ["plot_volumes"]


def plot_volumes(volumes: Sequence[torch.Tensor], path: str | Path | None = None, titles: Sequence[str] | None = None):
    """One row per volume ``(C, X, Y, Z)`` (first channel): its central sagittal, coronal and
    axial slices (RAS voxel axes). Saves to ``path`` when given; returns the figure."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(volumes), 3, figsize=(7.5, 2.5 * len(volumes)), squeeze=False)
    for row, volume in enumerate(volumes):
        v = torch.as_tensor(volume.as_tensor() if hasattr(volume, "as_tensor") else volume)[0].float()
        lo, hi = float(v.min()), float(v.max())
        cuts = [v[v.shape[0] // 2], v[:, v.shape[1] // 2], v[:, :, v.shape[2] // 2]]
        for col, (ax, cut) in enumerate(zip(axes[row], cuts)):
            ax.imshow(cut.T.numpy(), cmap="gray", origin="lower", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0 and titles is not None:
                ax.set_ylabel(titles[row], fontsize=8)
    for ax, name in zip(axes[0], ("sagittal", "coronal", "axial")):
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig
