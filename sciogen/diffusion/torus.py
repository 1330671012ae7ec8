"""Wrapped-normal diffusion on the torus [0, 1)^d, for periodic (fractional) coordinates.

Variance-exploding process of DiffCSP (Jiao et al. 2023, "Crystal Structure Prediction by
Joint Equivariant Diffusion"), per coordinate:

    x_t = w(x_0 + sigma(t) eps),   eps ~ N(0, 1),   w(x) = x - floor(x) in [0, 1)
    sigma(t) = sigma_min^(1 - t) sigma_max^t

The transition density is the wrapped normal, a sum over the periodic images k:

    p_sigma(x_t | x_0) = sum_k N(d + k; 0, sigma^2),   d = x_t - x_0 wrapped to [-0.5, 0.5)
    score = d/dx_t log p_sigma = -sum_k softmax_k(-(d + k)^2 / (2 sigma^2)) (d + k) / sigma^2

The network predicts the score divided by sqrt(E[score^2]) (``score_norm``), so that the
regression target has unit scale at every noise level. Sampling is DiffCSP's
predictor-corrector loop: an ancestral (reverse-diffusion) predictor and a Langevin
corrector (Song et al. 2021, "Score-Based Generative Modeling through SDEs", Alg. 2-3).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .parametrization import expand_time
from .times import masked_mean, stratified_times

__all__ = ["WrappedNormalProcess", "wrap_fractional", "wrap_displacement"]

#: images kept per side: K >= IMAGE_WIDTH * sigma keeps the truncation error below ~1e-17.
IMAGE_WIDTH = 9.0
#: points of the quadrature behind ``score_norm``, and of its interpolation table.
QUADRATURE_POINTS = 512
NORM_TABLE_POINTS = 256


def wrap_fractional(x: torch.Tensor) -> torch.Tensor:
    """Wrap coordinates into [0, 1) (rounding can never return 1.0)."""
    x = torch.remainder(x, 1.0)
    return torch.where(x >= 1.0, torch.zeros_like(x), x)


def wrap_displacement(d: torch.Tensor) -> torch.Tensor:
    """Wrap a displacement into [-0.5, 0.5), the shortest periodic representative."""
    return d - torch.floor(d + 0.5)


def images_needed(sigma: float) -> int:
    """Periodic images per side that the wrapped normal of width ``sigma`` needs."""
    return max(1, math.ceil(IMAGE_WIDTH * float(sigma)))


def _log_prob_and_score(d: torch.Tensor, sigma: torch.Tensor, n_images: int):
    """Log density and score of the wrapped normal at displacements d in [-0.5, 0.5).

    Sums the images k = -n_images .. n_images with one exponential per term (a shared
    log-sum-exp shift). Shapes: d and sigma broadcastable -> two tensors of the broadcast shape.
    """
    k = torch.arange(-n_images, n_images + 1, device=d.device, dtype=d.dtype)
    dk = d.unsqueeze(-1) + k  # (..., 2K + 1)
    var = sigma * sigma
    logits = dk * dk * (-0.5 / var).unsqueeze(-1)
    shift = logits.amax(-1, keepdim=True)
    weights = (logits - shift).exp()
    total = weights.sum(-1)
    log_prob = shift.squeeze(-1) + total.log() - 0.5 * torch.log(2.0 * math.pi * var)
    score = -(weights * dk).sum(-1) / (total * var)
    return log_prob, score


def _cubic_interpolate(table: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Cubic Lagrange interpolation of a table on the nodes 0 .. n-1 at fractional positions
    ``pos`` (clamped to [0, n - 1]), through the 4 nodes around each position."""
    n = table.numel()
    pos = pos.clamp(0, n - 1)
    i = pos.clamp(1, n - 3).floor().long()
    u = (pos - i).unsqueeze(-1)
    weights = torch.cat(
        [
            -u * (u - 1) * (u - 2) / 6,
            (u + 1) * (u - 1) * (u - 2) / 2,
            -(u + 1) * u * (u - 2) / 2,
            (u + 1) * u * (u - 1) / 6,
        ],
        dim=-1,
    )
    return (weights * table[i.unsqueeze(-1) + torch.arange(-1, 3, device=i.device)]).sum(-1)


def _score_norm_quadrature(sigma: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """E[score^2] under WN(0, sigma^2) by the midpoint rule, float64, for a 1-D tensor of sigmas.

    For sigma >= 1/24 the rule covers one whole period, where it converges spectrally for a
    smooth periodic integrand; for smaller sigma it covers [-12 sigma, 12 sigma] (the rest
    weighs e^-72).
    """
    sigma = sigma.double().flatten()
    n = QUADRATURE_POINTS
    u = (torch.arange(n, dtype=torch.float64, device=sigma.device) + 0.5) / n * 2.0 - 1.0
    out = []
    n_images = images_needed(float(sigma.max())) if sigma.numel() else 1
    for part in sigma.split(chunk):
        half = (12.0 * part).clamp(max=0.5).unsqueeze(-1)
        log_prob, score = _log_prob_and_score(half * u, part.unsqueeze(-1), n_images)
        out.append((log_prob.exp() * score * score).sum(-1) * (2.0 * half.squeeze(-1) / n))
    return torch.cat(out) if out else sigma.clone()


class WrappedNormalProcess:
    """Variance-exploding wrapped-normal diffusion of coordinates on [0, 1)^d (DiffCSP).

    Args:
        sigma_min, sigma_max: noise at t = 0 and t = 1 (DiffCSP: 0.005 and 0.5);
            sigma(t) = sigma_min^(1 - t) sigma_max^t.
        n_images: the least number of periodic images kept per side. Each call adds the
            images its largest sigma needs, ``ceil(9 sigma)`` (truncation error < 1e-17, so
            one image per side for sigma <= 1/9, five at sigma = 0.5); None (default) uses
            just those.

    Shapes: coordinates are fractional, any shape (B, ...) (e.g. (B, N, 3) for N atoms);
    times are (B,) or a leading prefix of it (per atom), or a scalar.
    """

    kind = "torus"

    def __init__(self, sigma_min: float = 0.005, sigma_max: float = 0.5, n_images: int | None = None):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if n_images is not None and (int(n_images) != n_images or n_images < 1):
            raise ValueError(f"n_images must be an integer >= 1 or None (automatic), got {n_images!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.n_images = None if n_images is None else int(n_images)
        self._norm_table: tuple[float, float, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"WrappedNormalProcess(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, n_images={self.n_images})"

    # -- noise levels ------------------------------------------------------------------
    def sigma(self, t) -> torch.Tensor:
        """sigma(t) = sigma_min^(1 - t) sigma_max^t, computed in float64, dtype of ``t``."""
        t = torch.as_tensor(t)
        t = t if t.is_floating_point() else t.double()
        log_sigma = (1.0 - t.double()) * math.log(self.sigma_min) + t.double() * math.log(self.sigma_max)
        return log_sigma.exp().to(t.dtype)

    def _sigma_like(self, t, x: torch.Tensor) -> torch.Tensor:
        t = _as_float_tensor(t).to(x.device)
        return expand_time(self.sigma(t.double()), x).to(x.dtype)

    def score_norm(self, sigma) -> torch.Tensor:
        """E[score^2] for x ~ WN(x_0, sigma^2), same shape and dtype as ``sigma``.

        Deterministic: a midpoint quadrature, tabulated once on a grid uniform in log sigma
        over [sigma_min, sigma_max] and interpolated with cubics in (log sigma, log norm)
        (relative error < 1e-6); sigmas outside the table are integrated directly. For small
        sigma it tends to 1 / sigma^2.
        """
        sigma = _as_float_tensor(sigma)
        log_lo, step, log_norm = self._table()
        log_norm = log_norm.to(sigma.device)
        pos = (sigma.double().log() - log_lo) / step
        inside = (pos >= 0) & (pos <= log_norm.numel() - 1)
        out = _cubic_interpolate(log_norm, pos.nan_to_num(0.0)).exp()
        if not bool(inside.all()):
            if bool((sigma <= 0).any()):
                raise ValueError("sigma must be > 0")
            out = out.clone()
            out[~inside] = _score_norm_quadrature(sigma.double()[~inside])
        return out.to(sigma.dtype)

    def _table(self) -> tuple[float, float, torch.Tensor]:
        if self._norm_table is None:
            lo, hi = math.log(self.sigma_min) - 0.05, math.log(self.sigma_max) + 0.05
            grid = torch.linspace(lo, hi, NORM_TABLE_POINTS, dtype=torch.float64)
            norm = _score_norm_quadrature(grid.exp())
            self._norm_table = (lo, (hi - lo) / (NORM_TABLE_POINTS - 1), norm.log())
        return self._norm_table

    # -- densities -----------------------------------------------------------------------
    def log_prob(self, x_t: torch.Tensor, x0: torch.Tensor, sigma) -> torch.Tensor:
        """Elementwise log p_sigma(x_t | x_0) of the wrapped normal (density on [0, 1)).

        Shapes: x_t, x0 (B, ...) broadcastable; sigma scalar, (B,) or a leading prefix of
        x_t's shape (per atom), or already shaped to broadcast (e.g. (B, 1, 1)) -> the
        broadcast shape of x_t and x0. Sum over the last dimensions for a joint density.
        """
        return self._evaluate(x_t, x0, sigma)[0]

    def score(self, x_t: torch.Tensor, x0: torch.Tensor, sigma) -> torch.Tensor:
        """Elementwise d/dx_t log p_sigma(x_t | x_0); shapes as :meth:`log_prob`."""
        return self._evaluate(x_t, x0, sigma)[1]

    def _evaluate(self, x_t, x0, sigma):
        dtype = torch.promote_types(torch.promote_types(x_t.dtype, x0.dtype), torch.float32)
        sigma = _as_float_tensor(sigma).to(x_t.device)
        sigma = expand_time(sigma, x_t) if sigma.ndim <= x_t.ndim else sigma
        lo = float(sigma.min())
        if lo <= 0:
            raise ValueError(f"sigma must be > 0, got a minimum of {lo}")
        d = wrap_displacement(x_t.to(dtype) - x0.to(dtype))
        return _log_prob_and_score(d, sigma.to(dtype), self._images(sigma))

    def _images(self, sigma: torch.Tensor) -> int:
        return max(self.n_images or 1, images_needed(float(sigma.max())))

    # -- forward process and training -------------------------------------------------
    def noise(
        self, x0: torch.Tensor, t, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw x_t = w(x_0 + sigma(t) eps). Returns ``(x_t, eps)``, x_t in [0, 1).

        Shapes: x0 (B, ...) fractional, t (B,) or a leading prefix of x0's shape.
        """
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return wrap_fractional(x0 + self._sigma_like(t, x0) * eps), eps

    def prior(self, shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
        """A draw from the uniform distribution on [0, 1)^d, the (near-)stationary state at t = 1."""
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)

    def target(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """The regression target score(x_t | x_0, sigma(t)) / sqrt(score_norm(sigma(t))), x0's shape."""
        sigma = self._sigma_like(t, x0)
        _, score = _log_prob_and_score(wrap_displacement(x_t - x0), sigma, self._images(sigma))
        return score / self.score_norm(sigma).sqrt()

    def sample_time(self, batch: int, generator=None, device=None, t_min: float = 0.0) -> torch.Tensor:
        """Training times, uniform on [t_min, 1] with stratified (low-discrepancy) offsets; (B,) float32."""
        return stratified_times(batch, t_min, generator, device)

    def loss(
        self,
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        **cond,
    ) -> torch.Tensor:
        """Per-sample denoising score-matching loss, shape (B,) (DiffCSP).

        Draws t (unless given, uniform on [0, 1]) and x_t, calls ``model(x_t, t, **cond)``
        for the normalised score (x0's shape) and returns the mean squared error against
        :meth:`target`; ``mask`` (broadcastable to x0, 1 = counts) leaves out padding.
        """
        if t is None:
            t = self.sample_time(x0.shape[0], generator=generator, device=x0.device)
        x_t, _ = self.noise(x0, t, generator=generator)
        return self.prediction_loss(model(x_t, t, **cond), x0, x_t, t, mask)

    def prediction_loss(self, pred, x0, x_t, t, mask=None) -> torch.Tensor:
        """Per-sample squared error of a normalised-score prediction made at (x_t, t); (B,)."""
        if pred.shape != x0.shape:
            raise ValueError(f"model output has shape {tuple(pred.shape)}, expected {tuple(x0.shape)}")
        return masked_mean((pred - self.target(x0, x_t, t)) ** 2, mask)

    # -- sampling ----------------------------------------------------------------------
    def predictor_step(
        self, x_t: torch.Tensor, pred: torch.Tensor, t, s, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral (reverse-diffusion) predictor from sigma_t = sigma(t) to sigma_s = sigma(s):

            x_s = w(x_t + (sigma_t^2 - sigma_s^2) score + sigma_s / sigma_t sqrt(sigma_t^2 - sigma_s^2) z)

        with score = pred * sqrt(score_norm(sigma_t)). ``s=None`` steps to the clean data
        (sigma_s = 0, no noise). Shapes: x_t, pred (B, ...); t, s (B,) / prefix / scalar.
        """
        sigma_t = self._sigma_like(t, x_t)
        score = pred.to(x_t.dtype) * self.score_norm(sigma_t).sqrt()
        if s is None:
            return wrap_fractional(x_t + sigma_t**2 * score)
        sigma_s = self._sigma_like(s, x_t)
        if bool((sigma_s > sigma_t).any()):
            raise ValueError("need s <= t (the step goes from time t back to an earlier time s)")
        var = sigma_t**2 - sigma_s**2
        z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return wrap_fractional(x_t + var * score + (sigma_s / sigma_t) * var.sqrt() * z)

    def corrector_step(
        self,
        x: torch.Tensor,
        pred: torch.Tensor,
        t,
        generator: torch.Generator | None = None,
        step_lr: float = 1e-5,
    ) -> torch.Tensor:
        """One Langevin step at time t (DiffCSP's corrector):

            x <- w(x + h score + sqrt(2 h) z),   h = step_lr (sigma(t) / sigma_min)^2

        with score = pred * sqrt(score_norm(sigma(t))). With the defaults h = 0.4 sigma(t)^2.
        Unadjusted Langevin: even with the exact score, a step leaves a bias of order
        h / (variance of the current law) (e.g. a Gaussian's variance grows towards
        1 / (1 - h / (2 var)) of its value), so a smaller ``step_lr`` is more accurate
        and mixes more slowly.
        """
        sigma = self._sigma_like(t, x)
        score = pred.to(x.dtype) * self.score_norm(sigma).sqrt()
        h = step_lr * (sigma / self.sigma_min) ** 2
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return wrap_fractional(x + h * score + (2.0 * h).sqrt() * z)

    def step(
        self,
        x_t: torch.Tensor,
        pred: torch.Tensor,
        t,
        s,
        generator: torch.Generator | None = None,
        *,
        model: Callable[..., torch.Tensor] | None = None,
        corrector_steps: int = 1,
        step_lr: float = 1e-5,
        **cond,
    ) -> torch.Tensor:
        """One predictor-corrector step from t to s < t (Song et al. 2021, Alg. 2; DiffCSP).

        ``pred`` is the model's normalised score at (x_t, t). The predictor moves to s, then
        ``corrector_steps`` Langevin steps at s each call ``model(x_s, s, **cond)`` (so
        ``model`` is needed unless ``corrector_steps=0``). ``s=None`` is the final step to
        the clean data: predictor only. Returns x_s in [0, 1), x_t's shape.
        """
        if int(corrector_steps) < 0:
            raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
        x = self.predictor_step(x_t, pred, t, s, generator)
        if s is None or corrector_steps == 0:
            return x
        if model is None:
            raise ValueError(f"corrector_steps={corrector_steps} needs model=...; pass it, or corrector_steps=0")
        s = _batch_time(s, x)
        for _ in range(int(corrector_steps)):
            x = self.corrector_step(x, model(x, s, **cond), s, generator, step_lr)
        return x


def _as_float_tensor(value) -> torch.Tensor:
    """A tensor of floats; Python numbers become float64 (no rounding through float32)."""
    if not torch.is_tensor(value):
        return torch.as_tensor(value, dtype=torch.float64)
    return value if value.is_floating_point() else value.double()


def _batch_time(t, x: torch.Tensor) -> torch.Tensor:
    """A time as a (B,) tensor (a float is repeated over the batch)."""
    if torch.is_tensor(t) and t.ndim > 0:
        return t
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)

