"""Variance-preserving noise schedules in continuous time t in [0, 1].

A schedule fixes ``x_t = alpha(t) x_0 + sigma(t) eps`` with ``alpha^2 + sigma^2 = 1``.
Everything a solver needs is derived from ``log_alpha(t)``:

    sigma(t)      = sqrt(1 - alpha(t)^2)
    lambda(t)     = log(alpha / sigma)            (the half log-SNR; ``log_snr`` here)
    t(lambda)     = the inverse, ``t_from_log_snr``

All computations run in float64 internally and return the dtype of ``t``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = [
    "Schedule",
    "LinearSchedule",
    "CosineSchedule",
    "DiscreteSchedule",
    "make_schedule",
    "SCHEDULES",
]

SCHEDULES = ("linear", "cosine", "discrete")


def _as_tensor(t) -> torch.Tensor:
    if not torch.is_tensor(t):
        t = torch.as_tensor(t, dtype=torch.float64)
    return t


class Schedule:
    """Base class. Subclasses implement :meth:`log_alpha` and :meth:`t_from_log_snr`.

    Attributes:
        t_min: the smallest time solvers integrate to by default (where the data is
            considered clean; 1e-3 for continuous schedules, 1/N for a discrete table).
        t_max: the largest time, 1.
    """

    t_min: float = 1e-3
    t_max: float = 1.0

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def alpha(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return self.log_alpha(t.double()).exp().to(t.dtype)

    def sigma(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        la = self.log_alpha(t.double())
        # sqrt(1 - exp(2 la)) computed stably for la close to 0
        return torch.sqrt(-torch.expm1(2.0 * la)).to(t.dtype)

    def log_snr(self, t) -> torch.Tensor:
        """lambda(t) = log(alpha(t) / sigma(t)), strictly decreasing in t."""
        t = _as_tensor(t)
        la = self.log_alpha(t.double())
        log_sigma = 0.5 * torch.log(-torch.expm1(2.0 * la))
        return (la - log_sigma).to(t.dtype)

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alpha(t), self.sigma(t)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class LinearSchedule(Schedule):
    """VP-SDE with linear beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021).

    log alpha(t) = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2.
    The defaults (0.1, 20) are the continuous limit of DDPM's 1000-step linear table.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def log_alpha(self, t):
        t = _as_tensor(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        lam64 = lam.double()
        # -log alpha = L with L = 0.5 log(1 + exp(-2 lambda)); solve a t^2 + b t = L.
        big_l = 0.5 * torch.logaddexp(torch.zeros_like(lam64), -2.0 * lam64)
        a = 0.25 * (self.beta_max - self.beta_min)
        b = 0.5 * self.beta_min
        t = 2.0 * big_l / (b + torch.sqrt(b * b + 4.0 * a * big_l))
        return t.to(lam.dtype)


class CosineSchedule(Schedule):
    """Cosine schedule alpha(t) = cos(pi/2 u(t)) (Nichol & Dhariwal 2021), truncated in log-SNR.

    ``u(t)`` maps [0, 1] linearly onto the angles whose log-SNR ``2 lambda`` runs from
    ``logsnr_max`` to ``logsnr_min``, so alpha(1) > 0 and the schedule is invertible in
    closed form: ``lambda(t) = -log tan(a t + b)``. With the defaults the clean end has
    sigma(0) ~ 5.5e-4 (Nichol's offset s = 0.008 gives 3e-3) and the noisy end alpha(1) ~ 5.5e-4.
    """

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0):
        if not logsnr_min < logsnr_max:
            raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min}, {logsnr_max}")
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)
        self._b = math.atan(math.exp(-0.5 * self.logsnr_max))
        self._a = math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b

    def log_alpha(self, t):
        t = _as_tensor(t)
        return torch.log(torch.cos(self._a * t + self._b))

    def log_snr(self, t):
        t = _as_tensor(t)
        return (-torch.log(torch.tan(self._a * t.double() + self._b))).to(t.dtype)

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        t = (torch.atan(torch.exp(-lam.double())) - self._b) / self._a
        return t.to(lam.dtype)


class DiscreteSchedule(Schedule):
    """A schedule built from a table of N discrete betas (DDPM-trained models).

    Discrete step n = 0..N-1 sits at continuous time t_n = (n + 1) / N, and log alpha is
    interpolated piecewise-linearly in t between the table's entries (as DPM-Solver's
    ``NoiseScheduleVP('discrete')``), so t_min = 1/N. A model trained on integer steps is
    called at ``t * N - 1`` (see :meth:`timestep`).
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a table of at least 2 values in (0, 1)")
        self.num_steps = int(betas.numel())
        self._log_alpha = 0.5 * torch.cumsum(torch.log1p(-betas), 0)
        self._t = torch.arange(1, self.num_steps + 1, dtype=torch.float64) / self.num_steps
        self.t_min = 1.0 / self.num_steps

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2):
        """DDPM's linear table (diffusers' ``beta_schedule="linear"``)."""
        return cls(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64))

    @classmethod
    def scaled_linear(cls, num_steps: int = 1000, beta_start: float = 8.5e-4, beta_end: float = 1.2e-2):
        """Stable Diffusion / MONAI latent diffusion table (linear in sqrt(beta))."""
        return cls(torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.exp(2.0 * self._log_alpha)

    def timestep(self, t) -> torch.Tensor:
        """Continuous time -> (fractional) discrete step index ``t N - 1``."""
        return _as_tensor(t) * self.num_steps - 1.0

    def log_alpha(self, t):
        t = _as_tensor(t)
        return _interp(t.double(), self._t, self._log_alpha).to(t.dtype)

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        # log alpha is piecewise linear in t and decreasing: invert it exactly.
        la = -0.5 * torch.logaddexp(torch.zeros_like(lam.double()), -2.0 * lam.double())
        t = _interp(-la, -self._log_alpha, self._t)
        return t.to(lam.dtype)

    def __repr__(self) -> str:
        return f"DiscreteSchedule(num_steps={self.num_steps})"


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation with linear extrapolation at both ends (xp increasing)."""
    xp = xp.to(x.device)
    fp = fp.to(x.device)
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


def make_schedule(name: Literal["linear", "cosine", "discrete"] | Schedule, **kwargs) -> Schedule:
    """Build a schedule from its name (``"linear"``, ``"cosine"``, ``"discrete"``) or pass one through."""
    if isinstance(name, Schedule):
        return name
    if name == "linear":
        return LinearSchedule(**kwargs)
    if name == "cosine":
        return CosineSchedule(**kwargs)
    if name == "discrete":
        if "betas" in kwargs:
            return DiscreteSchedule(kwargs["betas"])
        return DiscreteSchedule.linear(**kwargs)
    raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
