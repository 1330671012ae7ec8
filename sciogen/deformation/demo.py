"""``sciogen demo`` for the deformation domain: the shipped models deform a brain image.

For each shipped model (2D and 3D) the demo deforms one image a few times (the MNI152
template when the dataset cache holds the registry's ``mni152_2009``, else a synthetic
head from :func:`~sciogen.deformation.training.brain_phantom`), writes the
warped images, labels and displacement fields as NIfTI, a picture of the warped slices
with the deformation grid and Jacobian maps (``<model>.png``), and returns one row of
metrics per model: folding %, smallest determinant, mean / max |u| in % of the side,
and seconds per field on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from .io import read_image
from .training import brain_phantom

__all__ = ["run_demo", "demo_image"]

MODELS = ("deformation/brain-mri-2d", "deformation/brain-mri-3d")
_MNI = ("mni152_2009", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")


def demo_image(dim: int, size: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(image (1, *S), labels or None, description) for the demo: MNI152 if the dataset cache
    has it (``sciogen.data.fetch("mni152_2009")`` puts it there), else a phantom."""
    from sciogen.data import cache_dir

    mni = cache_dir() / _MNI[0] / _MNI[1]
    if mni.is_file():
        vol, _ = read_image(mni)
        shape = [round(n * size / max(vol.shape[1:])) for n in vol.shape[1:]]
        vol = torch.nn.functional.interpolate(vol[None], size=shape, mode="trilinear", align_corners=True)[0]
        if dim == 2:
            vol = vol[:, :, :, shape[2] // 2]
        return vol, None, f"MNI152 T1 at {'x'.join(map(str, vol.shape[1:]))}"
    image, label = brain_phantom((size,) * dim)
    return image, label.float(), f"synthetic head phantom {size}^{dim}"


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Deform a brain image with each shipped model; write files to ``out_dir``; return rows."""
    from sciogen.registry import available, load

    from .generator import DeformationGenerator
    from .metrics import evaluate
    from .plots import plot_deformations

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in (m for m in MODELS if m in available()):
        gen = load(name, device="cpu")
        dim = gen.spatial_dims
        size = (96 if dim == 2 else 64) if quick else (128 if dim == 2 else 96)
        n = 2 if quick else 4
        image, label, what = demo_image(dim, size)
        start = time.perf_counter()
        samples = gen.deform(image, label=label, n=n, seed=0, batch_size=n)
        seconds = (time.perf_counter() - start) / n
        stem = name.split("/")[1]
        DeformationGenerator.write_samples(samples, out_dir / stem)
        try:
            plot_deformations(image, samples, out_dir / f"{stem}.png")
        except ImportError:  # matplotlib is optional
            pass
        m = evaluate(samples)
        rows.append({"model": name, "image": what, "n": n, "folding_pct": m["folding_pct"], "min_det": m["min_det"],
                     "mean_disp_pct": m["mean_disp_pct"], "max_disp_pct": m["max_disp_pct"], "s_per_field": seconds})
    if not rows:
        rows.append({"model": "none shipped", "image": "-", "n": 0})
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    return rows
