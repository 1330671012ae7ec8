"""Random deformation fields side by side: folding, magnitude and time per field.

Settings: a 2D slice (the central axial slice of the MNI152 T1, padded to a square and
resampled to 128^2) and the MNI152 T1 volume padded to a cube and resampled to 64^3 and
128^3. Several seeds each. Methods, every one applied to the same image:

- ``sciogen``: the shipped model (``deformation/brain-mri-2d`` / ``-3d``) with its default
  sampling (level 1, 4 recovery steps, projection to det >= 0.05);
- ``sciogen forward``: our forward process alone at t = 1 (exp of the multi-scale velocity,
  no network), for reference;
- ``MONAI Rand3DElastic`` (sigma 5, magnitude 100-300, as the issue asks) and, for 2D,
  ``MONAI Rand2DElastic`` (spacing 16, magnitude 1-2);
- ``torchio RandomElasticDeformation`` with its defaults, when torchio is installed
  (``pip install -e ".[bench]"``), and the same scaled to our mean |u|;
- ``DRDM forward``: DRDM's forward process re-implemented from the paper (Zheng et al.
  2024, Sec. 3.1, and its reference configuration): one random multi-scale displacement
  step on a control grid of a quarter of the image side (noise on 1, 1/2, 1/4, 1/8 of that
  grid, weighted by the inverse of the grid size), composed with itself
  ``n(t) = floor(2 t^1.3 / 3)`` times at level t = 80, then upsampled to the image. Its
  per-step scale is set so that its mean |u| matches ours (matched magnitude).

MONAI's displacement is read from the sampling grid its transform hands to its resampler
(exact); torchio's from the B-spline transform it builds (exact, see :func:`torchio_elastic`;
a probe image of voxel coordinates would be wrong near the border, where torchio pads with
the image minimum). Seconds per field
include warping one image. All measures: :func:`sciogen.deformation.field_metrics`
(border of 1 voxel excluded).

    python benchmarks/deformation.py [--quick]   # writes benchmarks/results/deformation.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import sciogen
from sciogen.deformation import GridMap, compose, field_metrics, warp
from sciogen.deformation.fields import fraction_to_voxels, integrate_velocity, resize_field
from sciogen.deformation.io import normalize_intensity, read_image

OUT = Path(__file__).parent / "results" / "deformation.json"
MNI = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "volumes" / "nilearn_0.14.1" / \
    "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

Method = Callable[[torch.Tensor, int], torch.Tensor]  # (image (1, *S), seed) -> ddf (1, D, *S)


def images() -> dict[str, torch.Tensor]:
    vol, _ = read_image(MNI)
    vol = normalize_intensity(vol[None])[0]
    axial = vol[:, :, :, vol.shape[3] // 2]
    return {
        "2d-128": GridMap.for_image(axial.shape[1:], (128, 128)).to_network(axial[None])[0],
        "3d-64": GridMap.for_image(vol.shape[1:], (64,) * 3).to_network(vol[None])[0],
        "3d-128": GridMap.for_image(vol.shape[1:], (128,) * 3).to_network(vol[None])[0],
    }


def sciogen_method(name: str) -> Method:
    gen = sciogen.load(name, device="cpu")

    def run(image, seed):
        ddf, _ = gen.displacement(image, 1, generator=torch.Generator().manual_seed(seed))
        warp(image[None], ddf)
        return ddf

    return run


def forward_method(name: str) -> Method:
    gen = sciogen.load(name, device="cpu")

    def run(image, seed):
        eps = gen.process.noise(1, image.shape[1:], generator=torch.Generator().manual_seed(seed))
        ddf = integrate_velocity(gen.process.velocity(eps, torch.ones(1)))
        warp(image[None], ddf)
        return ddf

    return run


class _GridRecorder:
    """Wraps a MONAI ``Resample`` and keeps the sampling grid it was given."""

    def __init__(self, resampler):
        self.resampler, self.grid = resampler, None

    def __call__(self, img, grid=None, **kwargs):
        self.grid = grid
        return self.resampler(img, grid, **kwargs)


def monai_elastic(dim: int, factor: float = 1.0) -> Method:
    """MONAI's elastic transform applied to the image; its displacement is read from the
    sampling grid it hands to its resampler (exact, no padding artefacts). ``factor``
    scales its magnitude range (its field is linear in it)."""
    from monai.transforms import Rand2DElastic, Rand3DElastic
    from monai.transforms.utils import create_grid

    def run(image, seed):
        if dim == 3:
            t = Rand3DElastic(sigma_range=(5, 5), magnitude_range=(100 * factor, 300 * factor), prob=1.0,
                              padding_mode="border")
        else:
            t = Rand2DElastic(spacing=(16, 16), magnitude_range=(1 * factor, 2 * factor), prob=1.0, padding_mode="border")
        t.set_random_state(seed)
        t.resampler = _GridRecorder(t.resampler)
        t(image)
        identity = torch.as_tensor(create_grid(spatial_size=image.shape[1:], backend="torch"))
        return (torch.as_tensor(t.resampler.grid)[:dim] - identity[:dim])[None].float()

    return run


def torchio_elastic(factor: float = 1.0) -> Method | None:
    """torchio's ``RandomElasticDeformation`` with its defaults (7 control points per axis,
    max displacement 7.5 mm, 2 locked borders). Its dense displacement is read exactly from
    the B-spline transform it builds (SimpleITK ``TransformToDisplacementField``, converted
    to voxels along the array axes; warping with it reproduces torchio's output to 1e-5).
    A coordinate-image probe would not do: torchio pads with the image minimum. ``factor``
    scales the control-point displacements (the field is linear in them)."""
    try:
        import SimpleITK as sitk
        import torchio as tio
        from torchio.data.io import nib_to_sitk
        from torchio.transforms.augmentation.spatial.random_elastic_deformation import ElasticDeformation
    except ImportError:
        return None

    def run(image, seed):
        dim = image.ndim - 1
        t = tio.RandomElasticDeformation(image_interpolation="linear")
        torch.manual_seed(seed)
        control = factor * t.get_params(t.num_control_points, t.max_displacement, t.num_locked_borders)
        volume = image[0] if dim == 3 else image[0][..., None]
        reference = nib_to_sitk(volume[None].numpy(), np.eye(4), force_3d=True)
        with warnings.catch_warnings():  # its "folding may occur" warning for large factors
            warnings.simplefilter("ignore", RuntimeWarning)
            bspline = ElasticDeformation(control, t.max_displacement).get_bspline_transform(reference)
        field = sitk.TransformToDisplacementField(bspline, sitk.sitkVectorFloat64, reference.GetSize(),
                                                  reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
        direction = np.array(reference.GetDirection()).reshape(3, 3)
        d = sitk.GetArrayFromImage(field) @ np.linalg.inv(direction).T / np.array(reference.GetSpacing())
        d = torch.as_tensor(d.transpose(3, 2, 1, 0).copy()).float()  # (3, x, y, z): torchio's array axes
        ddf = (d if dim == 3 else d[:2, ..., 0])[None]
        warp(image[None], ddf)
        return ddf

    return run


def drdm_forward(scale: float, level: int = 80) -> Method:
    """DRDM's forward deformation at level ``level`` (module docstring)."""

    def run(image, seed):
        shape = image.shape[1:]
        d = len(shape)
        ctl = max(8, shape[0] // 4)
        g = torch.Generator().manual_seed(seed)
        grids = [ctl // 2**i for i in range(4)]
        step = torch.zeros(1, d, *(ctl,) * d)
        for size in grids:  # DRDM: noise per control grid, weighted by ctl / size, upsampled
            noise = torch.randn(1, d, *(size,) * d, generator=g) * (ctl / size)
            step += F.interpolate(noise, size=(ctl,) * d, mode="bilinear" if d == 2 else "trilinear", align_corners=False)
        step = fraction_to_voxels(scale * step)
        ddf = torch.zeros_like(step)
        for _ in range(max(1, math.floor(2 * level**1.3 / 3))):
            ddf = compose(ddf, step)  # ddf <- step + ddf(p + step(p))
        ddf = resize_field(ddf, shape)
        warp(image[None], ddf)
        return ddf

    return run


def calibrate_drdm(image: torch.Tensor, target_mean_pct: float) -> float:
    """The per-step scale whose DRDM forward field has mean |u| = target (seed 0), by bisection in log scale."""
    lo, hi = 1e-6, 1e-2
    for _ in range(14):
        mid = math.sqrt(lo * hi)
        if field_metrics(drdm_forward(mid)(image, 0))["mean_disp_pct"] < target_mean_pct:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def measure(method: Method, image: torch.Tensor, seeds: list[int]) -> dict[str, float]:
    rows, seconds = [], []
    for seed in seeds:
        start = time.perf_counter()
        ddf = method(image, seed)
        seconds.append(time.perf_counter() - start)
        rows.append(field_metrics(ddf))
    out = {k: sum(r[k] for r in rows) / len(rows) for k in ("folding_pct", "mean_disp_pct", "max_disp_pct", "p1_det")}
    out["max_folding_pct"] = max(r["folding_pct"] for r in rows)
    out["min_det"] = min(r["min_det"] for r in rows)
    out["seconds_per_field"] = sum(seconds) / len(seconds)
    return out


HELD_OUT = {  # brain images the shipped models never saw in training
    2: ("dipy_1.12.1/S0_10slices.nii.gz", "slices 2-7 of dipy's S0_10slices (b0 EPI)"),
    3: ("nibabel_5.4.2/example4d.nii.gz", "first volume of nibabel's example4d (EPI)"),
}


def held_out(dim: int, shape) -> torch.Tensor:
    path = MNI.parents[1] / HELD_OUT[dim][0]
    vol, _ = read_image(path)
    vol = normalize_intensity(vol[:1][None])[0]
    items = [vol[..., k] for k in range(2, 8)] if dim == 2 else [vol]
    return torch.cat([GridMap.for_image(x.shape[1:], shape).to_network(x[None]) for x in items])


@torch.no_grad()
def recovery_quality(name: str, levels=(0.25, 0.5, 1.0), repeats: int = 4) -> list[dict]:
    """The recovery loss terms of the shipped model on held-out images, at fixed levels,
    against predicting no recovery (RSE 1, cosine term 1)."""
    gen = sciogen.load(name, device="cpu")
    x0 = held_out(gen.spatial_dims, gen.network_shape)
    model = gen.sampling_model.eval()
    rows = []
    for level in levels:
        process = gen.process
        terms = {"rse": []}
        for r in range(repeats):
            g = torch.Generator().manual_seed(r)
            t = torch.full((x0.shape[0],), level)
            x_t, v = process.deform(x0, t, generator=g)
            target = integrate_velocity(-v)
            pred = integrate_velocity(process.predict_velocity(model, x_t, t))
            w = process.loss_weights(x0)
            err = (w * (pred - target).square().sum(1)).flatten(1).sum(1) / (w * target.square().sum(1)).flatten(1).sum(1)
            terms["rse"].append(float(err.mean()))
        rows.append({"model": name, "held_out": HELD_OUT[gen.spatial_dims][1], "level": level,
                     "relative_squared_error": sum(terms["rse"]) / repeats, "no_recovery": 1.0})
        print(f"{name} level {level}: relative squared error of the recovery {rows[-1]['relative_squared_error']:.3f} "
              f"(no recovery: 1)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, no 128^3")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seeds = list(range(1 if args.quick else args.seeds))
    results = []
    for setting, image in images().items():
        if args.quick and setting == "3d-128":
            continue
        dim = image.ndim - 1
        model = "deformation/brain-mri-2d" if dim == 2 else "deformation/brain-mri-3d"
        methods: dict[str, Method | None] = {
            f"sciogen ({model}, 4 steps)": sciogen_method(model),
            "sciogen forward only (t=1)": forward_method(model),
            "MONAI Rand3DElastic (sigma 5, magnitude 100-300)" if dim == 3 else "MONAI Rand2DElastic (spacing 16, magnitude 1-2)":
                monai_elastic(dim),
            "torchio RandomElasticDeformation (defaults: 7 control points, 7.5 voxels)": torchio_elastic(),
        }
        ours = None
        for name, method in methods.items():
            if method is None:
                results.append({"setting": setting, "method": name, "note": "not installed"})
                print(f"{setting:7s} {name}: not installed")
                continue
            row = {"setting": setting, "method": name, "seeds": len(seeds), **measure(method, image, seeds)}
            ours = ours or row
            results.append(row)
            print(_fmt(row))
            if name.startswith(("MONAI", "torchio")):  # the same, scaled to our mean |u| (matched magnitude)
                factor = ours["mean_disp_pct"] / row["mean_disp_pct"]
                scaled = monai_elastic(dim, factor) if name.startswith("MONAI") else torchio_elastic(factor)
                matched = {"setting": setting, "method": f"{name.split(' (')[0]} matched to our mean |u| (magnitude x {factor:.2f})",
                           "seeds": len(seeds), **measure(scaled, image, seeds)}
                results.append(matched)
                print(_fmt(matched))
        scale = calibrate_drdm(image, ours["mean_disp_pct"])
        row = {"setting": setting, "method": f"DRDM forward (t=80, matched mean |u|, step scale {scale:.2e})",
               "seeds": len(seeds), **measure(drdm_forward(scale), image, seeds)}
        results.append(row)
        print(_fmt(row))
    recovery = [row for name in ("deformation/brain-mri-2d", "deformation/brain-mri-3d") for row in recovery_quality(name)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads (2 shared CPU cores)",
        "quick": args.quick, "results": results, "recovery_on_held_out_images": recovery,
    }, indent=2))
    print(f"wrote {OUT}")


def _fmt(row: dict) -> str:
    return (f"{row['setting']:7s} {row['method'][:60]:60s} fold {row['folding_pct']:.4f}% (max {row['max_folding_pct']:.4f}%) "
            f"min det {row['min_det']:.3f} mean|u| {row['mean_disp_pct']:.2f}% max|u| {row['max_disp_pct']:.2f}% "
            f"{row['seconds_per_field']:.2f} s")


if __name__ == "__main__":
    main()
