"""Noise schedules in continuous time t in [0, 1]: ``x_t = alpha(t) x_0 + sigma(t) eps``.

Two families:

- variance preserving (``alpha^2 + sigma^2 = 1``: :class:`LinearSchedule`,
  :class:`CosineSchedule`, :class:`DiscreteSchedule`), everything derived from ``log_alpha(t)``;
- any other ``alpha(t), sigma(t)`` (:class:`FlowSchedule`, the rectified-flow / linear
  interpolant ``alpha = 1 - t, sigma = t``; :class:`VESchedule`, ``alpha = 1`` with a
  geometric sigma as in EDM / score SDEs; :class:`InterpolantSchedule`, any pair of functions).

What solvers use: ``alpha``, ``sigma``, ``lambda(t) = log(alpha / sigma)`` (the half log-SNR,
``log_snr``), its inverse ``t_from_log_snr``, and for the flow velocity the derivatives
``d alpha / dt, d sigma / dt`` (:meth:`Schedule.derivatives`). Each schedule also declares the
time grid its samplers use by default (``default_grid``: log-SNR for linear and discrete VP
tables, uniform time for cosine and flow, Karras for VE / EDM sigma schedules; ``solver_grids``:
the measured exceptions, e.g. uniform time for first-order solvers on a linear schedule), which
:func:`sciogen.diffusion.sample` uses when ``grid=None`` (:meth:`Schedule.grid_for`).

All computations run in float64 internally and return the dtype of ``t``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

__all__ = [
    "Schedule",
    "LinearSchedule",
    "CosineSchedule",
    "DiscreteSchedule",
    "FlowSchedule",
    "VESchedule",
    "InterpolantSchedule",
    "make_schedule",
    "SCHEDULES",
]

SCHEDULES = ("linear", "cosine", "discrete", "flow", "ve")


# Measured on the exact mixture (benchmarks/samplers.py): on a log-SNR-spaced VP schedule the
# first-order solvers are closer to the data on a uniform grid, the multistep ones on log-SNR.
_FIRST_ORDER_UNIFORM = {"ddim": "uniform", "ddpm": "uniform", "euler": "uniform", "euler-maruyama": "uniform"}


def _as_tensor(t) -> torch.Tensor:
    if not torch.is_tensor(t):
        t = torch.as_tensor(t, dtype=torch.float64)
    return t


class Schedule:
    """Base class of every schedule: ``x_t = alpha(t) x0 + sigma(t) eps``, t in [0, 1].

    A variance-preserving subclass implements :meth:`log_alpha`, :meth:`d_log_alpha` and
    :meth:`t_from_log_snr`; any other overrides :meth:`alpha`, :meth:`sigma`,
    :meth:`log_snr`, :meth:`derivatives` and :meth:`t_from_log_snr` and sets
    ``variance_preserving = False``.

    Attributes:
        t_min: the smallest time solvers integrate to by default (where the data is
            considered clean; 1e-3 for continuous schedules, 1/N for a discrete table).
        t_max: the largest time, 1.
        default_grid: the time grid samplers use unless told otherwise (``"logsnr"``,
            ``"uniform"`` or ``"karras"``; see :func:`sciogen.diffusion.time_grid`).
        solver_grids: exceptions to ``default_grid`` by solver name, where another grid
            measures better on the exact mixture (``benchmarks/samplers.py``).
        variance_preserving: whether alpha^2 + sigma^2 = 1.
        ode_frame: the frame Euler / Heun integrate the probability-flow ODE in (``"flow"``:
            x / (alpha + sigma) against sigma / (alpha + sigma), bounded for every schedule;
            ``"ve"``: x / alpha against sigma / alpha, Karras et al. 2022, for VE schedules).
    """

    t_min: float = 1e-3
    t_max: float = 1.0
    default_grid: str = "logsnr"
    solver_grids: dict[str, str] = {}
    variance_preserving: bool = True
    ode_frame: str = "flow"

    def grid_for(self, solver: str) -> str:
        """The time grid ``solver`` uses on this schedule by default."""
        return self.solver_grids.get(solver, self.default_grid)

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def d_log_alpha(self, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Derivative d log alpha / dt (variance-preserving schedules)."""
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

    def derivatives(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(d alpha / dt, d sigma / dt) at t; for a VP schedule, from d log alpha / dt:
        alpha' = alpha (log alpha)',  sigma' = -alpha^2 (log alpha)' / sigma."""
        t = _as_tensor(t)
        t64 = t.double()
        la, dla = self.log_alpha(t64), self.d_log_alpha(t64)
        alpha = la.exp()
        sigma = torch.sqrt(-torch.expm1(2.0 * la))
        return (alpha * dla).to(t.dtype), (-(alpha**2) * dla / sigma).to(t.dtype)

    @property
    def prior_std(self) -> float:
        """Standard deviation of the noise samplers start from at t_max: 1 for a VP
        schedule (its alpha(t_max) x0 is neglected), sigma(t_max) otherwise."""
        if self.variance_preserving:
            return 1.0
        return float(self.sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class LinearSchedule(Schedule):
    """VP-SDE with linear beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021).

    log alpha(t) = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2.
    The defaults (0.1, 20) are the continuous limit of DDPM's 1000-step linear table.
    Default grid: uniform in log-SNR (DPM-Solver's recommendation), uniform in t for the
    first-order solvers (DDIM, DDPM, Euler, Euler-Maruyama).
    """

    solver_grids = _FIRST_ORDER_UNIFORM

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def log_alpha(self, t):
        t = _as_tensor(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def d_log_alpha(self, t):
        t = _as_tensor(t)
        return -0.5 * t * (self.beta_max - self.beta_min) - 0.5 * self.beta_min

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
    Its log-SNR falls steeply at both ends and slowly in the middle, so its default grid is
    uniform in t (DPM-Solver's recommendation for cosine schedules); log-SNR for
    Euler-Maruyama, whose first steps from alpha(1) ~ 5e-4 must be short.
    """

    default_grid = "uniform"
    solver_grids = {"euler-maruyama": "logsnr"}

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

    def d_log_alpha(self, t):
        t = _as_tensor(t)
        return -self._a * torch.tan(self._a * t + self._b)

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
    called at ``t * N - 1`` (see :meth:`timestep`). ``default_grid``: log-SNR unless given
    (a table made from a cosine alpha-bar samples best on ``"uniform"``); the first-order
    solvers take a uniform grid, as on :class:`LinearSchedule`.
    """

    solver_grids = _FIRST_ORDER_UNIFORM

    def __init__(self, betas, default_grid: Literal["uniform", "logsnr", "karras"] = "logsnr"):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a table of at least 2 values in (0, 1)")
        self.num_steps = int(betas.numel())
        self._log_alpha = 0.5 * torch.cumsum(torch.log1p(-betas), 0)
        self._t = torch.arange(1, self.num_steps + 1, dtype=torch.float64) / self.num_steps
        self.t_min = 1.0 / self.num_steps
        self.default_grid = _check_grid(default_grid)

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

    def d_log_alpha(self, t):
        t = _as_tensor(t)
        xp, fp = self._t.to(t.device), self._log_alpha.to(t.device)
        idx = torch.searchsorted(xp, t.double().contiguous()).clamp(1, xp.numel() - 1)
        return ((fp[idx] - fp[idx - 1]) / (xp[idx] - xp[idx - 1])).to(t.dtype)

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        # log alpha is piecewise linear in t and decreasing: invert it exactly.
        la = -0.5 * torch.logaddexp(torch.zeros_like(lam.double()), -2.0 * lam.double())
        t = _interp(-la, -self._log_alpha, self._t)
        return t.to(lam.dtype)

    def __repr__(self) -> str:
        grid = "" if self.default_grid == "logsnr" else f", default_grid={self.default_grid!r}"
        return f"DiscreteSchedule(num_steps={self.num_steps}{grid})"


class InterpolantSchedule(Schedule):
    """Any schedule ``x_t = alpha(t) x0 + sigma(t) eps`` given as two functions of t.

    Args:
        alpha, sigma: elementwise functions of a float64 tensor t in [0, 1]; the log-SNR
            log(alpha / sigma) must decrease strictly on [t_min, t_max] and sigma be > 0 there.
        d_alpha, d_sigma: their derivatives in t (default: by automatic differentiation).
        default_grid: the time grid samplers use by default.
        t_min: the smallest time solvers integrate to.

    ``t_from_log_snr`` inverts the log-SNR by bisection (float64, to about 1e-12 in t).
    """

    variance_preserving = False
    default_grid = "uniform"
    ode_frame = "flow"

    def __init__(self, alpha: Callable, sigma: Callable, d_alpha: Callable | None = None,
                 d_sigma: Callable | None = None, default_grid: Literal["uniform", "logsnr", "karras"] = "uniform",
                 t_min: float = 1e-3):
        self._alpha, self._sigma, self._d_alpha, self._d_sigma = alpha, sigma, d_alpha, d_sigma
        self.default_grid = _check_grid(default_grid)
        self.t_min = float(t_min)
        t = torch.linspace(self.t_min, self.t_max, 257, dtype=torch.float64)
        lam = self.log_snr(t[1:])
        if not bool((self.sigma(t) > 0).all()) or not bool((lam.diff() < 0).all()):
            raise ValueError("InterpolantSchedule needs sigma(t) > 0 and log(alpha / sigma) strictly decreasing "
                             f"on [t_min, t_max] = [{self.t_min}, {self.t_max}]")

    def alpha(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return self._alpha(t.double()).to(t.dtype)

    def sigma(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return self._sigma(t.double()).to(t.dtype)

    def log_alpha(self, t):
        return torch.log(self.alpha(t))

    def log_snr(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        t64 = t.double()
        return (torch.log(self._alpha(t64)) - torch.log(self._sigma(t64))).to(t.dtype)

    def derivatives(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_tensor(t)
        t64 = t.double()
        da = self._d_alpha(t64) if self._d_alpha is not None else _grad(self._alpha, t64)
        ds = self._d_sigma(t64) if self._d_sigma is not None else _grad(self._sigma, t64)
        return da.to(t.dtype), ds.to(t.dtype)

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        target = lam.double()
        lo = torch.zeros_like(target)
        hi = torch.ones_like(target)
        for _ in range(45):  # log-SNR decreases in t: move toward the side that brackets target
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > target
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (0.5 * (lo + hi)).to(lam.dtype)

    def __repr__(self) -> str:
        return f"InterpolantSchedule(alpha={self._alpha!r}, sigma={self._sigma!r}, default_grid={self.default_grid!r})"


class FlowSchedule(InterpolantSchedule):
    """Rectified flow / the linear interpolant: alpha(t) = 1 - t, sigma(t) = t
    (Liu et al. 2023; Lipman et al. 2023; Esser et al. 2024).

    lambda(t) = log((1 - t) / t), t(lambda) = 1 / (1 + e^lambda). Samplers integrate from
    ``t_max = 1 - 1e-3`` (as diffusers' flow schedules start at sigma = 1 - 1/N) to
    ``t_min = 1e-3``: at t = 1, alpha = 0 and lambda = -inf, where the multistep solvers'
    slope estimates carry no information (starting there measures worse). The default grid is
    uniform in t. A model trained on it usually predicts the flow velocity
    d x_t / dt = eps - x0 (``prediction="flow"``).
    """

    solver_grids = {"euler-maruyama": "logsnr"}  # its first steps, at alpha ~ 1e-3, must be short

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0 - 1e-3):
        if not 0.0 < t_min < t_max <= 1.0:
            raise ValueError(f"need 0 < t_min < t_max <= 1, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.default_grid = "uniform"

    def alpha(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return (1.0 - t.double()).to(t.dtype)

    def sigma(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return t.clone() if t.is_floating_point() else t.double()

    def log_snr(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        t64 = t.double()
        return (torch.log1p(-t64) - torch.log(t64)).to(t.dtype)

    def derivatives(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_tensor(t)
        return -torch.ones_like(t), torch.ones_like(t)

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        return torch.sigmoid(-lam.double()).to(lam.dtype)

    def __repr__(self) -> str:
        return f"FlowSchedule(t_min={self.t_min!r}, t_max={self.t_max!r})"


class VESchedule(InterpolantSchedule):
    """Variance exploding: alpha(t) = 1, sigma(t) = sigma_min^(1 - t) sigma_max^t (Song et al.
    2021's VE SDE; EDM's noise range by default, Karras et al. 2022).

    Samplers start from N(0, sigma_max^2 I) (``prior_std``); the default grid is Karras's
    (sigma^(1/rho) uniform, rho = 7).
    """

    ode_frame = "ve"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.default_grid = "karras"

    def alpha(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return torch.ones_like(t)

    def sigma(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return torch.exp(math.log(self.sigma_min) + t.double() * self._log_ratio).to(t.dtype)

    def log_snr(self, t) -> torch.Tensor:
        t = _as_tensor(t)
        return (-(math.log(self.sigma_min) + t.double() * self._log_ratio)).to(t.dtype)

    def derivatives(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = _as_tensor(t)
        return torch.zeros_like(t), self.sigma(t) * self._log_ratio

    def t_from_log_snr(self, lam):
        lam = _as_tensor(lam)
        return ((-lam.double() - math.log(self.sigma_min)) / self._log_ratio).to(lam.dtype)

    def __repr__(self) -> str:
        return f"VESchedule(sigma_min={self.sigma_min!r}, sigma_max={self.sigma_max!r})"


def _grad(fn: Callable, t: torch.Tensor) -> torch.Tensor:
    """Derivative d fn / dt of an elementwise function, by autograd (also under no_grad / inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(tt).sum(), tt)
    return grad.detach()


def _check_grid(kind: str) -> str:
    grids = ("uniform", "logsnr", "karras")
    if kind not in grids:
        raise ValueError(f"unknown time grid {kind!r}; allowed: {', '.join(grids)}")
    return kind


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation with linear extrapolation at both ends (xp increasing)."""
    xp = xp.to(x.device)
    fp = fp.to(x.device)
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


def make_schedule(name: Literal["linear", "cosine", "discrete", "flow", "ve"] | Schedule, **kwargs) -> Schedule:
    """Build a schedule from its name (``"linear"``, ``"cosine"``, ``"discrete"``, ``"flow"``,
    ``"ve"``) or pass one through."""
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
    if name == "flow":
        return FlowSchedule(**kwargs)
    if name == "ve":
        return VESchedule(**kwargs)
    raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
