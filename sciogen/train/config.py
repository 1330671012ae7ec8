"""The trainer's, the diffusion's and the sampler's configs, and :class:`RunConfig`, the base
of every domain's run config. The generic machinery (YAML, overrides, strict typed
checking, :class:`~sciogen.config.ConfigError`) is the torch-free :mod:`sciogen.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

# the generic helpers, also importable from here for code written before they moved
from sciogen.config import (  # noqa: F401
    ConfigError,
    apply_overrides,
    check_choice,
    config_to_yaml,
    from_dict,
    load_yaml,
    parse_override,
    save_config,
    to_dict,
)

__all__ = ["TrainConfig", "DiffusionConfig", "SamplingConfig", "RunConfig"]


# -- the trainer's and the diffusion's configs ---------------------------------------------


@dataclass
class TrainConfig:
    """Options of :class:`sciogen.train.Trainer` (one training run).

    ``batch_size`` is the *global* batch of one optimizer step: it is split over
    ``world_size`` processes and ``grad_accum`` micro-batches, so the same config gives
    the same optimisation on 1 process or N. ``progress``: True / False, or None (the
    default) for a progress bar only when stderr is a terminal and not under CI.
    """

    steps: int = 1000
    batch_size: int = 256
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 3
    validate_every: int = 0
    progress: bool | None = None
    tensorboard: bool = True
    run_dir: str | None = None
    init_from: str | None = None

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "validate_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclass
class DiffusionConfig:
    """The Gaussian process a domain trains: see :class:`sciogen.diffusion.GaussianProcess`."""

    schedule: str = "linear"
    prediction: str = "eps"
    loss_weighting: str = "none"

    def __post_init__(self):
        from sciogen.diffusion import LOSS_WEIGHTINGS, PREDICTIONS

        check_choice("diffusion.schedule", self.schedule, ("linear", "cosine", "flow"))
        check_choice("diffusion.prediction", self.prediction, PREDICTIONS)
        check_choice("diffusion.loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        if self.schedule == "flow" and self.prediction == "v":
            raise ConfigError("diffusion.prediction 'v' is defined for variance-preserving schedules only, not "
                              "diffusion.schedule 'flow': use prediction 'flow' (the velocity d x_t / dt), 'x0' or 'eps'")


@dataclass
class SamplingConfig:
    """Default sampling options of a generator (each can be overridden per call).

    A domain whose sampler is not one of the core solvers subclasses it and declares its
    own in :attr:`solvers` (molecules: ``("ancestral",)``); its extra options are fields of
    the subclass, checked in a ``__post_init__`` that calls this one first.
    """

    #: the solver names this config accepts; None: the core's (:data:`sciogen.diffusion.SOLVERS`)
    solvers: ClassVar[tuple[str, ...] | None] = None

    solver: str = "dpm++2m"
    steps: int = 20
    batch_size: int = 1000

    @classmethod
    def allowed_solvers(cls) -> tuple[str, ...]:
        if cls.solvers is not None:
            return tuple(cls.solvers)
        from sciogen.diffusion import SOLVERS

        return tuple(SOLVERS)

    def __post_init__(self):
        try:
            check_choice("sampling.solver", self.solver, self.allowed_solvers())
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"sampling.steps and sampling.batch_size must be >= 1, got {self.steps}, {self.batch_size}")


@dataclass
class RunConfig:
    """Base of every domain's run config: the domain's name and the trainer's options.

    A domain subclasses it and adds its own sections (``data``, ``model``, ...), each a
    dataclass with defaults.
    """

    domain: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)
