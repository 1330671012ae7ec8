"""3D volume sampling side by side: sciogen's solvers against MONAI's schedulers on one network.

One trained network (the shipped ``volumes/brain-mri`` by default), one batch of starting
noise x_T shared by every row:

- ``MONAI DDIM 1000`` (eta 0): the deterministic probability-flow reference. Every
  deterministic row starts from the same x_T, so its samples are compared with these
  volume by volume (SSIM, PSNR, mean |difference|);
- ``MONAI DDPM 1000``: MONAI's ancestral sampler. It is stochastic, so its samples are a
  different draw of the same distribution: rows are compared with it by distribution
  measures only (intensity-histogram W1, MMD);
- ``MONAI DDIM 50``: MONAI's scheduler, through ``DiffusionInferer``-style stepping;
- ``sciogen DDIM 50``, ``sciogen DPM-Solver++(2M) 10 / 20``: the core solvers on MONAI
  timesteps (``sciogen.volumes.sample_monai``), spaced evenly (``uniform``, as MONAI's DDIM)
  or evenly in log-SNR (``log-SNR``, the shipped model's default).

Seconds per volume are wall-clock with the given threads. Peak memory is the resident set
of a fresh process that runs one row (``ru_maxrss`` of the child minus that of a child that
only loads the model), so rows do not inherit each other's peaks. The large-volume rows
generate a 128^3 volume with DPM-Solver++(2M), 10 steps (``--large-steps``): whole (the
U-Net is convolutional, with attention only at its coarsest level) and by MONAI's sliding
window with 64^3 patches and 25 % overlap (bounded memory). The network was trained on
32^3 whole heads, so a 128^3 sample is a field of head-like texture, not a finer brain:
these rows measure time and memory only.

    python benchmarks/volumes.py [--n 4] [--threads 2]    # writes benchmarks/results/volumes.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).parent / "results" / "volumes.json"

ROWS = {
    "MONAI DDIM 1000": ("monai-ddim", 1000),
    "MONAI DDPM 1000": ("monai-ddpm", 1000),
    "MONAI DDIM 50": ("monai-ddim", 50),
    "sciogen DDIM 50, uniform grid": ("ddim@uniform", 50),
    "sciogen DPM-Solver++(2M) 20, uniform grid": ("dpm++2m@uniform", 20),
    "sciogen DPM-Solver++(2M) 10, uniform grid": ("dpm++2m@uniform", 10),
    "sciogen DPM-Solver++(2M) 20, log-SNR grid": ("dpm++2m@logsnr", 20),
    "sciogen DPM-Solver++(2M) 10, log-SNR grid": ("dpm++2m@logsnr", 10),
}


def _load(model: str):
    import sciogen

    return sciogen.load(model, device="cpu")


def _noise(gen, n: int, seed: int, shape=None) -> torch.Tensor:
    shape = tuple(shape or gen.network_shape)
    return torch.randn((n, 1, *shape), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run_row(model: str, method: str, steps: int, n: int, seed: int, shape=None, patch=None) -> tuple[torch.Tensor, float]:
    """Samples ``(n, 1, *S)`` of one row and the seconds it took."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    from sciogen.volumes import sample_monai

    gen = _load(model)
    net = gen.sampling_model.eval()
    p = gen.config.process
    kwargs = dict(num_train_timesteps=p.num_train_timesteps, schedule=p.schedule, beta_start=p.beta_start,
                  beta_end=p.beta_end, prediction_type=p.prediction)
    x = _noise(gen, n, seed, shape)
    generator = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    if method.startswith("monai"):
        scheduler = DDIMScheduler(clip_sample=False, **kwargs) if method == "monai-ddim" else DDPMScheduler(
            clip_sample=False, **kwargs)
        scheduler.set_timesteps(steps)
        for k in scheduler.timesteps:
            out = net(x, timesteps=torch.full((n,), int(k), dtype=torch.long))
            x, _ = scheduler.step(out, int(k), x, generator=generator)
    elif patch is not None or shape is not None:
        x = torch.stack([v.as_tensor() for v in gen.sample(n, steps=steps, solver=method, seed=seed, shape=shape,
                                                            patch_size=patch, batch_size=n)])
    else:
        solver, _, spacing = method.partition("@")
        x = sample_monai(net, DDPMScheduler(**kwargs), x, solver=solver, steps=steps, spacing=spacing or "uniform",
                         generator=generator)
    return x.float(), time.perf_counter() - t0


def child(args) -> None:
    """One row in this process; prints a JSON line with the peak resident memory."""
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape) if args.shape else None
    patch = tuple(args.patch) if args.patch else None
    if args.method == "load-only":
        _load(args.model)
        seconds, x = 0.0, None
    else:
        x, seconds = run_row(args.model, args.method, args.steps, args.n, args.seed, shape, patch)
    if args.save and x is not None:
        torch.save(x, args.save)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def _spawn(args, method: str, steps: int, n: int, save: str | None = None, shape=None, patch=None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", args.model, "--method", method, "--steps", str(steps),
           "--n", str(n), "--seed", str(args.seed), "--threads", str(args.threads)]
    if save:
        cmd += ["--save", save]
    if shape:
        cmd += ["--shape", *map(str, shape)]
    if patch:
        cmd += ["--patch", *map(str, patch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="volumes/brain-mri")
    parser.add_argument("--n", type=int, default=4, help="volumes per row (one batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-large", action="store_true", help="skip the 128^3 rows")
    parser.add_argument("--large-steps", type=int, default=10, help="solver steps of the 128^3 rows")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import tempfile

    from sciogen.volumes.metrics import histogram_w1, mmd, psnr, ssim

    start = time.time()
    gen = _load(args.model)
    base = _spawn(args, "load-only", 1, 1)["peak_mb"]
    rows, samples = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (method, steps) in ROWS.items():
            file = str(Path(tmp) / f"{len(samples)}.pt")
            result = _spawn(args, method, steps, args.n, save=file)
            samples[name] = torch.load(file)
            rows[name] = {"network_calls": steps, "s_per_volume": result["seconds"] / args.n,
                          "peak_mb": result["peak_mb"], "peak_mb_over_loaded_model": result["peak_mb"] - base}
            print(name, f"{rows[name]['s_per_volume']:.2f} s/volume", flush=True)
    reference, ddpm = samples["MONAI DDIM 1000"], samples["MONAI DDPM 1000"]
    data_range = float(reference.max() - reference.min())
    for name, x in samples.items():
        rows[name].update({
            "ssim_to_ddim1000": float(ssim(x, reference, data_range).mean()),
            "psnr_to_ddim1000": float(psnr(x, reference, data_range).mean()),
            "mean_abs_diff_to_ddim1000": float((x - reference).abs().mean()),
            "histogram_w1_to_ddpm1000": histogram_w1(x, ddpm),
            "mmd_to_ddpm1000": mmd(x, ddpm),
        })
    calls = 1000 / 50
    overhead = rows["sciogen DDIM 50, uniform grid"]["s_per_volume"] / rows["MONAI DDIM 50"]["s_per_volume"]
    large = {}
    if not args.skip_large:
        k = args.large_steps
        for name, patch in ((f"128^3 whole, DPM-Solver++(2M) {k}", None),
                            (f"128^3 sliding window 64^3, DPM-Solver++(2M) {k}", (64, 64, 64))):
            result = _spawn(args, "dpm++2m", k, 1, shape=(128, 128, 128), patch=patch)  # the model's log-SNR grid
            large[name] = {"network_calls": k, "s_per_volume": result["seconds"], "peak_mb": result["peak_mb"],
                           "peak_mb_over_loaded_model": result["peak_mb"] - base}
            print(name, large[name], flush=True)
    report = {
        "benchmark": "3D volume sampling: sciogen solvers vs MONAI schedulers on one network, one noise batch",
        "model": {"name": args.model, "trained_steps": gen.trained_steps,
                  "parameters": sum(p.numel() for p in gen.model.parameters()), "shape": list(gen.network_shape)},
        "n_volumes": args.n, "seed": args.seed, "loaded_model_peak_mb": base,
        "rows": rows, "large": large,
        "summary": {
            "ddim1000_over_ddim50_calls": calls,
            "ssim_to_ddim1000": {name: row["ssim_to_ddim1000"] for name, row in rows.items()},
            "sciogen_ddim50_time_over_monai_ddim50": overhead,
        },
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "seconds": time.time() - start,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    for name, row in rows.items():
        print(f"{name:32s} " + "  ".join(f"{k}={v:.4g}" for k, v in row.items()))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
