"""Tuned time grids: the N sampling times that bring an N-step solver closest to a many-step one.

:func:`tune_grid` fits the grid of a deterministic solver to a teacher, the same model integrated
with ``teacher_steps`` steps of an accurate solver, from the same starting noises (the objective of
LD3, Tong et al. 2024, "Learning to Discretize Denoising Diffusion ODEs"): it minimises

    L(ts) = mean_i || solve(model, x_T^i, ts) - teacher(x_T^i) ||_2

over decreasing grids ``t_max = ts[0] > ts[1] > ... > ts[N-1] > ts[N] = 0``. The grid is parametrised
by N - 1 logits z whose softmax (with a last logit of 0) gives the N increments in the coordinate in
which the schedule's default grid is uniform (t, log-SNR or Karras's sigma^(1/rho)), so z = 0 is the
default grid and every z gives a valid grid. The search is derivative-free, by CMA-ES (Hansen 2016,
"The CMA Evolution Strategy: A Tutorial"), an evolutionary search as in AutoDiffusion (Li et al.
2023): the core solvers compute their coefficients once as Python floats, so no gradient flows from
their output back to the grid, and a few hundred evaluations of N batched model calls suffice for
N - 1 <= ~20 parameters. The starting noises are scrambled Sobol points mapped to normals
(low-discrepancy), which makes the ~100-sample objective far less noisy than independent draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .parametrization import check_prediction
from .sampling import GRIDS, default_grid, sample
from .schedules import Schedule, make_schedule
from .solvers import SOLVERS

__all__ = ["tune_grid", "search_grid", "TunedGrid", "ODE_SOLVERS"]

#: the deterministic solvers whose grids can be tuned against a teacher (``ddim`` with eta = 0)
ODE_SOLVERS = ("unipc", "dpm++2m", "dpm++3m", "ddim", "euler", "heun")


@dataclass(frozen=True)
class TunedGrid:
    """The result of :func:`search_grid`.

    Attributes:
        times: the tuned grid, a decreasing float64 tensor of ``steps + 1`` times from t_max to 0.
        loss: its mean L2 distance to the teacher on the search's noises.
        default_loss: the same for the schedule's default grid (where the search starts).
        evaluations: grids evaluated (each one solve of ``samples`` noises).
        model_calls: batched model calls of the search, the teacher's included.
        teacher_calls: batched model calls of the teacher alone.
        samples: noises per model call.
        seconds: wall time of the search.
    """

    times: torch.Tensor
    loss: float
    default_loss: float
    evaluations: int
    model_calls: int
    teacher_calls: int
    samples: int
    seconds: float


def tune_grid(model: Callable, schedule: Schedule | str, prediction: str, solver: str, steps: int, **options) -> torch.Tensor:
    """The ``steps + 1`` sampling times (float64, decreasing from t_max to 0) that bring ``solver`` closest
    to a many-step teacher from the same noises; ``sample(model, x_T, ..., grid=times)`` uses them.

    Takes the arguments of :func:`search_grid`, which also reports the search's losses and cost.
    """
    return search_grid(model, schedule, prediction, solver, steps, **options).times


@torch.no_grad()
def search_grid(
    model: Callable,
    schedule: Schedule | str,
    prediction: str,
    solver: str,
    steps: int,
    *,
    shape: tuple[int, ...] | None = None,
    x_T_sampler: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    samples: int = 100,
    teacher_steps: int = 200,
    teacher_solver: str = "unipc",
    iterations: int = 60,
    solver_options: dict | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    cond: dict | None = None,
) -> TunedGrid:
    """Search the time grid of an N-step solver by fitting it to a many-step teacher (see the module).

    Args:
        model: ``model(x_t, t, **cond) -> prediction``, as for :func:`sciogen.diffusion.sample`.
        schedule, prediction: the model's schedule and prediction kind.
        solver: a deterministic solver of :data:`ODE_SOLVERS`.
        steps: N, the solver steps of the grid (>= 2; the last step goes to t = 0).
        shape: the shape of one sample, e.g. ``(2,)``: the noises are ``samples`` scrambled Sobol
            points mapped to N(0, prior_std^2) (independent normals past 21201 dimensions).
        x_T_sampler: instead of ``shape``, ``x_T_sampler(n, generator) -> (n, ...)`` draws the noises.
        samples: starting noises the grid is fitted on (batched in every model call).
        teacher_steps, teacher_solver: the teacher, on the schedule's default grid.
        iterations: CMA-ES generations at most (each evaluates 4 + 3 ln(N - 1) grids); the search
            also stops when the step size falls below 1e-3.
        solver_options: options of ``solver`` (e.g. ``{"order": 3}``); the grid is for these.
        generator: the search's only randomness (noises and mutations); None: seeded with 0.
        device: where the noises go (default: the CPU).
        cond: conditions passed to the model, ``model(x_t, t, **cond)``.

    Returns:
        A :class:`TunedGrid`: the times, the loss against the teacher before and after, and the
        search's cost in model calls and seconds.
    """
    schedule = make_schedule(schedule)
    check_prediction(prediction, schedule)
    steps = _check_args(solver, steps, samples, teacher_steps, teacher_solver, iterations, solver_options, shape, x_T_sampler)
    started = time.perf_counter()
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    x_T = _noises(schedule, samples, shape, x_T_sampler, generator, seed, device)
    counted = _Counter(model)
    run = dict(schedule=schedule, prediction=prediction, **(cond or {}))
    teacher = sample(counted, x_T, solver=teacher_solver, steps=teacher_steps, **run).float()
    teacher_calls = counted.calls
    coordinate = _Coordinate(schedule, default_grid(schedule, solver))

    def loss(z: torch.Tensor) -> float:
        ts = coordinate.grid(z)
        if not bool((ts[1:] < ts[:-1]).all()):  # increments too small to tell apart in float64
            return math.inf
        try:
            out = sample(counted, x_T, solver=solver, grid=ts, solver_options=solver_options, **run)
        except FloatingPointError:
            return math.inf
        return float((out.float() - teacher).flatten(1).norm(dim=1).mean())

    z0 = torch.zeros(steps - 1, dtype=torch.float64)
    default_loss = loss(z0)
    if not math.isfinite(default_loss):
        raise FloatingPointError(f"{solver} with {steps} steps on the default grid gives non-finite samples; "
                                 "check the model's prediction kind and schedule")
    cma_generator = torch.Generator().manual_seed(seed)
    z, best, evaluations = _cmaes(loss, z0, default_loss, iterations=iterations, generator=cma_generator)
    return TunedGrid(times=coordinate.grid(z), loss=best, default_loss=default_loss, evaluations=evaluations + 1,
                     model_calls=counted.calls, teacher_calls=teacher_calls, samples=samples,
                     seconds=time.perf_counter() - started)


def _check_args(solver, steps, samples, teacher_steps, teacher_solver, iterations, solver_options, shape, x_T_sampler) -> int:
    if solver not in ODE_SOLVERS:
        known = "" if solver in SOLVERS else "unknown solver; "
        raise ValueError(f"{known}tuning a time grid needs a deterministic solver, got {solver!r}; allowed: {', '.join(ODE_SOLVERS)}")
    if teacher_solver not in ODE_SOLVERS:
        raise ValueError(f"teacher_solver must be a deterministic solver ({', '.join(ODE_SOLVERS)}), got {teacher_solver!r}")
    if float((solver_options or {}).get("eta", 0.0)) != 0.0:
        raise ValueError("tuning a time grid needs a deterministic solver: ddim with eta = 0 (got solver_options eta != 0)")
    for name, value, minimum in (("steps", steps, 2), ("samples", samples, 1), ("teacher_steps", teacher_steps, 1),
                                 ("iterations", iterations, 1)):
        if isinstance(value, bool) or int(value) != value or int(value) < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}"
                             + (" (one step has no time to tune)" if name == "steps" else ""))
    if (shape is None) == (x_T_sampler is None):
        raise ValueError("give either shape (the shape of one sample) or x_T_sampler(n, generator), not both or neither")
    return int(steps)


def _noises(schedule, n, shape, x_T_sampler, generator, seed, device) -> torch.Tensor:
    """The starting noises: the user's sampler, or scrambled Sobol normals times the prior's std."""
    if x_T_sampler is not None:
        x_T = x_T_sampler(n, generator)
        if not torch.is_tensor(x_T) or x_T.shape[:1] != (n,):
            raise ValueError(f"x_T_sampler(n, generator) must return a tensor with n = {n} rows, got "
                             f"{tuple(x_T.shape) if torch.is_tensor(x_T) else type(x_T).__name__}")
        return x_T if device is None else x_T.to(device)
    shape = tuple(int(s) for s in shape)
    dim = math.prod(shape)
    if dim < 1:
        raise ValueError(f"shape must have a positive size, got {shape}")
    if dim <= torch.quasirandom.SobolEngine.MAXDIM:
        u = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)
        z = torch.special.ndtri(u.clamp(1e-10, 1.0 - 1e-10))
    else:
        z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (z * schedule.prior_std).float().reshape((n,) + shape).to(device or "cpu")


class _Counter:
    """Counts the calls of a model callable."""

    def __init__(self, model: Callable):
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


class _Coordinate:
    """Maps logits z (N - 1) to a grid: softmax([z, 0]) are the increments from t_max to t_min in the
    coordinate u in which ``kind`` is uniform (``uniform``: t; ``logsnr``: lambda; ``karras``:
    exp(-lambda / rho), rho = 7); the last point t_min becomes 0 (the final step to the clean estimate)."""

    def __init__(self, schedule: Schedule, kind: str, rho: float = 7.0):
        if kind not in GRIDS:
            raise ValueError(f"unknown time grid {kind!r}; allowed: {', '.join(GRIDS)}")
        self.schedule, self.kind, self.rho = schedule, kind, rho
        ends = torch.tensor([schedule.t_max, schedule.t_min], dtype=torch.float64)
        self.ends = self._to_u(ends)
        if not bool(torch.isfinite(self.ends).all()):
            raise ValueError(f"a {kind!r} grid needs a finite log-SNR at both ends of {schedule!r}")

    def _to_u(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "uniform":
            return t
        lam = self.schedule.log_snr(t)
        return lam if self.kind == "logsnr" else torch.exp(-lam / self.rho)

    def _to_t(self, u: torch.Tensor) -> torch.Tensor:
        if self.kind == "uniform":
            return u
        lam = u if self.kind == "logsnr" else -self.rho * torch.log(u)
        return self.schedule.t_from_log_snr(lam)

    def grid(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([z.to(torch.float64), torch.zeros(1, dtype=torch.float64)])
        fractions = torch.cat([torch.zeros(1, dtype=torch.float64), torch.softmax(logits, 0).cumsum(0)])
        ts = self._to_t(self.ends[0] + fractions * (self.ends[1] - self.ends[0]))
        ts = ts.clamp(self.schedule.t_min, self.schedule.t_max)
        ts[0], ts[-1] = self.schedule.t_max, 0.0
        return ts


def _cmaes(f: Callable[[torch.Tensor], float], x0: torch.Tensor, f0: float, *, iterations: int, generator: torch.Generator,
           sigma: float = 0.5, tol: float = 1e-3) -> tuple[torch.Tensor, float, int]:
    """Minimise ``f`` from ``x0`` (where ``f = f0``) with CMA-ES in its standard form (Hansen 2016,
    "The CMA Evolution Strategy: A Tutorial", Fig. 6 / purecma): population 4 + 3 ln n, weighted
    recombination of the best half, cumulative step-size adaptation, rank-one and rank-mu updates.
    Returns the best point evaluated, its value and the number of evaluations."""
    n = x0.numel()
    lam = 4 + int(3 * math.log(n))
    mu = lam // 2
    w = math.log(mu + 0.5) - torch.log(torch.arange(1, mu + 1, dtype=torch.float64))
    w = w / w.sum()
    mueff = float(1.0 / (w**2).sum())
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    cs = (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    damps = 2 * mueff / lam + 0.3 + cs
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
    mean, cov = x0.clone().to(torch.float64), torch.eye(n, dtype=torch.float64)
    pc, ps = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    best_x, best_f, evaluations = mean.clone(), f0, 0
    for g in range(1, iterations + 1):
        eigenvalues, basis = torch.linalg.eigh(cov)
        scales = eigenvalues.clamp_min(1e-20).sqrt()
        y = (torch.randn(lam, n, generator=generator, dtype=torch.float64) * scales) @ basis.T
        xs = mean + sigma * y
        fs = torch.tensor([f(x) for x in xs], dtype=torch.float64)
        evaluations += lam
        order = torch.argsort(fs)
        if float(fs[order[0]]) < best_f:
            best_f, best_x = float(fs[order[0]]), xs[order[0]].clone()
        selected = y[order[:mu]]
        step = w @ selected
        mean = mean + sigma * step
        ps = (1 - cs) * ps + math.sqrt(cs * (2 - cs) * mueff) * (basis @ ((basis.T @ step) / scales))
        hsig = float(ps.norm()) / math.sqrt(1 - (1 - cs) ** (2 * g)) / chi_n < 1.4 + 2 / (n + 1)
        pc = (1 - cc) * pc + hsig * math.sqrt(cc * (2 - cc) * mueff) * step
        cov = ((1 - c1 - cmu) * cov + c1 * (torch.outer(pc, pc) + (not hsig) * cc * (2 - cc) * cov)
               + cmu * (selected.T * w) @ selected)
        cov = 0.5 * (cov + cov.T)
        sigma *= math.exp(min(1.0, (cs / damps) * (float(ps.norm()) / chi_n - 1)))
        if sigma * float(scales.max()) < tol:
            break
    return best_x, best_f, evaluations
