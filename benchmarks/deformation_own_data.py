"""How many of your images does a recovery network need? Train on K slices, score on held-out images.

For each K, writes K axial slices of a brain volume (evenly spaced through its central 60 %)
as 2D NIfTI files into a folder, trains the default recipe on them through the own-data path
(``sciogen.fit("deformation", data=folder)``: 64 x 64 grid, RecoveryUNet 16/32/64/64) for a
fixed number of steps, and measures the relative squared error of the recovery of level-1
deformations of held-out images (slices 2-7 of another scan, 4 draws; predicting no
recovery scores 1), as ``tests/test_deformation_generator.py`` does for the shipped models.

    python benchmarks/deformation_own_data.py --train-volume MNI_T1.nii.gz \
        --held-out S0_10slices.nii.gz --counts 1 8 64 --steps 600 --out benchmarks/results/deformation_own_data.json \
        --set data.shape=[32,32] --set model.channels=[8,16,32]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

import sciogen
from sciogen.deformation import GridMap, integrate_velocity
from sciogen.deformation.io import normalize_intensity, read_image


def write_slices(volume: Path, count: int, folder: Path) -> None:
    vol = read_image(volume)[0][0].numpy()
    n = vol.shape[2]
    for k in np.linspace(0.2 * n, 0.8 * n, count).round().astype(int) if count > 1 else [n // 2]:
        nib.save(nib.Nifti1Image(vol[:, :, k].astype(np.float32), np.eye(4)), str(folder / f"slice_{k:03d}.nii.gz"))


@torch.no_grad()
def recovery_error(gen, held_out: Path, repeats: int = 4) -> float:
    vol = normalize_intensity(read_image(held_out)[0][:1][None])[0]
    x0 = torch.cat([GridMap.for_image(vol.shape[1:3], gen.network_shape).to_network(vol[..., k][None])
                    for k in range(2, 8)])
    model, process, errors = gen.sampling_model.eval(), gen.process, []
    for r in range(repeats):
        t = torch.ones(x0.shape[0])
        x_t, v = process.deform(x0, t, generator=torch.Generator().manual_seed(r))
        target = integrate_velocity(-v)
        pred = integrate_velocity(process.predict_velocity(model, x_t, t))
        w = process.loss_weights(x0)
        errors.append(float(((w * (pred - target).square().sum(1)).flatten(1).sum(1)
                             / (w * target.square().sum(1)).flatten(1).sum(1)).mean()))
    return sum(errors) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-volume", type=Path, required=True)
    parser.add_argument("--held-out", type=Path, required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deformation_own_data.json"))
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            write_slices(args.train_volume, count, folder)
            start = time.perf_counter()
            gen = sciogen.fit("deformation", data=folder, run_dir=Path(tmp) / "run",
                              overrides=[f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}",
                                         "train.log_every=50", *args.set])
            seconds = time.perf_counter() - start
            rows.append({"images": count, "steps": args.steps, "overrides": args.set, "batch_size": gen.config.train.batch_size,
                         "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / args.steps, 3),
                         "threads": torch.get_num_threads(),
                         "held_out_recovery_error_level_1": round(recovery_error(gen, args.held_out), 3)})
            print(rows[-1], flush=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
