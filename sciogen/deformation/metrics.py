"""Quality of displacement fields: folding, Jacobian determinants, magnitude, smoothness.

All measures take displacements in **voxels**, ``(B, D, *S)`` (or ``(D, *S)``), and use the
Jacobian determinant ``det(I + grad u)`` from central differences (:func:`~sciogen.deformation.fields.jacobian_determinant`),
on the interior only: a border of ``border`` voxels (default 1, where central differences
do not exist) is excluded. This matches SimpleITK's
``DisplacementFieldJacobianDeterminantFilter`` inside the image (tested), and DRDM's and
MONAI's use of "negative Jacobian determinant" as the folding measure.

- ``folding_pct``: % of interior voxels with ``det <= 0`` (DRDM reports this, in %).
- ``min_det``, ``p1_det``: smallest and 1st-percentile determinant.
- ``mean_disp_pct``, ``max_disp_pct``: mean and maximum ``|u|`` as a % of the image side,
  ``|u| = sqrt(sum_i (u_i / S_i)^2)`` (isotropic images: |u| in voxels / side).
- ``mean_disp_vox``, ``max_disp_vox``: the same in voxels.
- ``bending_energy``: MONAI's ``BendingEnergyLoss`` (mean squared second derivatives, voxel
  units, not normalised).

Against a reference (``sciogen evaluate deformation OUT --reference ...``):
:func:`compare_images` (deformed images vs the training images: foreground fraction,
intensities, sharpness) and :func:`compare_fields` (per-field statistics vs reference fields).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .fields import check_field, jacobian_determinant, voxels_to_fraction

__all__ = ["field_metrics", "folding_fraction", "interior", "evaluate", "METRICS", "field_stats", "compare_fields",
           "image_features", "compare_images", "wasserstein_1d"]

METRICS = ("folding_pct", "min_det", "p1_det", "mean_disp_pct", "max_disp_pct", "mean_disp_vox", "max_disp_vox",
           "bending_energy")


def interior(x: torch.Tensor, border: int, spatial: int) -> torch.Tensor:
    """``x[..., b:-b, b:-b(, b:-b)]`` over the last ``spatial`` dimensions."""
    if border <= 0:
        return x
    index = (Ellipsis, *[slice(border, -border)] * spatial)
    return x[index]


def _batch(ddf: torch.Tensor) -> torch.Tensor:
    ddf = torch.as_tensor(ddf).float()
    batched = ddf.ndim in (4, 5) and ddf.shape[1] == ddf.ndim - 2
    if not batched and ddf.ndim in (3, 4) and ddf.shape[0] == ddf.ndim - 1:  # one field (D, *S)
        ddf = ddf[None]
    check_field(ddf, "ddf")
    return ddf


def folding_fraction(ddf: torch.Tensor, border: int = 1) -> torch.Tensor:
    """Fraction (not %) of interior voxels with ``det(I + grad u) <= 0``, per field ``(B,)``."""
    ddf = _batch(ddf)
    det = interior(jacobian_determinant(ddf), border, ddf.shape[1])
    return (det <= 0).float().flatten(1).mean(1)


def _bending_energy(ddf: torch.Tensor) -> float:
    if min(ddf.shape[2:]) <= 4:
        return float("nan")
    import warnings

    from monai.losses import BendingEnergyLoss

    with warnings.catch_warnings():  # MONAI 1.6 indexes with lists, which torch warns about
        warnings.simplefilter("ignore", UserWarning)
        return float(BendingEnergyLoss(normalize=False)(ddf))


def field_metrics(ddf: torch.Tensor, border: int = 1) -> dict[str, float]:
    """The measures of the module docstring for a batch of fields (pooled over the batch)."""
    ddf = _batch(ddf)
    d = ddf.shape[1]
    det = interior(jacobian_determinant(ddf), border, d).flatten()
    mag_frac = voxels_to_fraction(ddf).norm(dim=1)
    mag_vox = ddf.norm(dim=1)
    k = max(1, int(round(0.01 * det.numel())))
    return {
        "folding_pct": float((det <= 0).float().mean()) * 100.0,
        "min_det": float(det.min()),
        "p1_det": float(det.kthvalue(k).values),
        "mean_disp_pct": float(mag_frac.mean()) * 100.0,
        "max_disp_pct": float(mag_frac.flatten(1).max(1).values.mean()) * 100.0,
        "mean_disp_vox": float(mag_vox.mean()),
        "max_disp_vox": float(mag_vox.flatten(1).max(1).values.mean()),
        "bending_energy": _bending_energy(ddf),
    }


def evaluate(samples: Any, border: int = 1) -> dict[str, float]:
    """Metrics of deformation samples: a tensor ``(B, D, *S)``, a list of fields ``(D, *S)``
    (any sizes), or a list of sample dicts with a ``"ddf"`` entry (what the generator and
    the transforms return). Per-field measures are averaged; ``min_det`` is the minimum,
    ``max_folding_pct`` the worst field; ``n`` counts the fields.

    ``max_disp_pct`` / ``max_disp_vox`` average each field's maximum.
    """
    fields = _fields(samples)
    if not fields:
        raise ValueError("no displacement fields to evaluate")
    rows = [field_metrics(f, border) for f in fields]
    out = {key: sum(r[key] for r in rows) / len(rows) for key in METRICS}
    out["min_det"] = min(r["min_det"] for r in rows)
    out["max_folding_pct"] = max(r["folding_pct"] for r in rows)
    out["n"] = float(len(rows))
    return out


def _fields(samples: Any) -> list[torch.Tensor]:
    if isinstance(samples, torch.Tensor):
        batch = _batch(samples)
        return [batch[i : i + 1] for i in range(batch.shape[0])]
    if isinstance(samples, dict):
        samples = [samples]
    out = []
    for item in samples if isinstance(samples, Iterable) else [samples]:
        field = item["ddf"] if isinstance(item, dict) else item
        out.append(_batch(torch.as_tensor(field)))
    return out


# -- against a reference: the user's training images, or reference fields --------------------------

FIELD_STATS = ("mean_disp_pct", "max_disp_pct", "det_std")


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wasserstein-1 distance between the empirical distributions of two 1D samples,
    ``integral |F_a(x) - F_b(x)| dx`` (exact; as ``scipy.stats.wasserstein_distance``)."""
    a, b = a.double().flatten().sort().values, b.double().flatten().sort().values
    points = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a, points[:-1], right=True) / a.numel()
    cdf_b = torch.searchsorted(b, points[:-1], right=True) / b.numel()
    return float(((cdf_a - cdf_b).abs() * points.diff()).sum())


def field_stats(ddf: torch.Tensor, border: int = 1) -> dict[str, float]:
    """Per-field statistics compared with a reference: mean / max ``|u|`` (% of the side) and
    the standard deviation of ``det(I + grad u)`` over the interior (the spread of local volume change)."""
    ddf = _batch(ddf)
    det = interior(jacobian_determinant(ddf), border, ddf.shape[1])
    mag = voxels_to_fraction(ddf).norm(dim=1)
    return {"mean_disp_pct": float(mag.mean()) * 100.0, "max_disp_pct": float(mag.max()) * 100.0,
            "det_std": float(det.std())}


def compare_fields(samples: Any, reference: Any) -> dict[str, float]:
    """Distances between the per-field statistics (:func:`field_stats`) of ``samples`` and of
    ``reference`` fields (e.g. registration fields of your images): for each statistic its
    reference mean (``ref_<stat>``) and the Wasserstein-1 distance of the two sets (``<stat>_w1``)."""
    ours = [field_stats(f) for f in _fields(samples)]
    theirs = [field_stats(f) for f in _fields(reference)]
    if not theirs:
        raise ValueError("no reference fields to compare with")
    out: dict[str, float] = {}
    for key in FIELD_STATS:
        a = torch.tensor([r[key] for r in ours])
        b = torch.tensor([r[key] for r in theirs])
        out[f"ref_{key}"] = float(b.mean())
        out[f"{key}_w1"] = wasserstein_1d(a, b)
    out["ref_n"] = float(len(theirs))
    return out


def image_features(images: torch.Tensor, threshold: float = 0.1) -> dict[str, torch.Tensor]:
    """Per-image features of ``(N, 1, *S)`` images in [0, 1] on a common grid: ``fg_fraction``
    (fraction of voxels above ``threshold``) and ``sharpness`` (mean |forward difference|)."""
    x = images[:, 0].float()
    grads = [x.diff(dim=k).abs().flatten(1).mean(1) for k in range(1, x.ndim)]
    return {"fg_fraction": (x > threshold).float().flatten(1).mean(1), "sharpness": sum(grads) / len(grads)}


def compare_images(images: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Deformed images against reference images, both ``(N, 1, *S)`` in [0, 1] on the same grid.

    - ``fg_fraction`` / ``ref_fg_fraction``: mean foreground fraction (intensity > 0.1), and
      ``fg_fraction_w1`` the Wasserstein-1 distance of the two sets: a deformation that shrinks
      or swells the object beyond the range of the reference shows here;
    - ``intensity_w1``: Wasserstein-1 distance of the pooled intensities;
    - ``sharpness_ratio``: mean |gradient| of the images / of the reference (< 1: blurred).
    """
    if images.shape[2:] != reference.shape[2:]:
        raise ValueError(f"images {tuple(images.shape[2:])} and reference {tuple(reference.shape[2:])} "
                         "are on different grids")
    ours, theirs = image_features(images), image_features(reference)
    return {
        "fg_fraction": float(ours["fg_fraction"].mean()),
        "ref_fg_fraction": float(theirs["fg_fraction"].mean()),
        "fg_fraction_w1": wasserstein_1d(ours["fg_fraction"], theirs["fg_fraction"]),
        "intensity_w1": wasserstein_1d(_subsample(images), _subsample(reference)),
        "sharpness_ratio": float(ours["sharpness"].mean() / theirs["sharpness"].mean().clamp_min(1e-12)),
        "ref_n": float(reference.shape[0]),
    }


def _subsample(x: torch.Tensor, n: int = 200_000) -> torch.Tensor:
    flat = x[:, :1].flatten()
    if flat.numel() <= n:
        return flat
    return flat[torch.linspace(0, flat.numel() - 1, n).long()]
