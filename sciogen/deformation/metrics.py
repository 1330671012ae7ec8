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
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .fields import check_field, jacobian_determinant, voxels_to_fraction

__all__ = ["field_metrics", "folding_fraction", "interior", "evaluate", "METRICS"]

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
