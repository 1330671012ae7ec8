"""Guidance as wrappers of the model callable, so every solver gets it.

Each function takes ``model(x_t, t, **cond) -> prediction`` and returns a callable with the
same contract. Conversions go through :mod:`.parametrization`.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from .parametrization import check_prediction, convert, expand_time, from_x0, to_eps, to_x0
from .schedules import Schedule, make_schedule
from .solvers import _check

__all__ = ["classifier_free", "inpaint", "observation_guidance", "repaint", "smc_inpaint"]


def classifier_free(model: Callable, scale: float, null_cond: dict | None = None) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022): ``u + scale (c - u)``.

    ``c = model(x, t, **cond)``, ``u = model(x, t, **null_cond)``; ``null_cond`` defaults to
    every condition set to ``None`` (the model must then drop it, as when trained with
    condition dropout). ``scale = 1`` is the plain conditional model, ``0`` the unconditional.
    """

    def guided(x_t, t, **cond):
        c = model(x_t, t, **cond)
        if scale == 1.0:
            return c
        uncond = dict(cond)
        uncond.update({k: None for k in cond} if null_cond is None else null_cond)
        u = model(x_t, t, **uncond)
        return u + scale * (c - u)

    return guided


def _coefficients(schedule: Schedule, t: torch.Tensor, x: torch.Tensor):
    t64 = t.double()
    alpha = expand_time(schedule.alpha(t64), x).to(x.dtype)
    sigma = expand_time(schedule.sigma(t64), x).to(x.dtype)
    return alpha, sigma


def inpaint(
    model: Callable,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    schedule: Schedule | str,
    prediction: str,
    generator: torch.Generator | None = None,
) -> Callable:
    """Inpainting by replacement (Song et al. 2021; Lugmayr et al. 2022 without resampling).

    Before each model call the known entries of x_t are replaced by a fresh draw of
    q(x_t | known); the predicted x0 keeps the known values exactly. ``mask`` is 1 (True)
    where ``known`` holds observed values. Shapes: known, mask broadcastable to x_t.
    """
    schedule = make_schedule(schedule)
    check_prediction(prediction)
    mask = mask.bool()

    def guided(x_t, t, **cond):
        alpha, sigma = _coefficients(schedule, t, x_t)
        noise = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        x_in = torch.where(mask, alpha * known.to(x_t.dtype) + sigma * noise, x_t)
        x0 = to_x0(model(x_in, t, **cond), x_in, alpha, sigma, prediction)
        x0 = torch.where(mask, known.to(x0.dtype), x0)
        return from_x0(x0, x_t, alpha, sigma, prediction)

    return guided


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


def observation_guidance(
    model: Callable,
    observed: torch.Tensor,
    mask: torch.Tensor,
    *,
    schedule: Schedule | str,
    prediction: str,
    scale: float = 1.0,
    loss: Literal["mse", "quantile"] = "mse",
    quantile: float = 0.5,
) -> Callable:
    """Observation self-guidance (Kollovieh et al. 2023, TSDiff, Eq. 8-9).

    The predicted x0_hat(x_t) is pulled toward the observed entries by the gradient of
    a loss on the observed positions:

        eps_guided = eps_hat + scale * sigma_t * grad_{x_t} L(x0_hat(x_t), y),

    with L the squared error (Gaussian likelihood) or the pinball loss at ``quantile``
    (asymmetric Laplace likelihood), summed over the entries where ``mask`` is 1.
    The model is differentiated, so it must be differentiable in x_t.
    """
    schedule = make_schedule(schedule)
    check_prediction(prediction)
    if loss not in ("mse", "quantile"):
        raise ValueError(f"unknown guidance loss {loss!r}; allowed: mse, quantile")
    mask_f = mask.float()

    def guided(x_t, t, **cond):
        alpha, sigma = _coefficients(schedule, t, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            pred = model(x, t, **cond)
            x0 = to_x0(pred, x, alpha, sigma, prediction)
            diff = observed.to(x0.dtype) - x0
            if loss == "mse":
                err = diff**2
            else:
                err = torch.maximum(quantile * diff, (quantile - 1.0) * diff)
            (grad,) = torch.autograd.grad((err * mask_f).sum(), x)
        eps = to_eps(pred.detach(), x_t, alpha, sigma, prediction) + scale * sigma * grad
        return convert(eps, x_t, alpha, sigma, "eps", prediction)

    return guided


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
    check_prediction(prediction)
    if particles < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    b = known.shape[0]
    event = known.shape[1:]
    y = known.float().repeat_interleave(particles, 0)
    m = mask.bool().expand(known.shape).repeat_interleave(particles, 0)
    ts = time_grid(schedule, steps, "uniform", denoise_final=False)
    a, s = schedule.alpha(ts).tolist(), schedule.sigma(ts).tolist()
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
        x0 = to_x0(model(x, tt, **cond).float(), x, a[i], s[i], prediction)
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
    x0 = to_x0(model(x, tt, **cond).float(), x, a[-1], s[-1], prediction)
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
