"""Reverse-time solvers for Gaussian diffusion, as short pure functions.

Every solver has the signature ``solver(denoise, x, ts, schedule, *, generator=None,
callback=None, **options) -> x`` where

- ``denoise(x, t) -> x0`` returns the predicted clean sample at time ``t`` (a float) in
  float32 (:func:`sciogen.diffusion.sampling.sample` builds it from any model and
  prediction kind through the one converter);
- ``x`` is the state at ``ts[0]``;
- ``ts`` is a decreasing 1-D float64 tensor of times; the last entry may be 0, which means
  "return the final clean estimate" and is taken with a first-order step;
- ``callback(i, t, x)`` is called after each step.

Multistep history lives in local variables; nothing leaks between calls. Randomness comes
only from ``generator``. A non-finite state raises :class:`FloatingPointError` naming the step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedules import Schedule

__all__ = ["ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "heun", "euler_maruyama", "SOLVERS"]

Denoise = Callable[[torch.Tensor, float], torch.Tensor]


def _grid(schedule: Schedule, ts: torch.Tensor) -> tuple[list[float], list[float], list[float], list[float]]:
    """Times, alpha, sigma and lambda on the whole grid as Python floats, computed once
    (alpha = 1, sigma = 0, lambda = inf at t = 0)."""
    ts = ts.to(torch.float64)
    pos = ts.clamp_min(1e-12)
    zero = ts <= 0
    a = torch.where(zero, 1.0, schedule.alpha(pos))
    s = torch.where(zero, 0.0, schedule.sigma(pos))
    lam = torch.where(zero, math.inf, schedule.log_snr(pos))
    return ts.tolist(), a.tolist(), s.tolist(), lam.tolist()


def _check(x: torch.Tensor, i: int, t: float) -> torch.Tensor:
    # one reduction instead of a full boolean mask: NaN and inf propagate into the sum
    if not math.isfinite(float(x.sum())):
        raise FloatingPointError(
            f"non-finite values appeared at solver step {i} (t = {t:.5f}); "
            "check the model's prediction kind and schedule, or lower the guidance scale"
        )
    return x


def _randn(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddim(denoise: Denoise, x, ts, schedule, *, eta: float = 0.0, generator=None, callback=None):
    """DDIM (Song, Meng & Ermon 2021, Eq. 12); ``eta = 0`` is deterministic, ``eta = 1`` is DDPM.

    x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z,
    c   = eta sigma_s / sigma_t sqrt(1 - alpha_t^2 / alpha_s^2)   (Eq. 16: with eta = 1, c^2 is the
    variance of the DDPM posterior q(x_s | x_t, x0)).
    """
    T, A, S, _ = _grid(schedule, ts)
    for i in range(len(T) - 1):
        t, s, a_t, a_s, s_t, s_s = T[i], T[i + 1], A[i], A[i + 1], S[i], S[i + 1]
        x0 = denoise(x, t)
        c = 0.0
        if eta > 0 and s_s > 0:
            c = eta * s_s / s_t * math.sqrt(max(0.0, 1.0 - (a_t / a_s) ** 2))
        e = math.sqrt(max(s_s**2 - c**2, 0.0)) / s_t  # eps = (x - a_t x0) / s_t, folded in
        x = torch.add(e * x, x0, alpha=a_s - e * a_t)
        if c > 0:
            x = x + c * _randn(x, generator)
        x = _check(x, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


def ddpm(denoise: Denoise, x, ts, schedule, *, generator=None, callback=None):
    """Ancestral sampling from the Gaussian posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, Eq. 6-7).

    With alpha_ts = alpha_t / alpha_s and sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2:
    mean = alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_ts^2 / sigma_t^2 x0_hat,
    var  = sigma_ts^2 sigma_s^2 / sigma_t^2.
    """
    T, A, S, _ = _grid(schedule, ts)
    for i in range(len(T) - 1):
        t, s, a_t, a_s, s_t, s_s = T[i], T[i + 1], A[i], A[i + 1], S[i], S[i + 1]
        x0 = denoise(x, t)
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        x = (a_ts * s_s**2 / s_t**2) * x + (a_s * var_ts / s_t**2) * x0
        if s_s > 0:
            x = x + math.sqrt(var_ts * s_s**2 / s_t**2) * _randn(x, generator)
        x = _check(x, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


def _multistep_order(order: int, i: int, n: int, final_zero: bool, lower_order_final: bool) -> int:
    """Order of step i of n: warm up from 1, and lower it over the last steps when the grid
    ends at t = 0 (required there) or when few steps are taken (diffusers' rule, < 15)."""
    k = min(order, i + 1)
    if final_zero or (lower_order_final and n < 15):
        k = min(k, n - i)
    return k


def _dpmpp_multistep(denoise, x, ts, schedule, order, lower_order_final, callback):
    """DPM-Solver++ multistep in data prediction (Lu et al. 2022, Alg. 2; third order as
    in Zheng et al. 2023 / diffusers). Variables: h = lambda_s - lambda_t, r = h_prev / h."""
    T, A, S, L = _grid(schedule, ts)
    n = len(T) - 1
    final_zero = T[-1] <= 0.0
    hist_x0: list[torch.Tensor] = []
    hist_lam: list[float] = []
    for i in range(n):
        t, s, a_s, s_t, s_s, lam_t, lam_s = T[i], T[i + 1], A[i + 1], S[i], S[i + 1], L[i], L[i + 1]
        x0 = denoise(x, t)
        hist_x0 = (hist_x0 + [x0])[-3:]
        hist_lam = (hist_lam + [lam_t])[-3:]
        k = _multistep_order(order, i, n, final_zero, lower_order_final)
        phi = -math.expm1(-(lam_s - lam_t)) if math.isfinite(lam_s) else 1.0  # 1 - e^{-h}
        c = [a_s * phi]  # coefficients of x0_t, x0_prev, x0_prev2
        if k == 2:
            r0 = (lam_t - hist_lam[-2]) / (lam_s - lam_t)
            c = [a_s * phi * (1.0 + 0.5 / r0), -a_s * phi * 0.5 / r0]
        elif k == 3:
            h = lam_s - lam_t
            r0 = (lam_t - hist_lam[-2]) / h
            r1 = (hist_lam[-2] - hist_lam[-3]) / h
            # D1 = (1 + q) D1_0 - q D1_1, D2 = (D1_0 - D1_1) / (r0 + r1), D1_j = (x0_j - x0_j+1) / r_j
            q = r0 / (r0 + r1)
            b1 = a_s * (1.0 - phi / h)  # alpha_s ((e^{-h} - 1) / h + 1)
            b2 = a_s * ((h - phi) / h**2 - 0.5)  # alpha_s ((e^{-h} - 1 + h) / h^2 - 1/2)
            u = b1 * (1.0 + q) - b2 / (r0 + r1)
            v = -b1 * q + b2 / (r0 + r1)
            c = [a_s * phi + u / r0, -u / r0 + v / r1, -v / r1]
        x_new = torch.add((s_s / s_t) * x, x0, alpha=c[0])
        for coef, prev in zip(c[1:], reversed(hist_x0[:-1])):
            x_new.add_(prev, alpha=coef)
        x = _check(x_new, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


def dpmpp_2m(denoise: Denoise, x, ts, schedule, *, lower_order_final: bool = True, generator=None, callback=None):
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv:2211.01095), Alg. 2 (deterministic).

    x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) [(1 + 1/(2r)) x0_t - 1/(2r) x0_prev].
    """
    return _dpmpp_multistep(denoise, x, ts, schedule, 2, lower_order_final, callback)


def dpmpp_3m(denoise: Denoise, x, ts, schedule, *, lower_order_final: bool = True, generator=None, callback=None):
    """DPM-Solver++(3M): third-order multistep data-prediction solver (Lu et al. 2022;
    the 3M update of Zheng et al. 2023, UniPC / DPM-Solver-v3 appendix)."""
    return _dpmpp_multistep(denoise, x, ts, schedule, 3, lower_order_final, callback)


def _karras_grid(schedule, ts):
    """Times, alpha(t) and the VE noise level k = sigma / alpha (0 at t = 0) on the grid."""
    T, A, S, _ = _grid(schedule, ts)
    return T, A, [s / a for a, s in zip(A, S)]


def heun(denoise: Denoise, x, ts, schedule, *, generator=None, callback=None):
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1).

    In the VE frame y = x / alpha, k = sigma / alpha:  dy/dk = (y - x0_hat) / k.
    The step into k = 0 is an Euler step. NFE = 2 (len(ts) - 1) - [ts ends at 0].
    """
    T, A, K = _karras_grid(schedule, ts)
    for i in range(len(T) - 1):
        t, s, a_t, a_s, k_t, k_s = T[i], T[i + 1], A[i], A[i + 1], K[i], K[i + 1]
        y = x / a_t
        d = (y - denoise(x, t)) / k_t
        y_new = y + (k_s - k_t) * d
        if k_s > 0:
            d2 = (y_new - denoise(a_s * y_new, s)) / k_s
            y_new = y + (k_s - k_t) * 0.5 * (d + d2)
        x = _check(a_s * y_new, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


def euler_maruyama(denoise: Denoise, x, ts, schedule, *, generator=None, callback=None):
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021), in the VE frame.

    y = x / alpha, k = sigma / alpha, score = (x0_hat - y) / k^2:
    y_s = y_t + (k_t^2 - k_s^2) score + sqrt(k_t^2 - k_s^2) z.
    """
    T, A, K = _karras_grid(schedule, ts)
    for i in range(len(T) - 1):
        t, s, a_t, a_s, k_t, k_s = T[i], T[i + 1], A[i], A[i + 1], K[i], K[i + 1]
        y = x / a_t
        dk2 = k_t**2 - k_s**2
        y = y + dk2 * (denoise(x, t) - y) / k_t**2
        if k_s > 0:
            y = y + math.sqrt(dk2) * _randn(y, generator)
        x = _check(a_s * y, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


SOLVERS: dict[str, Callable] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "dpm++2m": dpmpp_2m,
    "dpm++3m": dpmpp_3m,
    "heun": heun,
    "euler-maruyama": euler_maruyama,
}
