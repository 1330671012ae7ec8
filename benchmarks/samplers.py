"""Solver accuracy and overhead on an exact-score problem, side by side with diffusers.

The data is the core's fixed 2-D Gaussian mixture (``GaussianMixture.example()``), whose
denoiser E[x0 | x_t] is known in closed form, on DDPM's 1000-step linear beta table (the
table diffusers' schedulers use by default). Every solver starts from the same noise at
t = 1 (discrete step 999) and integrates the probability-flow ODE to the clean end; the
error is the mean Euclidean distance to a 2000-step DPM-Solver++(3M) reference of the
same ODE. diffusers' ``DPMSolverMultistepScheduler`` (DPM-Solver++ 2M, its defaults) and
``DDIMScheduler`` (eta = 0, ``timestep_spacing="trailing"`` so it starts at step 999 like
the others, no clipping) are driven by the same model.

Overhead per step is the wall time outside the model calls divided by the number of
steps, measured on a 2-D batch and on an image-sized state with a trivial model.

    python benchmarks/samplers.py            # writes benchmarks/results/samplers.json
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from sciogen.diffusion import DiscreteSchedule, GaussianMixture, sample

OUT = Path(__file__).parent / "results" / "samplers.json"
STEPS = [5, 10, 20, 50]
N_TRAIN = 1000


class TimedModel:
    """Calls ``fn`` and accumulates the seconds spent inside it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def diffusers_run(scheduler, model_eps, x_T, steps):
    """Drive a diffusers scheduler; ``model_eps(x, t_continuous)`` predicts eps."""
    scheduler.set_timesteps(steps)
    x = x_T.clone()
    for k in scheduler.timesteps:
        t = torch.full((x.shape[0],), (float(k) + 1.0) / N_TRAIN)
        x = scheduler.step(model_eps(x, t), k, x).prev_sample
    return x


def diffusers_grid(scheduler, steps):
    """The continuous-time grid a diffusers scheduler uses (step k at t = (k + 1) / N, then 0)."""
    scheduler.set_timesteps(steps)
    ts = [(float(k) + 1.0) / N_TRAIN for k in scheduler.timesteps]
    return torch.tensor(ts + [0.0], dtype=torch.float64)


def make_schedulers():
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    return {
        "diffusers DPMSolverMultistep (2M)": DPMSolverMultistepScheduler(num_train_timesteps=N_TRAIN),
        "diffusers DDIM (trailing)": DDIMScheduler(
            num_train_timesteps=N_TRAIN, clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=True
        ),
    }


def accuracy(n: int = 4096) -> dict:
    schedule = DiscreteSchedule.linear(N_TRAIN)
    gmm = GaussianMixture.example()
    model = gmm.denoiser(schedule, "eps")
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    ref = sample(model, x_T.double(), schedule=schedule, prediction="eps", solver="dpm++3m", steps=2000).float()

    def err(x):
        return float((x - ref).norm(dim=1).mean())

    rows = {}
    for solver in ["ddim", "dpm++2m", "dpm++3m", "heun"]:
        rows[f"sciogen {solver}"] = {
            s: err(sample(model, x_T, schedule=schedule, prediction="eps", solver=solver, steps=s,
                          generator=torch.Generator().manual_seed(1)))
            for s in STEPS
        }
    for name, scheduler in make_schedulers().items():
        rows[name] = {s: err(diffusers_run(scheduler, model, x_T, s)) for s in STEPS}
        ours = "dpm++2m" if "DPM" in name else "ddim"
        rows[f"sciogen {ours} on the diffusers grid"] = {
            s: err(sample(model, x_T, schedule=schedule, prediction="eps", solver=ours, grid=diffusers_grid(scheduler, s)))
            for s in STEPS
        }
    return rows


def distribution(n: int = 3000) -> dict:
    """Energy distance between each solver's samples and exact mixture draws (stochastic
    solvers included), and the same statistic between two exact samples as the noise floor."""
    schedule = DiscreteSchedule.linear(N_TRAIN)
    gmm = GaussianMixture.example()
    model = gmm.denoiser(schedule, "eps")
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    exact = gmm.sample(n, torch.Generator().manual_seed(7)).float()
    rows = {"exact vs exact (floor)": {s: energy_distance(gmm.sample(n, torch.Generator().manual_seed(8)).float(), exact) for s in STEPS}}
    for solver in ["ddim", "dpm++2m", "dpm++3m", "heun", "ddpm", "euler-maruyama"]:
        rows[f"sciogen {solver}"] = {
            s: energy_distance(sample(model, x_T, schedule=schedule, prediction="eps", solver=solver, steps=s,
                                      generator=torch.Generator().manual_seed(1)), exact)
            for s in STEPS
        }
    for name, scheduler in make_schedulers().items():
        rows[name] = {s: energy_distance(diffusers_run(scheduler, model, x_T, s), exact) for s in STEPS}
    return rows


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def overhead(shape, steps: int = 50, repeats: int = 5) -> dict:
    """Seconds per step spent outside the model, best of ``repeats``."""
    schedule = DiscreteSchedule.linear(N_TRAIN)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def trivial(x, t, **_):
        return 0.1 * x

    def ours(solver):
        return lambda m: sample(m, x_T, schedule=schedule, prediction="eps", solver=solver, steps=steps)

    def theirs(scheduler):
        return lambda m: diffusers_run(scheduler, m, x_T, steps)

    runners = {f"sciogen {solver}": ours(solver) for solver in ["ddim", "dpm++2m", "dpm++3m"]}
    runners.update({name: theirs(scheduler) for name, scheduler in make_schedulers().items()})
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):  # interleaved, so that load on the machine hits every runner alike
        for name, run in runners.items():
            timed = TimedModel(trivial)
            start = time.perf_counter()
            run(timed)
            times[name].append((time.perf_counter() - start - timed.seconds) / steps)
    return {name: min(ts) for name, ts in times.items()}


def main() -> dict:
    import diffusers

    torch.manual_seed(0)
    result = {
        "problem": "exact-score 2-D Gaussian mixture (GaussianMixture.example), DDPM linear betas 1e-4..2e-2, 1000 steps",
        "error": "mean L2 distance to a 2000-step DPM-Solver++(3M) solution of the same probability-flow ODE, 4096 samples",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
        "steps": STEPS,
        "accuracy": accuracy(),
        "distribution": "energy distance to 3000 exact mixture draws (lower is better)",
        "energy_distance": distribution(),
        "overhead_seconds_per_step": {
            "batch 4096 x 2": overhead((4096, 2)),
            "batch 8 x 3 x 64 x 64": overhead((8, 3, 64, 64)),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print_table(result)
    return result


def print_table(result: dict) -> None:
    print(f"{'solver':48s}" + "".join(f"{s:>11d}" for s in result["steps"]))
    for name, row in result["accuracy"].items():
        print(f"{name:48s}" + "".join(f"{row[s]:11.2e}" for s in result["steps"]))
    print("\nenergy distance to exact samples:")
    for name, row in result["energy_distance"].items():
        print(f"{name:48s}" + "".join(f"{row[s]:11.2e}" for s in result["steps"]))
    for size, row in result["overhead_seconds_per_step"].items():
        print(f"\noverhead per step, {size}:")
        for name, sec in row.items():
            print(f"  {name:46s} {sec * 1e6:9.1f} us")


if __name__ == "__main__":
    main()
