"""Domain-agnostic diffusion processes, solvers and guidance.

Example:
    >>> import torch
    >>> from sciogen.diffusion import GaussianMixture, LinearSchedule, sample
    >>> gmm = GaussianMixture.example()
    >>> model = gmm.denoiser(LinearSchedule(), prediction="eps")
    >>> x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    >>> x0 = sample(model, x_T, schedule=LinearSchedule(), prediction="eps", solver="dpm++2m", steps=20)
    >>> x0.shape
    torch.Size([4, 2])
"""

from .categorical import CategoricalProcess, sample_categorical
from .gaussian import LOSS_WEIGHTINGS, GaussianProcess
from .guidance import classifier_free, inpaint, observation_guidance, repaint, smc_inpaint
from .joint import JointProcess
from .mixture import GaussianMixture
from .parametrization import PREDICTIONS, convert, expand_time, from_x0, to_eps, to_x0
from .sampling import GRIDS, default_grid, make_denoiser, sample, time_grid
from .schedules import (
    SCHEDULES,
    CosineSchedule,
    DiscreteSchedule,
    FlowSchedule,
    InterpolantSchedule,
    LinearSchedule,
    Schedule,
    VESchedule,
    make_schedule,
)
from .solvers import SOLVERS
from .testing import sample_torus
from .times import masked_mean, stratified_times
from .torus import WrappedNormalProcess, wrap_displacement, wrap_fractional
from .tuning import ODE_SOLVERS, TunedGrid, search_grid, tune_grid

__all__ = [
    "Schedule", "LinearSchedule", "CosineSchedule", "DiscreteSchedule", "FlowSchedule", "VESchedule",
    "InterpolantSchedule", "make_schedule", "SCHEDULES",
    "GaussianProcess", "LOSS_WEIGHTINGS", "CategoricalProcess", "sample_categorical",
    "WrappedNormalProcess", "sample_torus", "wrap_fractional", "wrap_displacement",
    "JointProcess", "stratified_times", "masked_mean", "PREDICTIONS", "convert", "to_x0", "to_eps", "from_x0", "expand_time",
    "sample", "time_grid", "make_denoiser", "SOLVERS", "GRIDS", "default_grid",
    "tune_grid", "search_grid", "TunedGrid", "ODE_SOLVERS",
    "classifier_free", "inpaint", "repaint", "smc_inpaint", "observation_guidance",
    "GaussianMixture",
]
