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

Every solver holds for any schedule ``x_t = alpha x0 + sigma eps`` (variance preserving or not,
e.g. rectified flow, where alpha(1) = 0 and lambda(1) = -inf): none assumes alpha^2 + sigma^2 = 1.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedules import Schedule

__all__ = ["ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "euler", "heun", "euler_maruyama", "SOLVERS"]

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
    c   = eta sigma_s / sigma_t sqrt(sigma_t^2 - alpha_ts^2 sigma_s^2),  alpha_ts = alpha_t / alpha_s
    (Eq. 16, for any schedule: with eta = 1, c^2 is the variance of the DDPM posterior
    q(x_s | x_t, x0); for a VP schedule the root is sqrt(1 - alpha_ts^2)).
    """
    T, A, S, _ = _grid(schedule, ts)
    for i in range(len(T) - 1):
        t, s, a_t, a_s, s_t, s_s = T[i], T[i + 1], A[i], A[i + 1], S[i], S[i + 1]
        x0 = denoise(x, t)
        c = 0.0
        if eta > 0 and s_s > 0:
            c = eta * s_s / s_t * math.sqrt(max(0.0, s_t**2 - (a_t / a_s) ** 2 * s_s**2))
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


def _unipc_rhos(h: float, rks: list[float], variant: str) -> tuple[list[float], list[float]]:
    """UniP and UniC weights of one step of order k = len(rks) + 1 (Zhao et al. 2023, Alg. 2-3,
    data prediction): ``rks`` are (lambda_j - lambda_t) / h of the k - 1 earlier outputs.

    With hh = -h, B(h) = hh ("bh1") or e^hh - 1 ("bh2") and g_1 = (e^hh - 1) / hh - 1,
    g_{j+1} = g_j / hh - 1 / (j + 1)!, the weights solve sum_m rho_m r_m^(j-1) = g_j j! / B(h),
    j = 1..k over the nodes (r_1..r_{k-1}, 1) (corrector) or (r_1..r_{k-1}) (predictor); the
    paper's closed forms rho = 1/2 are used for the one-node systems (UniP-2, UniC-1).
    """
    hh = -h
    b_h = hh if variant == "bh1" else math.expm1(hh)
    g, fact, rhs = math.expm1(hh) / hh - 1.0, 1.0, []
    for j in range(1, len(rks) + 2):
        rhs.append(g * fact / b_h)
        fact *= j + 1
        g = g / hh - 1.0 / fact
    nodes = rks + [1.0]
    predictor = [] if not rks else [0.5] if len(rks) == 1 else _solve(
        [[r**j for r in rks] for j in range(len(rks))], rhs[: len(rks)])
    corrector = [0.5] if not rks else _solve([[r**j for r in nodes] for j in range(len(nodes))], rhs)
    return predictor, corrector


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve a small dense linear system (Gaussian elimination with partial pivoting)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            m[r] = [u - f * v for u, v in zip(m[r], m[c])]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def _unipc_plan(ts, schedule, order, variant, lower_order_final):
    """Per step: the order k and the coefficients of x_t, x0_t and the earlier outputs in the
    UniP prediction and (on the grid's next point) in the UniC correction, computed once."""
    T, A, S, L = _grid(schedule, ts)
    n = len(T) - 1
    final_zero = T[-1] <= 0.0
    plan = []
    for i in range(n):
        k = _multistep_order(order, i, n, final_zero, lower_order_final)
        # earlier outputs at lambda = -inf (alpha = 0, e.g. rectified flow at t = 1) carry no slope
        while k > 1 and not math.isfinite(L[i - k + 1]):
            k -= 1
        a_s, s_t, s_s, lam_t, lam_s = A[i + 1], S[i], S[i + 1], L[i], L[i + 1]
        if not math.isfinite(lam_s):  # the last step to t = 0: x_s = x0_t
            plan.append((k, (0.0, [1.0]), None))
            continue
        if not math.isfinite(lam_t):  # from alpha = 0 (flow at t = 1): DDIM, no correction
            plan.append((k, (s_s / s_t, [a_s]), None))
            continue
        h = lam_s - lam_t
        rks = [(L[i - j] - lam_t) / h for j in range(1, k)]
        rho_p, rho_c = _unipc_rhos(h, rks, variant)
        b_h = -h if variant == "bh1" else math.expm1(-h)
        base = [-a_s * math.expm1(-h)]  # x_s = (s_s / s_t) x_t + alpha_s (1 - e^{-h}) x0_t + ...

        def combine(rhos, with_new):
            # - alpha_s B(h) sum_m rho_m D_m, D_m = (x0_m - x0_t) / r_m (D_new = x0_new - x0_t)
            coef = base + [0.0] * (k - 1) + ([0.0] if with_new else [])
            for m, rho in enumerate(rhos):
                r = rks[m] if m < len(rks) else 1.0
                w = -a_s * b_h * rho / r
                coef[0] -= w
                coef[m + 1 if m < len(rks) else k] += w
            return s_s / s_t, coef

        plan.append((k, combine(rho_p, False), combine(rho_c, True)))
    return T, plan


def unipc(denoise: Denoise, x, ts, schedule, *, order: int = 2, variant: str = "bh2", corrector: bool = True,
          lower_order_final: bool = True, generator=None, callback=None):
    """UniPC, Zhao et al. 2023 (arXiv:2302.04867), Alg. 2-3 in data prediction: the UniP-p
    multistep predictor, then on the next grid point the UniC corrector with the model output
    already computed there (no extra model call), orders p = 1..3.

    x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) x0_t - alpha_s B(h) sum_m rho_m D_m,
    D_m = (x0_m - x0_t) / r_m, r_m = (lambda_m - lambda_t) / h, B(h) = -h ("bh1", the paper's
    choice for few unconditional steps) or e^{-h} - 1 ("bh2"). UniP-1 is DDIM and UniP-2 with
    "bh2" is DPM-Solver++(2M); the corrector raises the order by one (UniPC-p has order p + 1).
    ``corrector=False`` gives UniP alone. The state passed to ``callback`` is the prediction.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"unipc order must be 1, 2 or 3, got {order}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unipc variant must be 'bh1' or 'bh2', got {variant!r}")
    T, plan = _unipc_plan(ts, schedule, order, variant, lower_order_final)
    hist: list[torch.Tensor] = []  # x0 predictions at the grid points so far, newest last
    x_prev = x
    for i, (k, (cx, coef), _) in enumerate(plan):
        x0 = denoise(x, T[i])
        if corrector and i > 0 and plan[i - 1][2] is not None:  # UniC: correct the state at T[i]
            k_c, _, (cx_c, coef_c) = plan[i - 1]                  # with the output just computed there
            x = _check(_combine(cx_c, x_prev, coef_c, hist[::-1][:k_c] + [x0]), i - 1, T[i])
        hist = (hist + [x0])[-3:]
        x_prev = x
        x = _check(_combine(cx, x, coef, hist[::-1][:k]), i, T[i + 1])
        if callback is not None:
            callback(i, T[i + 1], x)
    return x


def _combine(cx: float, x: torch.Tensor, coef: list[float], outputs: list[torch.Tensor]) -> torch.Tensor:
    """Return cx x + sum_j coef_j outputs_j."""
    out = x * cx
    for c, o in zip(coef, outputs):
        if c != 0.0:
            out.add_(o, alpha=c)
    return out


def _frame(schedule, ts, frame):
    """Times, the frame scale c and the frame's noise level tau on the grid: the ODE in
    y = x / c reads dy / dtau = (y - x0_hat) / tau.

    ``"ve"``: c = alpha, tau = sigma / alpha (Karras et al. 2022); ``"flow"``: c = alpha + sigma,
    tau = sigma / (alpha + sigma) (rectified flow's own frame, finite where alpha = 0).
    At t = 0: c = 1, tau = 0.
    """
    T, A, S, _ = _grid(schedule, ts)
    if frame == "ve":
        if A[0] <= 0.0:
            raise ValueError(f"the 've' frame needs alpha > 0 on the grid, but alpha(t = {T[0]:g}) = 0: "
                             "use frame='flow' (the default for flow schedules) or start below t = 1")
        return T, A, [s / a for a, s in zip(A, S)]
    if frame == "flow":
        return T, [a + s for a, s in zip(A, S)], [s / (a + s) for a, s in zip(A, S)]
    raise ValueError(f"unknown ODE frame {frame!r}; allowed: ve, flow")


def euler(denoise: Denoise, x, ts, schedule, *, generator=None, callback=None):
    """Euler's method on the probability-flow ODE, dy / dtau = (y - x0_hat) / tau in either frame
    of :func:`heun`. The exact solution for a frozen x0_hat is linear in tau, so Euler's step is
    exact for it and equals the DDIM update (eta = 0) for any schedule; it is computed as that.
    For a flow schedule it is flow matching's Euler sampler x_s = x_t + (s - t) flow_hat.
    One model call per step."""
    return ddim(denoise, x, ts, schedule, callback=callback)


def heun(denoise: Denoise, x, ts, schedule, *, frame: str | None = None, generator=None, callback=None):
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1).

    In the frame y = x / c, tau: dy/dtau = (y - x0_hat) / tau. ``frame``: ``"ve"`` (c = alpha,
    tau = sigma / alpha, Karras's) or ``"flow"`` (c = alpha + sigma, tau = sigma / (alpha + sigma));
    default: the schedule's ``ode_frame`` ("flow", bounded where alpha -> 0 as on VP schedules
    at t = 1, except "ve" for VE schedules). The step into tau = 0 is an Euler step.
    NFE = 2 (len(ts) - 1) - [ts ends at 0].
    """
    T, C, K = _frame(schedule, ts, frame or getattr(schedule, "ode_frame", "flow"))
    for i in range(len(T) - 1):
        t, s, c_t, c_s, k_t, k_s = T[i], T[i + 1], C[i], C[i + 1], K[i], K[i + 1]
        y = x / c_t
        d = (y - denoise(x, t)) / k_t
        y_new = y + (k_s - k_t) * d
        if k_s > 0:
            d2 = (y_new - denoise(c_s * y_new, s)) / k_s
            y_new = y + (k_s - k_t) * 0.5 * (d + d2)
        x = _check(c_s * y_new, i, s)
        if callback is not None:
            callback(i, s, x)
    return x


def euler_maruyama(denoise: Denoise, x, ts, schedule, *, generator=None, callback=None):
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021), in the VE frame.

    y = x / alpha, k = sigma / alpha, score = (x0_hat - y) / k^2:
    y_s = y_t + (k_t^2 - k_s^2) score + sqrt(k_t^2 - k_s^2) z. Needs alpha > 0 on the grid (a
    flow schedule's t = 1 has alpha = 0: start below it, or use ``ddpm``).
    """
    T, A, K = _frame(schedule, ts, "ve")
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
    "unipc": unipc,
    "euler": euler,
    "heun": heun,
    "euler-maruyama": euler_maruyama,
}
