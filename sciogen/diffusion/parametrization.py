"""The one place where eps / x0 / v / flow / score predictions are converted into each other.

With ``x_t = alpha x0 + sigma eps``:

    x0    = (x_t - sigma eps) / alpha
    eps   = (x_t - alpha x0) / sigma
    score = -eps / sigma

    v     = alpha eps - sigma x0                  (Salimans & Ho 2022; variance-preserving
    x0    = alpha x_t - sigma v,                   schedules only, alpha^2 + sigma^2 = 1)
    eps   = sigma x_t + alpha v

    flow  = d x_t / dt = alpha' x0 + sigma' eps   (the flow velocity of flow matching /
    x0    = (sigma' x_t - sigma flow) / det        rectified flow, Lipman et al. 2023, Liu et
    eps   = (alpha flow - alpha' x_t) / det        al. 2023; any schedule; ' = d / dt)
    det   = alpha sigma' - sigma alpha'

``"v"`` is VP's v-prediction (the velocity of the angle parametrization); ``"flow"`` is the
time derivative of x_t along the schedule, e.g. ``eps - x0`` for rectified flow
(alpha = 1 - t, sigma = t), and needs the schedule's derivatives ``d_alpha, d_sigma``
(:meth:`sciogen.diffusion.Schedule.derivatives`). No solver or loss re-derives these formulas.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["PREDICTIONS", "Prediction", "check_prediction", "expand_time", "to_x0", "to_eps", "from_x0", "convert"]

Prediction = Literal["eps", "x0", "v", "flow"]
PREDICTIONS = ("eps", "x0", "v", "flow")


def check_prediction(prediction: str, schedule=None) -> str:
    """``prediction`` if it is known (and, given a schedule, defined for it), else a ValueError."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
    if prediction == "v" and schedule is not None and not schedule.variance_preserving:
        raise ValueError(f"prediction 'v' is defined for variance-preserving schedules only, not {schedule!r}; "
                         "use 'flow' (the flow velocity d x_t / dt), 'x0' or 'eps'")
    return prediction


def expand_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Append trailing singleton dimensions so a per-sample (B,) or per-token (B, N) time
    (or a coefficient computed from it) broadcasts against ``x``.

    Shapes: t (B,) or (B, N, ...), a prefix of x's shape; a 0-d t broadcasts as it is.
    """
    if t.ndim == 0:
        return t
    if t.ndim > x.ndim or not _broadcastable_prefix(t, x):
        raise ValueError(
            f"time of shape {tuple(t.shape)} does not broadcast against a state of shape {tuple(x.shape)}: "
            "give one time per sample (B,) or per leading position (B, N, ...)"
        )
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def _broadcastable_prefix(t: torch.Tensor, x: torch.Tensor) -> bool:
    return all(a == b or a == 1 for a, b in zip(t.shape, x.shape))


def _derivatives(d_alpha, d_sigma):
    if d_alpha is None or d_sigma is None:
        raise ValueError(
            "the flow prediction needs the schedule's derivatives: pass d_alpha, d_sigma = "
            "schedule.derivatives(t) to the conversion"
        )
    return d_alpha, d_sigma


def to_x0(pred, x_t, alpha, sigma, prediction: str, d_alpha=None, d_sigma=None):
    """Predicted clean sample from a model output of kind ``prediction``.

    ``d_alpha, d_sigma`` (d alpha / dt, d sigma / dt) are needed by ``"flow"`` only.
    """
    if prediction == "x0":
        return pred
    if prediction == "eps":
        return (x_t - sigma * pred) / alpha
    if prediction == "v":
        return alpha * x_t - sigma * pred
    if prediction == "flow":
        da, ds = _derivatives(d_alpha, d_sigma)
        det = alpha * ds - sigma * da
        return (ds / det) * x_t - (sigma / det) * pred
    check_prediction(prediction)


def to_eps(pred, x_t, alpha, sigma, prediction: str, d_alpha=None, d_sigma=None):
    """Predicted noise from a model output of kind ``prediction``."""
    if prediction == "eps":
        return pred
    if prediction == "x0":
        return (x_t - alpha * pred) / sigma
    if prediction == "v":
        return sigma * x_t + alpha * pred
    if prediction == "flow":
        da, ds = _derivatives(d_alpha, d_sigma)
        return (alpha * pred - da * x_t) / (alpha * ds - sigma * da)
    check_prediction(prediction)


def from_x0(x0, x_t, alpha, sigma, prediction: str, d_alpha=None, d_sigma=None):
    """Express a clean-sample estimate as a model output of kind ``prediction``."""
    if prediction == "x0":
        return x0
    eps = (x_t - alpha * x0) / sigma
    if prediction == "eps":
        return eps
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "flow":
        da, ds = _derivatives(d_alpha, d_sigma)
        return da * x0 + ds * eps
    check_prediction(prediction)


def convert(pred, x_t, alpha, sigma, source: str, target: str, d_alpha=None, d_sigma=None):
    """Convert a prediction of kind ``source`` into kind ``target``
    (``"eps" | "x0" | "v" | "flow" | "score"``); ``d_alpha, d_sigma`` only for ``"flow"``."""
    if target == "score":
        return -to_eps(pred, x_t, alpha, sigma, source, d_alpha, d_sigma) / sigma
    check_prediction(target)
    if source == target:
        return pred
    if target == "eps":
        return to_eps(pred, x_t, alpha, sigma, source, d_alpha, d_sigma)
    x0 = to_x0(pred, x_t, alpha, sigma, source, d_alpha, d_sigma)
    return from_x0(x0, x_t, alpha, sigma, target, d_alpha, d_sigma)
