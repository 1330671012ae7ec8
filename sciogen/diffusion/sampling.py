"""The public sampling entry point and the time grids.

``sample(model, x_T, schedule=..., prediction=..., solver=..., steps=...)`` integrates from
the given noise at t = 1 back to clean data with any solver of :mod:`.solvers`.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

import torch
from tqdm.auto import tqdm

from .parametrization import check_prediction, to_x0
from .schedules import Schedule, make_schedule
from .solvers import SOLVERS

__all__ = ["sample", "time_grid", "default_grid", "make_denoiser", "GRIDS"]

GRIDS = ("uniform", "logsnr", "karras")


def default_grid(schedule: Schedule, solver: str) -> str:
    """The time grid ``sample(..., grid=None)`` uses: the schedule's declaration
    (:meth:`Schedule.grid_for`: log-SNR for linear and discrete VP tables, uniform time for
    cosine and flow, Karras for VE, with per-solver exceptions where they measure better)."""
    return schedule.grid_for(solver)


def time_grid(
    schedule: Schedule,
    steps: int,
    kind: Literal["uniform", "logsnr", "karras"] = "logsnr",
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    denoise_final: bool = True,
    rho: float = 7.0,
) -> torch.Tensor:
    """A decreasing float64 grid of times with ``steps`` intervals.

    - ``"uniform"``: uniform in t;
    - ``"logsnr"``: uniform in lambda = log(alpha / sigma) (DPM-Solver's recommendation);
    - ``"karras"``: sigma/alpha spaced as k^(1/rho) uniform (Karras et al. 2022, rho = 7).

    The grid has ``steps + 1`` points from t_max to t_min. With ``denoise_final`` its last
    point is replaced by t = 0: the last step jumps to the clean estimate, so no model call
    is spent at t_min and one-evaluation-per-step solvers call the model ``steps`` times.
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if kind not in GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; allowed: {', '.join(GRIDS)}")
    t_min = schedule.t_min if t_min is None else float(t_min)
    t_max = schedule.t_max if t_max is None else float(t_max)
    if not 0.0 < t_min < t_max <= 1.0:
        raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    n = int(steps) + 1
    if kind == "uniform":
        ts = torch.linspace(t_max, t_min, n, dtype=torch.float64)
    else:
        bounds = torch.tensor([t_max, t_min], dtype=torch.float64)
        lam = schedule.log_snr(bounds)
        if not bool(torch.isfinite(lam).all()):
            raise ValueError(
                f"a {kind!r} grid needs a finite log-SNR at both ends, but {schedule!r} has alpha = 0 at "
                f"t_max = {t_max:g}: use grid='uniform' or a t_max below it"
            )
        if kind == "logsnr":
            lams = torch.linspace(float(lam[0]), float(lam[1]), n, dtype=torch.float64)
        else:
            k_max, k_min = torch.exp(-lam[0]), torch.exp(-lam[1])
            ramp = torch.linspace(0, 1, n, dtype=torch.float64)
            k = (k_max ** (1 / rho) + ramp * (k_min ** (1 / rho) - k_max ** (1 / rho))) ** rho
            lams = -torch.log(k)
        ts = schedule.t_from_log_snr(lams).clamp(t_min, t_max)
        ts[0], ts[-1] = t_max, t_min
    if denoise_final:
        ts[-1] = 0.0
    return ts


def make_denoiser(model: Callable, schedule: Schedule, prediction: str, dtype: torch.dtype,
                  times: torch.Tensor | None = None, **cond) -> Callable:
    """Turn ``model(x_t, t, **cond) -> prediction`` into ``denoise(x, t: float) -> x0`` (float32).

    The model sees the state in ``dtype`` and a time tensor of shape (B,); the conversion to
    x0 runs in float32 through :func:`sciogen.diffusion.parametrization.to_x0` (with the
    schedule's derivatives for a flow-velocity model). ``times``: the grid the solver will
    call it at, whose coefficients are then computed in one vectorised call (others on demand).
    """
    check_prediction(prediction, schedule)
    coefficients: dict[float, tuple[float, ...]] = {}

    def compute(ts: torch.Tensor) -> None:
        columns = [schedule.alpha(ts), schedule.sigma(ts)]
        if prediction == "flow":
            columns += list(schedule.derivatives(ts))
        for t, *values in zip(ts.tolist(), *(c.tolist() for c in columns)):
            coefficients[t] = tuple(values)

    if times is not None:
        compute(times.to(torch.float64).flatten().cpu())

    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)
        pred = model(x.to(dtype), tt, **cond)
        if pred.shape != x.shape:
            raise ValueError(f"model output has shape {tuple(pred.shape)}, expected the state's {tuple(x.shape)}")
        if t not in coefficients:
            compute(torch.tensor([t], dtype=torch.float64))
        alpha, sigma, *derivatives = coefficients[t]
        return to_x0(pred.float(), x, alpha, sigma, prediction, *derivatives)

    return denoise


class _Flat:
    """Packs a dict state {name: (B, ...)} into one (B, D) tensor and back."""

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self.keys = list(state)
        self.shapes = [tuple(state[k].shape[1:]) for k in self.keys]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]

    def pack(self, state):
        return torch.cat([state[k].reshape(state[k].shape[0], -1) for k in self.keys], dim=1)

    def unpack(self, flat):
        parts = torch.split(flat, self.sizes, dim=1)
        return {k: p.reshape((flat.shape[0],) + s) for k, p, s in zip(self.keys, parts, self.shapes)}

    def wrap(self, model):
        def flat_model(x, t, **cond):
            out = model(self.unpack(x), t, **cond)
            missing = set(self.keys) - set(out)
            if missing:
                raise ValueError(f"model output lacks the fields {sorted(missing)} of the state")
            return self.pack(out)

        return flat_model


def sample(
    model: Callable,
    x_T,
    *,
    schedule: Schedule | str = "linear",
    prediction: str = "eps",
    solver: str = "unipc",
    steps: int = 20,
    generator: torch.Generator | None = None,
    grid: str | torch.Tensor | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
    denoise_final: bool = True,
    progress: bool = False,
    callback: Callable | None = None,
    solver_options: dict | None = None,
    **cond,
):
    """Generate clean samples from noise ``x_T`` at t = 1 with a Gaussian-diffusion model.

    Args:
        model: ``model(x_t, t, **cond) -> prediction`` with t of shape (B,) in [0, 1].
        x_T: the starting noise, a tensor (B, ...) or a dict of named fields {name: (B, ...)}
            (the model then takes and returns dicts).
        schedule: a :class:`Schedule` or ``"linear" | "cosine" | "discrete" | "flow" | "ve"``.
        prediction: the model's output kind, ``"eps" | "x0" | "v" | "flow"`` (``"v"``: VP
            schedules only; ``"flow"``: the flow velocity d x_t / dt).
        solver: one of ``"ddpm", "ddim", "dpm++2m", "dpm++3m", "unipc", "euler", "heun",
            "euler-maruyama"`` (default: UniPC, order 2, B(h) = e^h - 1, the closest to the data
            at 5-20 calls on the exact-score benchmarks, ``benchmarks/samplers.py``).
        steps: number of solver steps (``heun`` calls the model about twice per step).
        generator: the only source of randomness of stochastic solvers.
        grid: ``"uniform" | "logsnr" | "karras"`` or an explicit decreasing tensor of times
            (default: the schedule's declaration, :func:`default_grid`).
        t_min, t_max: integration range (defaults: the schedule's).
        denoise_final: end with a step to t = 0 returning the clean estimate.
        solver_options: extra options of the solver, e.g. ``{"eta": 0.5}`` for DDIM.
        **cond: conditions passed to the model.

    Returns:
        The sample, same structure, shape and dtype as ``x_T``. Solver arithmetic runs in
        float32.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    schedule = make_schedule(schedule)
    check_prediction(prediction, schedule)
    if isinstance(x_T, Mapping):
        flat = _Flat(x_T)
        out = sample(
            flat.wrap(model), flat.pack(x_T), schedule=schedule, prediction=prediction, solver=solver,
            steps=steps, generator=generator, grid=grid, t_min=t_min, t_max=t_max,
            denoise_final=denoise_final, progress=progress, callback=callback,
            solver_options=solver_options, **cond,
        )
        return flat.unpack(out)
    if torch.is_tensor(grid):
        ts = grid.detach().to(torch.float64).flatten().cpu()
        if ts.numel() < 2 or not bool((ts[1:] < ts[:-1]).all()):
            raise ValueError("an explicit grid must be a decreasing tensor of at least 2 times")
    else:
        kind = grid or default_grid(schedule, solver)
        ts = time_grid(schedule, steps, kind, t_min=t_min, t_max=t_max, denoise_final=denoise_final)
    denoise = make_denoiser(model, schedule, prediction, x_T.dtype, times=ts, **cond)
    options = dict(solver_options or {})
    if not progress:
        out = SOLVERS[solver](denoise, x_T.float(), ts, schedule, generator=generator, callback=callback, **options)
        return out.to(x_T.dtype)
    with tqdm(total=len(ts) - 1, desc=f"sampling ({solver})", leave=False) as bar:

        def on_step(i, t, x):
            bar.update(1)
            if callback is not None:
                callback(i, t, x)

        out = SOLVERS[solver](denoise, x_T.float(), ts, schedule, generator=generator, callback=on_step, **options)
    return out.to(x_T.dtype)
