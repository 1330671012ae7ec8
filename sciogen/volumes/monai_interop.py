"""MONAI's generative stack driven by sciogen's solvers.

A MONAI ``DiffusionModelUNet`` is trained on integer timesteps 0 .. N-1 with a MONAI
scheduler's beta table. sciogen's solvers work in continuous time t in [0, 1]; the core's
:class:`~sciogen.diffusion.DiscreteSchedule` puts step k at t = (k + 1) / N with exactly
the same alpha-bar, so one conversion serves both directions:

- :func:`schedule_from_monai`: a MONAI scheduler -> (``DiscreteSchedule`` of its betas,
  prediction kind ``"eps" | "x0" | "v"``);
- :class:`MonaiUNetModel`: wraps the network as a sciogen model ``model(x_t, t, **cond)``
  (continuous t -> MONAI timesteps), so :func:`sciogen.diffusion.sample` runs any core
  solver (DDIM, DPM-Solver++ 2M / 3M, ...) on it; :func:`sample_monai` is that in one call;
- :class:`DDIMScheduler`: a drop-in replacement of ``monai.networks.schedulers.DDIMScheduler``
  whose ``step`` is one step of the core's :func:`~sciogen.diffusion.solvers.ddim` (same
  timesteps, same eta and noise draws), for ``DiffusionInferer``-style code.

MONAI's DDIM quirk, kept for step-for-step agreement: ``set_timesteps(k)`` spaces the
timesteps by ``linspace(N - 1, 0, k)`` but each ``step`` jumps to ``t - N // k``, so a step
does not always land on the next timestep of the list (for N = 1000, k = 10: 999 -> 899,
then 888 -> 788, ...). :func:`sample_monai` with a core solver uses a consistent grid instead.

Clipping: with ``clip_sample=True`` MONAI clips the x0 estimate to [-1, 1] but keeps the
network's eps for the direction term; :class:`DDIMScheduler` does the same, so it matches
MONAI in both settings.

    >>> import torch
    >>> from monai.networks.schedulers import DDIMScheduler as MonaiDDIM
    >>> schedule, prediction = schedule_from_monai(MonaiDDIM(num_train_timesteps=1000))
    >>> schedule.num_steps, prediction
    (1000, 'eps')
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.schedulers import DDIMScheduler as _MonaiDDIMScheduler

from sciogen.diffusion import DiscreteSchedule, sample, to_eps, to_x0
from sciogen.diffusion.solvers import ddim

__all__ = ["schedule_from_monai", "MonaiUNetModel", "sample_monai", "timestep_grid", "DDIMScheduler", "monai_time"]

#: MONAI's ``prediction_type`` -> sciogen's prediction kind
_PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


def schedule_from_monai(scheduler: Any) -> tuple[DiscreteSchedule, str]:
    """The core schedule and prediction kind of a MONAI scheduler (DDPM, DDIM, PNDM ...).

    The schedule is built from ``scheduler.betas``, so any MONAI beta schedule
    (``linear_beta``, ``scaled_linear_beta``, ``sigmoid_beta``, ...) carries over exactly.
    """
    betas = getattr(scheduler, "betas", None)
    if betas is None:
        raise TypeError(f"{type(scheduler).__name__} has no 'betas' table; pass a MONAI diffusion scheduler")
    kind = str(getattr(scheduler, "prediction_type", "epsilon"))
    if kind not in _PREDICTIONS:
        raise ValueError(f"unknown MONAI prediction_type {kind!r}; allowed: {', '.join(_PREDICTIONS)}")
    return DiscreteSchedule(betas), _PREDICTIONS[kind]


def monai_time(timestep: int | torch.Tensor, num_train_timesteps: int) -> float:
    """Continuous time of MONAI step ``timestep``: (k + 1) / N; k = -1 (before step 0) is t = 0."""
    return (float(timestep) + 1.0) / float(num_train_timesteps)


class MonaiUNetModel:
    """A MONAI diffusion network as a sciogen model ``model(x_t, t, **cond) -> prediction``.

    Args:
        network: e.g. ``monai.networks.nets.DiffusionModelUNet``, called as
            ``network(x, timesteps=(B,) long, context=..., class_labels=...)``.
        schedule: the :class:`DiscreteSchedule` of its training scheduler.

    Continuous times are mapped to the nearest MONAI timestep ``round(t N - 1)``; the grids
    of :func:`sample_monai` lie on them, so the network only sees integers it was trained on.
    ``cond`` entries (``context``, ``class_labels``) are passed to the network as they are.
    """

    def __init__(self, network: torch.nn.Module, schedule: DiscreteSchedule):
        self.network = network
        self.schedule = schedule

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        steps = self.schedule.timestep(t.double()).round().clamp(0, self.schedule.num_steps - 1).long()
        return self.network(x_t, timesteps=steps.to(x_t.device), **cond)


@torch.no_grad()
def sample_monai(network: torch.nn.Module, scheduler: Any, noise: torch.Tensor, *, solver: str = "dpm++2m",
                 steps: int = 20, spacing: str = "uniform", generator: torch.Generator | None = None,
                 **cond) -> torch.Tensor:
    """Sample a MONAI diffusion network with a core solver.

    The grid holds ``steps`` MONAI timesteps from N - 1 down to 0, evenly spaced
    (``spacing="uniform"``: ``round(linspace(N - 1, 0, steps))``, as MONAI's DDIM
    ``set_timesteps``) or evenly in log-SNR (``"logsnr"``), then t = 0 (:func:`timestep_grid`).

    Args:
        network: the trained network (``DiffusionModelUNet``).
        scheduler: its MONAI training scheduler (betas and prediction type).
        noise: the starting noise x_T, shaped as the network's input (B, C, *S).
        solver: a core solver (``ddim``, ``ddpm``, ``dpm++2m``, ``dpm++3m``, ``heun``, ...).
        steps: network evaluations of first-order solvers (Heun uses about twice as many).
        spacing: ``"uniform"`` or ``"logsnr"`` timesteps.
        generator: randomness of stochastic solvers.
        cond: ``context`` / ``class_labels`` for a conditional network.

    Returns: the sample (B, C, *S).
    """
    schedule, prediction = schedule_from_monai(scheduler)
    grid = timestep_grid(schedule.num_steps, steps, spacing=spacing, schedule=schedule)
    return sample(MonaiUNetModel(network, schedule), noise, schedule=schedule, prediction=prediction, solver=solver,
                  grid=grid, generator=generator, **cond)


def timestep_grid(num_train_timesteps: int, steps: int, start: int | None = None, spacing: str = "uniform",
                  schedule: DiscreteSchedule | None = None) -> torch.Tensor:
    """The continuous-time grid of ``steps`` MONAI timesteps from ``start`` (default N - 1)
    down to 0, then t = 0 (float64).

    ``spacing="uniform"``: evenly spaced timesteps (rounded, as MONAI's DDIM ``set_timesteps``).
    ``spacing="logsnr"``: evenly spaced in log-SNR (needs ``schedule``), rounded to timesteps;
    repeated timesteps are dropped, so the grid may hold a few fewer steps. For a schedule
    whose last alpha is small (MONAI's ``scaled_linear_beta``: alpha_T = 0.012) uniform
    timesteps waste steps at high noise; log-SNR spacing puts them where the sample changes.
    """
    n = int(num_train_timesteps)
    start = n - 1 if start is None else int(start)
    if not 0 <= start < n:
        raise ValueError(f"start timestep must be in [0, {n - 1}], got {start}")
    if not 1 <= int(steps) <= start + 1:
        raise ValueError(f"steps must be in [1, {start + 1}] (timesteps from {start} down to 0), got {steps}")
    if spacing == "uniform":
        timesteps = torch.linspace(start, 0, int(steps), dtype=torch.float64).round()
    elif spacing == "logsnr":
        if schedule is None:
            raise ValueError("spacing='logsnr' needs the schedule")
        ends = torch.tensor([(start + 1.0) / n, 1.0 / n], dtype=torch.float64)
        lam = torch.linspace(*schedule.log_snr(ends).tolist(), int(steps), dtype=torch.float64)
        timesteps = (schedule.t_from_log_snr(lam) * n - 1.0).round().clamp(0, start).unique_consecutive()
    else:
        raise ValueError(f"spacing must be 'uniform' or 'logsnr', got {spacing!r}")
    return torch.cat([(timesteps + 1.0) / n, torch.zeros(1, dtype=torch.float64)])


class DDIMScheduler(_MonaiDDIMScheduler):
    """MONAI's ``DDIMScheduler`` with its ``step`` computed by sciogen's DDIM solver.

    Same constructor, ``set_timesteps``, ``add_noise`` and timesteps as MONAI's (it is a
    subclass); ``step`` converts the network output to x0 with the core converter and takes
    one :func:`~sciogen.diffusion.solvers.ddim` step from t to ``t - N // k`` (see the
    module docstring), with MONAI's clipping rule and one noise draw per step when eta > 0,
    so outputs agree with MONAI's scheduler to float32 rounding.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core_schedule, self.core_prediction = schedule_from_monai(self)

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One reverse step: (x at the previous timestep, predicted x0), as MONAI's ``step``."""
        n = self.num_train_timesteps
        t = monai_time(timestep, n)
        prev = int(timestep) - n // self.num_inference_steps
        if prev >= 0:
            s = monai_time(prev, n)
        else:  # MONAI's final_alpha_cumprod: 1 (t = 0) or alpha-bar of step 0 (t = 1 / N)
            s = 0.0 if float(self.final_alpha_cumprod) == 1.0 else 1.0 / n
        t64 = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = float(self.core_schedule.alpha(t64)), float(self.core_schedule.sigma(t64))
        x = sample.float()
        x0 = to_x0(model_output.float(), x, alpha, sigma, self.core_prediction)
        eps = to_eps(model_output.float(), x, alpha, sigma, self.core_prediction)
        if self.clip_sample:
            x0 = x0.clamp(*self.clip_sample_values)
            # MONAI keeps the network's eps: the state the DDIM step sees is rebuilt from it
            x = alpha * x0 + sigma * eps
        grid = torch.tensor([t, s], dtype=torch.float64)
        try:
            x_prev = ddim(lambda _x, _t: x0, x, grid, self.core_schedule, eta=eta, generator=generator)
        except FloatingPointError:  # name the step as the caller's loop knows it
            raise FloatingPointError(
                f"non-finite values appeared at MONAI timestep {int(timestep)} (t = {t:.5f}): the network output or "
                "the sample holds NaN / inf; check the model's prediction_type and schedule") from None
        return x_prev.to(sample.dtype), x0.to(sample.dtype)
