"""``sciogen demo`` for the volumes domain: the shipped brain model samples and augments.

Draws a few 32^3 brains with ``volumes/brain-mri`` (DPM-Solver++(2M), 20 steps), makes
SDEdit variants of a real T1 volume (the registry's MNI152 2009 template when the dataset
cache holds it: ``sciogen.data.fetch("mni152_2009")`` puts it there; else one of the samples), writes them as
NIfTI with a picture of orthogonal slices (``brain-mri.png``), and returns one row of
metrics: diversity (pairwise MS-SSIM), closeness to the nearest training brain (SSIM),
the intensity-histogram distance to the training brains, and seconds per volume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]

MODEL = "volumes/brain-mri"
_T1 = ("mni152_2009", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")


def _cached_t1() -> Path | None:
    """The registry's MNI152 T1 in the dataset cache, or None (the demo never downloads)."""
    from sciogen.data import cache_dir

    path = cache_dir() / _T1[0] / _T1[1]
    return path if path.is_file() else None


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Sample and augment with the shipped model; write files to ``out_dir``; return rows."""
    from sciogen.registry import available, load

    from .generator import VolumeGenerator
    from .metrics import evaluate
    from .plots import plot_volumes
    from .training import load_volume

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if MODEL not in available():
        rows = [{"model": "none shipped", "n": 0}]
        (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
        return rows
    gen = load(MODEL, device="cpu")
    n = 2 if quick else 4
    start = time.perf_counter()
    samples = gen.sample(n, steps=20, seed=0, batch_size=n)
    seconds = (time.perf_counter() - start) / n
    VolumeGenerator.write_samples(samples, out_dir / "brain-mri")
    t1 = _cached_t1()
    image = load_volume(t1) if t1 is not None else samples[0]
    variants = gen.augment(image, level=0.3, n=2, seed=0)
    VolumeGenerator.write_samples(variants, out_dir / "brain-mri-augmented")
    try:
        plot_volumes([*samples[:2], image, variants[0]], out_dir / "brain-mri.png",
                     titles=["sample 0", "sample 1", "input", "SDEdit 0.3"])
    except ImportError:  # matplotlib is optional
        pass
    reference = gen.reference_data()
    m = evaluate(samples, reference)
    row = {"model": MODEL, "n": n, "shape": "x".join(map(str, samples[0].shape[1:])), "s_per_volume": seconds,
           "diversity_ms_ssim": m.get("diversity_ms_ssim"), "nearest_ssim": m.get("nearest_ssim"),
           "histogram_w1": m.get("histogram_w1"), "augmented": "MNI152 T1" if t1 is not None else "a sample"}
    (out_dir / "results.json").write_text(json.dumps([row], indent=2))
    return [row]
