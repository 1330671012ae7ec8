"""Forecasting and imputation by observation self-guidance (TSDiff, Kollovieh et al. 2023).

An unconditional model of windows ``x`` (context + prediction, with lag channels) is
steered at sampling time toward the observed entries ``y`` (mask ``m``): at each step the
predicted noise is corrected by the gradient of a loss between the denoised estimate
``x0_hat(x_t)`` and ``y`` on the observed entries (Eq. 8-9 of the paper):

    eps_guided = eps_hat + s sigma_t grad_{x_t} sum_m L(x0_hat(x_t), y)

with ``L`` the squared error (TSDiff-MS, a Gaussian observation model) or the pinball
loss at a quantile (TSDiff-Q, an asymmetric Laplace observation model). With the quantile
loss, sample path i of n is guided at quantile (i + 1) / (n + 1), which spreads the paths
over the predictive distribution. The correction is
:func:`sciogen.diffusion.observation_guidance`, so any core solver runs it; ``"ddim"`` is
TSDiff's DDIM guidance exactly, ``"ddpm"`` its DDPM guidance up to the factor
``(1 - abar_t) / ((1 - abar_{t-1}) sqrt(alpha_t))`` (close to 1 except in the last steps) on
the scale. Unknown entries (the future, missing context values, lags reaching before the
series) are simply unobserved.

With ``replace=True`` the observed entries are in addition *replaced* before each network
call by a fresh draw of q(x_t | y) and kept exactly in the clean estimate
(:func:`sciogen.diffusion.inpaint`, Song et al. 2021); guidance (if ``scale > 0``) then only
moves the unobserved entries. This is not in the TSDiff paper; it pins the context that
guidance alone matches only loosely with few solver steps (measured on exchange rates, see
the domain card).

Sampling runs on the discrete steps of the trained schedule (:func:`discrete_grid`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from sciogen.diffusion import DiscreteSchedule, inpaint, observation_guidance, sample

from .features import forecast_windows, make_state

__all__ = ["discrete_grid", "guided_sample", "forecast_samples", "unnormalize", "check_finite", "check_stats"]


def check_finite(x: torch.Tensor | np.ndarray, where: str) -> None:
    """Raise :class:`FloatingPointError` naming ``where`` (the step of a sampling loop) if ``x``
    holds NaN or inf, as the core solvers do: such values never reach a returned forecast."""
    values = torch.as_tensor(x)
    if not bool(torch.isfinite(values).all()):
        raise FloatingPointError(
            f"non-finite values appeared in {where}; check the model's weights and the scale of the inputs, "
            "or lower the guidance scale"
        )


def check_stats(loc: torch.Tensor, scale: torch.Tensor, what: str = "context") -> None:
    """Refuse (ValueError) normalisation statistics that are not finite: values so large
    that their mean or spread overflows float64."""
    bad = ~(torch.isfinite(loc) & torch.isfinite(scale))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise ValueError(f"{what} {i}: its values are too large to normalise (location {float(loc[i]):g}, scale "
                         f"{float(scale[i]):g}); rescale the series (e.g. divide by 1e6) before forecasting")


def discrete_grid(num_steps: int, steps: int) -> torch.Tensor:
    """A decreasing grid of ``steps`` discrete times (k + 1) / N, from k = N - 1 to k = 0,
    spaced uniformly in k (TSDiff's DDIM skipping), followed by t = 0 (the clean estimate)."""
    steps = int(min(max(steps, 1), num_steps))
    ks = np.unique(np.round(np.linspace(num_steps - 1, 0, steps)).astype(np.int64))[::-1]
    ts = (ks + 1.0) / num_steps
    return torch.tensor(np.append(ts, 0.0), dtype=torch.float64)


def guided_sample(
    model: nn.Module,
    observed: torch.Tensor,
    mask: torch.Tensor,
    *,
    schedule: DiscreteSchedule,
    solver: Literal["ddpm", "ddim"] = "ddpm",
    steps: int = 100,
    scale: float = 8.0,
    loss: Literal["quantile", "mse"] = "quantile",
    quantiles: torch.Tensor | None = None,
    eta: float = 0.0,
    replace: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw windows guided toward ``observed`` where ``mask`` is 1.

    Shapes: observed, mask (B, T, C); quantiles (B,) (quantile loss; default 0.5) -> (B, T, C).
    With ``scale = 0`` (and ``replace`` off) or an empty mask this is unconditional sampling;
    ``replace`` replaces the observed entries (module docstring).
    """
    if solver not in ("ddpm", "ddim"):
        raise ValueError(f"unknown guidance solver {solver!r}; allowed: ddpm, ddim")
    device = next(model.parameters()).device
    observed, mask = observed.to(device), mask.to(device)
    x_T = torch.randn(observed.shape, generator=generator, device=device)
    if quantiles is None:
        quantiles = torch.full((observed.shape[0],), 0.5)
    q = quantiles.to(device=device, dtype=torch.float32)[:, None, None]
    guided = model
    if scale > 0 and bool(mask.any()):
        guided = observation_guidance(model, observed, mask, schedule=schedule, prediction="eps", scale=scale,
                                      loss=loss, quantile=q)
    if replace and bool(mask.any()):
        guided = inpaint(guided, observed, mask, schedule=schedule, prediction="eps", generator=generator)
    options = {"eta": eta} if solver == "ddim" else None
    grid = discrete_grid(schedule.num_steps, steps)
    return sample(guided, x_T, schedule=schedule, prediction="eps", solver=solver, grid=grid, generator=generator,
                  solver_options=options)


def unnormalize(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Back to data units: ``x * scale + loc`` with (B,) statistics broadcast over the rest."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    return x * scale.reshape(shape).to(x) + loc.reshape(shape).to(x)


def forecast_samples(
    model: nn.Module,
    pasts: Sequence[np.ndarray],
    *,
    lags: Sequence[int],
    context_length: int,
    prediction_length: int,
    normalization: str,
    schedule: DiscreteSchedule,
    num_samples: int = 100,
    solver: Literal["ddpm", "ddim"] = "ddpm",
    steps: int = 100,
    scale: float = 8.0,
    loss: Literal["quantile", "mse"] = "quantile",
    eta: float = 0.0,
    replace: bool = False,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Sample paths of the next ``prediction_length`` values of each past.

    Args:
        pasts: B arrays of past values in data units (NaN = missing), each with at least
            ``context_length`` values; the last ``max(lags)`` values before the context feed
            the lag channels where available.
        num_samples: paths per series.
        batch_size: paths per network call (rounded to whole series).

    Returns:
        float64 array (B, num_samples, prediction_length) in data units.
    """
    max_lag = max(lags) if lags else 0
    windows = forecast_windows(pasts, context_length, prediction_length, max_lag)
    x_obs, mask, loc, scl = make_state(windows, lags, context_length, prediction_length, normalization)
    check_stats(loc, scl)
    per_call = max(1, batch_size // num_samples)
    q = (torch.arange(num_samples, dtype=torch.float32) + 1.0) / (num_samples + 1.0)
    out = []
    for i in range(0, len(pasts), per_call):
        obs = x_obs[i : i + per_call].repeat_interleave(num_samples, 0)
        m = mask[i : i + per_call].repeat_interleave(num_samples, 0)
        x = guided_sample(model, obs, m, schedule=schedule, solver=solver, steps=steps, scale=scale, loss=loss,
                          quantiles=q.repeat(obs.shape[0] // num_samples), eta=eta, replace=replace, generator=generator)
        y = x[:, -prediction_length:, 0].double().cpu().reshape(-1, num_samples, prediction_length)
        y = unnormalize(y, loc[i : i + per_call], scl[i : i + per_call])
        check_finite(y, f"the forecast of contexts {i} to {i + len(y) - 1} (back in data units)")
        out.append(y)
    return torch.cat(out).numpy()
