"""Gaussian diffusion and flow matching: noising, training targets and losses.

Forward process: ``x_t = alpha(t) x_0 + sigma(t) eps``, ``eps ~ N(0, I)``, with a
variance-preserving schedule or any other (rectified flow: alpha = 1 - t, sigma = t).
The network predicts ``eps``, ``x0``, ``v`` (VP only) or the flow velocity ``flow`` =
d x_t / dt (flow matching's regression target); conversions live in
:mod:`sciogen.diffusion.parametrization`.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

from .parametrization import check_prediction, expand_time, from_x0, to_x0
from .schedules import Schedule, make_schedule
from .times import masked_mean, stratified_times

__all__ = ["GaussianProcess", "LOSS_WEIGHTINGS"]

LOSS_WEIGHTINGS = ("none", "snr", "min_snr", "x0")


class GaussianProcess:
    """Gaussian diffusion of one tensor field.

    Args:
        schedule: a :class:`Schedule` or its name (``"flow"``: rectified flow).
        prediction: what the network outputs: ``"eps"``, ``"x0"``, ``"v"`` (VP schedules) or
            ``"flow"`` (the velocity alpha' x0 + sigma' eps; with the flow schedule and
            ``loss_weighting="none"`` this is conditional flow matching, Lipman et al. 2023).
        loss_weighting: ``"none"`` (plain MSE on the prediction target), ``"x0"`` (MSE in
            x0 space whatever the prediction), ``"snr"`` (the eps-MSE weighted by SNR, i.e.
            equivalent to ``"x0"`` for eps models) or ``"min_snr"`` (Hang et al. 2023,
            weight min(SNR, gamma) expressed relative to the prediction target).
        min_snr_gamma: gamma of ``"min_snr"``.
    """

    kind = "gaussian"

    def __init__(
        self,
        schedule: Schedule | str = "linear",
        prediction: Literal["eps", "x0", "v", "flow"] = "eps",
        loss_weighting: Literal["none", "snr", "min_snr", "x0"] = "none",
        min_snr_gamma: float = 5.0,
    ):
        self.schedule = make_schedule(schedule)
        self.prediction = check_prediction(prediction, self.schedule)
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"unknown loss_weighting {loss_weighting!r}; allowed: {', '.join(LOSS_WEIGHTINGS)}")
        self.loss_weighting = loss_weighting
        self.min_snr_gamma = float(min_snr_gamma)

    # -- forward process -------------------------------------------------------------
    def coefficients(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha(t), sigma(t) shaped to broadcast against x, in x's dtype."""
        t = torch.as_tensor(t, device=x.device)
        alpha = expand_time(self.schedule.alpha(t.double()), x).to(x.dtype)
        sigma = expand_time(self.schedule.sigma(t.double()), x).to(x.dtype)
        return alpha, sigma

    def derivatives(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Derivatives d alpha / dt, d sigma / dt shaped to broadcast against x, in x's dtype."""
        t = torch.as_tensor(t, device=x.device)
        d_alpha, d_sigma = self.schedule.derivatives(t.double())
        return expand_time(d_alpha, x).to(x.dtype), expand_time(d_sigma, x).to(x.dtype)

    def _velocity_args(self, t, x) -> tuple:
        """The derivatives a flow prediction's conversion needs (nothing for other kinds)."""
        return self.derivatives(t, x) if self.prediction == "flow" else ()

    def noise(
        self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw x_t ~ q(x_t | x_0). Returns ``(x_t, eps)``.

        Shapes: x0 (B, ...), t (B,) or a leading prefix of x0's shape (per token / block).
        """
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha, sigma = self.coefficients(t, x0)
        return alpha * x0 + sigma * eps, eps

    def prior(self, shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """A draw from the terminal distribution at t_max: N(0, I), or N(0, sigma(t_max)^2 I)
        for a schedule that is not variance preserving (:attr:`Schedule.prior_std`)."""
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return z if self.schedule.variance_preserving else z * self.schedule.prior_std

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target for this process's ``prediction``."""
        alpha, sigma = self.coefficients(t, x0)
        x_t = alpha * x0 + sigma * eps
        if self.prediction == "eps":
            return eps
        return from_x0(x0, x_t, alpha, sigma, self.prediction, *self._velocity_args(t, x0))

    def loss_weight(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Weight that multiplies the squared error of the prediction target at time t."""
        if self.loss_weighting == "none":
            return torch.ones((), dtype=x.dtype, device=x.device)
        alpha, sigma = self.coefficients(t, x)
        snr = (alpha / sigma) ** 2
        # weight w such that w * |pred - target|^2 equals the intended loss:
        # |eps err|^2 = snr |x0 err|^2, |v err|^2 = (snr + 1) |x0 err|^2 (VP),
        # |flow err|^2 = ((alpha' sigma - sigma' alpha) / sigma)^2 |x0 err|^2.
        if self.prediction == "flow":
            d_alpha, d_sigma = self.derivatives(t, x)
            to_x0 = (sigma / (d_alpha * sigma - d_sigma * alpha)) ** 2
        else:
            to_x0 = {"eps": 1.0 / snr, "x0": torch.ones_like(snr), "v": 1.0 / (snr + 1.0)}[self.prediction]
        if self.loss_weighting == "x0":
            return to_x0
        if self.loss_weighting == "snr":
            return to_x0 * snr
        # min-SNR-gamma: x0-space weight min(snr, gamma)
        return to_x0 * torch.clamp(snr, max=self.min_snr_gamma)

    def sample_time(self, batch: int, generator=None, device=None, t_min: float | None = None) -> torch.Tensor:
        """Training times, uniform on [t_min, 1] with low-discrepancy (stratified) offsets."""
        t_min = self.schedule.t_min if t_min is None else t_min
        return stratified_times(batch, t_min, generator, device)

    def loss(
        self,
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **cond,
    ) -> torch.Tensor:
        """Per-sample denoising loss, shape (B,).

        Draws t (unless given) and eps, calls ``model(x_t, t, **cond)`` and returns the
        weighted mean squared error of its prediction; ``mask`` (broadcastable to x0, 1 =
        counts) leaves out padded or missing entries.
        """
        if t is None:
            t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        x_t, eps = self.noise(x0, t, generator=generator)
        return self.prediction_loss(model(x_t, t, **cond), x0, eps, t, mask)

    def prediction_loss(self, pred, x0, eps, t, mask=None) -> torch.Tensor:
        """Per-sample weighted squared error of a prediction made at (x_t(x0, eps), t); (B,)."""
        if pred.shape != x0.shape:
            raise ValueError(f"model output has shape {tuple(pred.shape)}, expected {tuple(x0.shape)}")
        err = (pred - self.target(x0, eps, t)) ** 2 * self.loss_weight(t, x0)
        return masked_mean(err, mask)

    # -- reverse process ---------------------------------------------------------------
    def step(self, x_t: torch.Tensor, pred: torch.Tensor, t, s, generator: torch.Generator | None = None) -> torch.Tensor:
        """One ancestral step x_t -> x_s ~ q(x_s | x_t, x0_hat) (DDPM posterior, Ho et al. 2020 Eq. 7).

        ``pred`` is the model's output at (x_t, t); t, s of shape (B,) or a prefix of x_t's
        shape; s = 0 returns x0_hat. For one tensor prefer :func:`sciogen.diffusion.sample`
        (all solvers); this step serves joint sampling of several fields.
        """
        a_t, s_t = self.coefficients(t, x_t)
        s = torch.as_tensor(s, device=x_t.device)
        a_s, s_s = self.coefficients(s, x_t)
        x0 = to_x0(pred.to(x_t.dtype), x_t, a_t, s_t, self.prediction, *self._velocity_args(t, x_t))
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        mean = a_ts * s_s**2 / s_t**2 * x_t + a_s * var_ts / s_t**2 * x0
        z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + (var_ts * s_s**2 / s_t**2).clamp_min(0).sqrt() * z

