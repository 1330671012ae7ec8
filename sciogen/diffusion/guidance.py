"""Guidance as wrappers of the model callable, so every solver gets it.

Each function takes ``model(x_t, t, **cond) -> prediction`` and returns a callable with the
same contract. Conversions go through :mod:`.parametrization`.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping

import torch

from .parametrization import check_prediction, convert, expand_time, from_x0, to_eps, to_x0
from .schedules import Schedule, make_schedule

__all__ = ["classifier_free", "inpaint", "observation_guidance"]


def classifier_free(model: Callable, scale: float, null_cond: dict | None = None) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022): ``u + scale (c - u)``.

    ``c = model(x, t, **cond)``, ``u = model(x, t, **null_cond)``; ``null_cond`` defaults to
    every condition set to ``None`` (the model must then drop it, as when trained with
    condition dropout). ``scale = 1`` is the plain conditional model, ``0`` the unconditional.
    A model of several named fields (returning a dict) is guided field by field.
    """

    def guided(x_t, t, **cond):
        c = model(x_t, t, **cond)
        if scale == 1.0:
            return c
        uncond = dict(cond)
        uncond.update({k: None for k in cond} if null_cond is None else null_cond)
        u = model(x_t, t, **uncond)
        if isinstance(c, Mapping):
            return {name: u[name] + scale * (c[name] - u[name]) for name in c}
        return u + scale * (c - u)

    return guided


def _coefficients(schedule: Schedule, t: torch.Tensor, x: torch.Tensor, prediction: str) -> tuple[torch.Tensor, ...]:
    """(alpha, sigma) at t, broadcast against x, followed by the schedule's derivatives
    (d alpha / dt, d sigma / dt) when the model predicts the flow velocity."""
    t = t if torch.is_tensor(t) else torch.tensor(t)
    t64 = t.double()
    columns = [schedule.alpha(t64), schedule.sigma(t64)]
    if prediction == "flow":
        columns += list(schedule.derivatives(t64))
    return tuple(expand_time(c, x).to(x.dtype) for c in columns)


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
    check_prediction(prediction, schedule)
    mask = mask.bool()

    def guided(x_t, t, **cond):
        alpha, sigma, *derivatives = _coefficients(schedule, t, x_t, prediction)
        noise = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        x_in = torch.where(mask, alpha * known.to(x_t.dtype) + sigma * noise, x_t)
        x0 = to_x0(model(x_in, t, **cond), x_in, alpha, sigma, prediction, *derivatives)
        x0 = torch.where(mask, known.to(x0.dtype), x0)
        return from_x0(x0, x_t, alpha, sigma, prediction, *derivatives)

    return guided


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
    check_prediction(prediction, schedule)
    if loss not in ("mse", "quantile"):
        raise ValueError(f"unknown guidance loss {loss!r}; allowed: mse, quantile")
    mask_f = mask.float()

    def guided(x_t, t, **cond):
        alpha, sigma, *derivatives = _coefficients(schedule, t, x_t, prediction)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            pred = model(x, t, **cond)
            x0 = to_x0(pred, x, alpha, sigma, prediction, *derivatives)
            diff = observed.to(x0.dtype) - x0
            if loss == "mse":
                err = diff**2
            else:
                err = torch.maximum(quantile * diff, (quantile - 1.0) * diff)
            (grad,) = torch.autograd.grad((err * mask_f).sum(), x)
        eps = to_eps(pred.detach(), x_t, alpha, sigma, prediction, *derivatives) + scale * sigma * grad
        return convert(eps, x_t, alpha, sigma, "eps", prediction, *derivatives)

    return guided


# moved to .testing (issue 23): importable from here only until sciogen/diffusion/__init__.py stops exporting them
from .testing import repaint, smc_inpaint  # noqa: E402,F401
