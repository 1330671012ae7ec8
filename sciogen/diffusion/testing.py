"""Reference samplers that no domain uses, kept because the tests check the core with them.

- :func:`repaint` (RePaint) and :func:`smc_inpaint` (SMCDiff): inpainting baselines that
  :func:`~sciogen.diffusion.inpaint` (replacement, used by volumes and time series) is
  compared with; SMCDiff targets the exact conditional as its particles grow.
- :func:`sample_torus`: a predictor-corrector loop on the torus alone, the reference for
  :meth:`~sciogen.diffusion.WrappedNormalProcess.step` against an exact wrapped-normal
  mixture (crystals sample through :meth:`~sciogen.diffusion.JointProcess.sample`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .parametrization import check_prediction, to_x0
from .schedules import Schedule, make_schedule
from .solvers import _check
from .torus import WrappedNormalProcess, _batch_time, wrap_fractional

__all__ = ["repaint", "smc_inpaint", "sample_torus"]


def repaint(
    model: Callable,
    x_T: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    schedule: Schedule | str,
    prediction: str,
    steps: int = 100,
    resample: int = 10,
    generator: torch.Generator | None = None,
    **cond,
) -> torch.Tensor:
    """RePaint (Lugmayr et al. 2022, Alg. 1, jump length 1): ancestral inpainting that
    re-noises each step ``resample - 1`` times to harmonise known and generated parts.

    Returns the clean sample with ``known`` at ``mask``. Shapes: x_T (B, ...); known and mask
    broadcastable to it. Cost: about ``steps * resample`` model calls.
    """
    from .sampling import make_denoiser, time_grid  # local: sampling imports solvers only

    schedule = make_schedule(schedule)
    if resample < 1:
        raise ValueError(f"resample must be >= 1, got {resample}")
    mask = mask.bool()
    known = known.float()
    ts = time_grid(schedule, steps, "uniform")
    denoise = make_denoiser(model, schedule, prediction, x_T.dtype, **cond)
    x = x_T.float()
    for i in range(len(ts) - 1):
        t, s = float(ts[i]), float(ts[i + 1])
        a_t, s_t = float(schedule.alpha(ts[i])), float(schedule.sigma(ts[i]))
        a_s, s_s = (1.0, 0.0) if s <= 0 else (float(schedule.alpha(ts[i + 1])), float(schedule.sigma(ts[i + 1])))
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        for u in range(resample):
            x0 = denoise(x, t)
            x_s = (a_ts * s_s**2 / s_t**2) * x + (a_s * var_ts / s_t**2) * x0
            if s_s > 0:
                x_s = x_s + math.sqrt(var_ts * s_s**2 / s_t**2) * torch.randn(x.shape, generator=generator)
            known_s = a_s * known + s_s * torch.randn(x.shape, generator=generator)
            x_s = torch.where(mask, known_s, x_s)
            if u < resample - 1 and s_s > 0:
                x = a_ts * x_s + math.sqrt(var_ts) * torch.randn(x.shape, generator=generator)
            else:
                x = x_s
        x = _check(x, i, s)
    return x.to(x_T.dtype)


def smc_inpaint(
    model: Callable,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    schedule: Schedule | str,
    prediction: str,
    steps: int = 100,
    particles: int = 16,
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    **cond,
) -> torch.Tensor:
    """Inpainting by sequential Monte Carlo, SMCDiff (Trippe et al. 2022, Alg. 2).

    The known part follows one draw of the forward chain q(x_t | y); ``particles`` copies of
    the unknown part move with the model's ancestral kernel, weighted by the kernel's
    density of the known part's next value, and are resampled when the effective sample size
    drops below ``ess_threshold * particles``. Unlike replacement (:func:`inpaint`,
    :func:`repaint`), it targets the exact conditional p(x_unknown | x_known = y) as the
    number of particles grows, given an exact model.

    Shapes: known (B, ...) and mask broadcastable to it (1 = observed). Returns (B, ...): one
    particle per row drawn from the final weights, with ``known`` at ``mask``. Cost: about
    ``steps * particles`` model calls on batches of B.
    """
    from .sampling import time_grid

    schedule = make_schedule(schedule)
    check_prediction(prediction, schedule)
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    b = known.shape[0]
    event = known.shape[1:]
    y = known.float().repeat_interleave(particles, 0)
    m = mask.bool().expand(known.shape).repeat_interleave(particles, 0)
    ts = time_grid(schedule, steps, "uniform", denoise_final=False)
    a, s = schedule.alpha(ts).tolist(), schedule.sigma(ts).tolist()
    # a flow-velocity model's conversion also needs (d alpha / dt, d sigma / dt) at each time
    d = list(zip(*(c.tolist() for c in schedule.derivatives(ts)))) if prediction == "flow" else [()] * len(ts)
    rand = lambda: torch.randn(y.shape, generator=generator)  # noqa: E731
    # one forward chain of the known part per row, shared by its particles, from t_min up
    y0 = known.float()
    chain = [a[-1] * y0 + s[-1] * torch.randn(y0.shape, generator=generator)]
    for i in range(len(ts) - 2, -1, -1):
        a_ts = a[i] / a[i + 1]
        z = torch.randn(y0.shape, generator=generator)
        chain.append(a_ts * chain[-1] + math.sqrt(s[i] ** 2 - a_ts**2 * s[i + 1] ** 2) * z)
    chain = [c.repeat_interleave(particles, 0) for c in chain[::-1]]
    x = torch.where(m, chain[0], rand())
    logw = torch.zeros(b, particles)
    cond = {k: v.repeat_interleave(particles, 0) if torch.is_tensor(v) else v for k, v in cond.items()}
    dims = tuple(range(1, y.ndim))
    for i in range(len(ts) - 1):
        tt = torch.full((x.shape[0],), float(ts[i]))
        x0 = to_x0(model(x, tt, **cond).float(), x, a[i], s[i], prediction, *d[i])
        a_ts = a[i] / a[i + 1]
        var_ts = s[i] ** 2 - a_ts**2 * s[i + 1] ** 2
        mean = (a_ts * s[i + 1] ** 2 / s[i] ** 2) * x + (a[i + 1] * var_ts / s[i] ** 2) * x0
        var = var_ts * s[i + 1] ** 2 / s[i] ** 2
        resid = torch.where(m, chain[i + 1] - mean, torch.zeros_like(mean))
        logw = logw - 0.5 * (resid**2).sum(dims).reshape(b, particles) / var
        x = torch.where(m, chain[i + 1], mean + math.sqrt(var) * rand())
        x = _check(x, i, float(ts[i + 1]))
        x, logw = _resample(x, logw, ess_threshold, generator)
    tt = torch.full((x.shape[0],), float(ts[-1]))
    x0 = to_x0(model(x, tt, **cond).float(), x, a[-1], s[-1], prediction, *d[-1])
    x0 = torch.where(m, y, x0).reshape((b, particles) + tuple(event))
    pick = torch.multinomial(torch.softmax(logw, 1), 1, generator=generator)[:, 0]
    return x0[torch.arange(b), pick].to(known.dtype)


def _resample(x, logw, threshold, generator):
    """Multinomial resampling of the rows whose effective sample size is below threshold."""
    b, p = logw.shape
    w = torch.softmax(logw, 1)
    ess = 1.0 / (w**2).sum(1)
    low = ess < threshold * p
    if not bool(low.any()):
        return x, logw
    idx = torch.arange(b * p).reshape(b, p)
    draws = torch.multinomial(w[low], p, replacement=True, generator=generator)
    idx[low] = draws + (torch.nonzero(low)[:, 0] * p)[:, None]
    logw = torch.where(low[:, None], torch.zeros_like(logw), logw)
    return x[idx.flatten()], logw


def sample_torus(
    model: Callable[..., torch.Tensor],
    x_T: torch.Tensor,
    process: WrappedNormalProcess,
    steps: int,
    generator: torch.Generator | None = None,
    *,
    corrector_steps: int = 1,
    step_lr: float = 1e-5,
    denoise_final: bool = True,
    **cond,
) -> torch.Tensor:
    """Predictor-corrector sampling on the torus (DiffCSP; Song et al. 2021, Alg. 2).

    ``model(x_t, t, **cond)`` returns the normalised score (x_t's shape) for t of shape (B,).
    The predictor runs on a uniform grid of t from 1 to 0 with a corrector after each step;
    with ``denoise_final`` the grid has ``steps`` points and a last predictor step from
    t = 0 (sigma_min) to the clean data, so there are ``steps`` predictor calls; without
    it, ``steps + 1`` points ending at t = 0. Model calls: predictor calls plus
    ``corrector_steps`` per intermediate time. ``step_lr`` = 1e-5 is DiffCSP's corrector
    step; see :meth:`WrappedNormalProcess.corrector_step` for the bias it trades for mixing.

    Shapes: x_T (B, ...) fractional (e.g. ``process.prior(shape, generator)``) -> (B, ...) in [0, 1).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n = int(steps) if denoise_final else int(steps) + 1
    grid = torch.linspace(1.0, 0.0, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
    x = wrap_fractional(x_T)
    for k in range(n - 1):
        t, s = _batch_time(float(grid[k]), x), _batch_time(float(grid[k + 1]), x)
        x = process.step(
            x, model(x, t, **cond), t, s, generator,
            model=model, corrector_steps=corrector_steps, step_lr=step_lr, **cond,
        )
    if denoise_final:
        t = _batch_time(float(grid[-1]), x)
        x = process.step(x, model(x, t, **cond), t, None, generator)
    return x
