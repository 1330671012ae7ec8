"""Conditional and latent volume models on the real brains, each against its plain anchor.

Two models are trained from their recipes (resumed when their run folder has checkpoints):

- **super-resolution** (``domains/volumes/brain_mri_superres.yaml``): the pixel U-Net
  conditioned on the volume averaged over 2^3 blocks. Trained on three brains; the voxelmorph
  scan is held out. For each brain (held out, and the training ones for comparison) the
  condition is made from its 32^3 network-grid volume; rows compare the truth with the
  trilinear upsampling of the condition (the anchor), with each of ``--n`` super-resolved
  samples and with their mean: PSNR (data range 2), SSIM, mean |error|.
- **latent diffusion** (``domains/volumes/brain_mri_latent.yaml``): MONAI ``AutoencoderKL``
  then the U-Net on its 8^3 latents, against the shipped pixel model ``volumes/brain-mri``:
  autoencoder reconstruction PSNR / SSIM of the four brains, seconds per sample (same
  solver and steps), and the sample measures of ``sciogen.volumes.evaluate`` against the
  four brains.

    python benchmarks/volumes_conditional.py [--n 4] [--threads 2] [--runs runs]
        # writes benchmarks/results/volumes_conditional.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "volumes_conditional.json"
HELD_OUT = "voxelmorph/test_scan.npz:vol"


def train(recipe: Path, run_dir: Path, steps: int | None = None):
    from sciogen.registry import load_run_config
    from sciogen.train.checkpoint import latest_checkpoint
    from sciogen.volumes import VolumeGenerator

    overrides = [f"train.steps={steps}", f"latent.steps={steps}", "train.checkpoint_every=1"] if steps else []
    config = load_run_config(recipe, [o for o in overrides if "latent" not in o or "latent" in recipe.name])
    config.data.root = str(ROOT / config.data.root)
    gen = VolumeGenerator(config)
    resume = latest_checkpoint(run_dir) is not None or latest_checkpoint(run_dir / "autoencoder") is not None
    start = time.perf_counter()
    gen.fit(run_dir=run_dir, resume=resume)
    return gen, time.perf_counter() - start


def brains(config, files):
    import dataclasses

    from sciogen.imaging.grid import NetworkGrid
    from sciogen.volumes.training import load_volume, resolve_files

    d = dataclasses.replace(config, files=list(files))
    return torch.stack([NetworkGrid(load_volume(p, d.npz_axcodes), d.shape, d.percentiles, d.margin).network.as_tensor()
                        for p in resolve_files(d)])


def scores(x: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    from sciogen.volumes import paired_error

    return paired_error(x, truth, data_range=2.0)


def superres(args) -> dict:
    from sciogen.volumes.conditioning import degrade

    gen, seconds = train(ROOT / "domains/volumes/brain_mri_superres.yaml", Path(args.runs) / "volumes-superres",
                          args.train_steps)
    data = gen.config.data
    model = gen.sampling_model.eval()
    out = {"recipe": "domains/volumes/brain_mri_superres.yaml", "trained_steps": gen.trained_steps,
           "train_seconds_this_call": seconds, "held_out": HELD_OUT, "brains": {}}
    files = [HELD_OUT, *data.files]
    volumes = brains(data, files)
    for name, truth in zip(files, volumes):
        truth = truth[None]
        condition = degrade(truth, gen.config.condition.factor)
        generator = torch.Generator().manual_seed(0)
        samples = _superres_samples(gen, model, condition, args.n, args.steps, generator)
        row = {"held_out": name == HELD_OUT, "trilinear": scores(condition, truth),
               "samples": scores(samples, truth.expand_as(samples)),
               "sample_mean": scores(samples.mean(0, keepdim=True), truth)}
        out["brains"][name] = row
        print(f"{name:70s} trilinear {row['trilinear']['psnr']:.2f} dB  samples {row['samples']['psnr']:.2f} dB  "
              f"mean {row['sample_mean']['psnr']:.2f} dB  (SSIM {row['trilinear']['ssim']:.3f} / "
              f"{row['samples']['ssim']:.3f} / {row['sample_mean']['ssim']:.3f})")
    return out


@torch.no_grad()
def _superres_samples(gen, model, condition, n, steps, generator):
    """``n`` samples given a network-grid condition (no resampling of the input)."""
    from sciogen.diffusion import sample
    from sciogen.volumes import schedule_from_monai, timestep_grid
    from sciogen.volumes.sampling import denoiser

    schedule, prediction = schedule_from_monai(gen.scheduler())
    noise = torch.randn((n, 1, *gen.network_shape), generator=generator)
    grid = timestep_grid(schedule.num_steps, steps, spacing="logsnr", schedule=schedule)
    x = sample(denoiser(gen, model, None, 0.25), noise, schedule=schedule, prediction=prediction, solver="dpm++2m",
               grid=grid, generator=generator, image=condition.expand(n, -1, -1, -1, -1))
    return x.clamp(-1.0, 1.0)


def latent(args) -> dict:
    import sciogen
    from sciogen.volumes import evaluate

    gen, seconds = train(ROOT / "domains/volumes/brain_mri_latent.yaml", Path(args.runs) / "volumes-latent",
                          args.train_steps)
    data = gen.config.data
    truth = brains(data, data.files)
    model = gen.sampling_model.eval()
    reconstruction = model.decode(model.encode(truth))
    out = {"recipe": "domains/volumes/brain_mri_latent.yaml", "trained_steps": gen.trained_steps,
           "autoencoder_steps": gen.config.latent.steps, "train_seconds_this_call": seconds,
           "autoencoder_reconstruction": scores(reconstruction.clamp(-1, 1), truth),
           "latent_shape": list(model.encode(truth[:1]).shape[1:]), "rows": {}}
    pixel = sciogen.load("volumes/brain-mri", device="cpu")
    for label, g in (("pixel (volumes/brain-mri)", pixel), ("latent", gen)):
        g.sample(1, steps=2, seed=99)  # warm-up
        start = time.perf_counter()
        samples = g.sample(args.n, steps=args.steps, seed=0, solver="dpm++2m")
        elapsed = (time.perf_counter() - start) / args.n
        metrics = evaluate(samples, truth)
        out["rows"][label] = {"s_per_volume": elapsed, "parameters": sum(p.numel() for p in g.model.parameters()),
                              **metrics}
        print(f"{label:28s} {elapsed:.3f} s/volume  nearest SSIM {metrics['nearest_ssim']:.3f}  "
              f"W1 {metrics['histogram_w1']:.3f}  MMD {metrics['mmd']:.3f}  diversity {metrics['diversity_ms_ssim']:.3f}")
    print("autoencoder reconstruction", out["autoencoder_reconstruction"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="samples per row")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver++(2M) steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="folder of the training runs")
    parser.add_argument("--train-steps", type=int, help="override the recipes' steps (a smoke run; not for results)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--part", choices=("all", "superres", "latent"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.update({"benchmark": "volumes: super-resolution vs trilinear, latent vs pixel diffusion",
                    "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                                "torch": torch.__version__},
                    "n": args.n, "steps": args.steps, "seed": 0})
    if args.part in ("all", "superres"):
        results["superres"] = superres(args)
        out.write_text(json.dumps(results, indent=2))
    if args.part in ("all", "latent"):
        results["latent"] = latent(args)
        out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
