"""The one place where eps / x0 / v / score predictions are converted into each other.

With ``x_t = alpha x0 + sigma eps`` (variance preserving, alpha^2 + sigma^2 = 1):

    x0    = (x_t - sigma eps) / alpha
    eps   = (x_t - alpha x0) / sigma
    v     = alpha eps - sigma x0                  (Salimans & Ho 2022)
    x0    = alpha x_t - sigma v,   eps = sigma x_t + alpha v
    score = -eps / sigma

No solver or loss re-derives these formulas.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["PREDICTIONS", "Prediction", "check_prediction", "expand_time", "to_x0", "to_eps", "from_x0", "convert"]

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS = ("eps", "x0", "v")


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
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


def to_x0(pred, x_t, alpha, sigma, prediction: str):
    """Predicted clean sample from a model output of kind ``prediction``."""
    if prediction == "x0":
        return pred
    if prediction == "eps":
        return (x_t - sigma * pred) / alpha
    if prediction == "v":
        return alpha * x_t - sigma * pred
    check_prediction(prediction)


def to_eps(pred, x_t, alpha, sigma, prediction: str):
    """Predicted noise from a model output of kind ``prediction``."""
    if prediction == "eps":
        return pred
    if prediction == "x0":
        return (x_t - alpha * pred) / sigma
    if prediction == "v":
        return sigma * x_t + alpha * pred
    check_prediction(prediction)


def from_x0(x0, x_t, alpha, sigma, prediction: str):
    """Express a clean-sample estimate as a model output of kind ``prediction``."""
    if prediction == "x0":
        return x0
    eps = (x_t - alpha * x0) / sigma
    if prediction == "eps":
        return eps
    if prediction == "v":
        return alpha * eps - sigma * x0
    check_prediction(prediction)


def convert(pred, x_t, alpha, sigma, source: str, target: str):
    """Convert a prediction of kind ``source`` into kind ``target`` (``"eps" | "x0" | "v" | "score"``)."""
    if target == "score":
        return -to_eps(pred, x_t, alpha, sigma, source) / sigma
    check_prediction(target)
    if source == target:
        return pred
    if target == "eps":
        return to_eps(pred, x_t, alpha, sigma, source)
    return from_x0(to_x0(pred, x_t, alpha, sigma, source), x_t, alpha, sigma, target)
