"""The time-series domain's run config (one YAML file, e.g. ``domains/timeseries/exchange_rate.yaml``).

Defaults are TSDiff's small configuration (Kollovieh et al. 2023, App. B): hidden 64,
3 residual blocks, 100 diffusion steps with linear betas 1e-4 .. 0.1, mean scaling by the
context, lag channels for the frequency, learning rate 1e-3, batch 64, gradient clipping 0.5.

Data-dependent settings left at ``null`` are resolved when the data is read and written
back into the config (so a checkpoint never needs the data again):
``freq`` and ``prediction_length`` from the dataset's metadata (else the frequency inferred
from the timestamps and the default horizon of that frequency), ``context_length`` =
``context_multiple x prediction_length`` (TSDiff: 360 = 12 x 30 for daily data) shortened
to what the median training series allows, and ``lags`` = :func:`lags_for_freq` without
the lags the training series are too short for. Series shorter than one training window
(context + prediction) are left out and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.config import ConfigError
from sciogen.train.config import RunConfig, SamplingConfig, TrainConfig

__all__ = ["TSDataConfig", "TSModelConfig", "TSDiffusionConfig", "TSGuidanceConfig", "TimeSeriesConfig"]


@dataclass
class TSDataConfig:
    """Where the series come from and the window the model sees.

    Attributes:
        path: your data: a CSV / parquet file (long or wide), GluonTS JSON lines, a GluonTS
            folder or archive, a folder or glob of such files
            (:mod:`sciogen.timeseries.tables`); None: ``dataset``, or data passed to ``fit``.
        dataset: a registered dataset read when ``path`` is null (``exchange_rate_nips``),
            from the dataset cache.
        download: fetch ``dataset`` (checksummed) when the cache has no copy.
        column: the value column of a long table, or the one series column of a wide table.
        freq, prediction_length: override the metadata (null: read it, infer the frequency
            from the timestamps, take :func:`~sciogen.timeseries.representation.default_prediction_length`).
        context_length: observed steps before the forecast (null: derived, see the module).
        context_multiple: context_length = context_multiple x prediction_length when derived.
        lags: lag channels (null: from the frequency; [] for none).
        normalization: ``"mean"`` divides each window by the mean |value| of its context
            (TSDiff); ``"standard"`` subtracts the context mean and divides by its standard
            deviation (location-scale per window, for series whose variation is small
            relative to their level); ``"last"`` keeps that scale but subtracts the last
            observed past value, so the forecast starts from 0 in every window (for series
            that move like random walks; see the exchange-rate card).
        min_observed: windows with a smaller observed fraction are left out of training.
        holdout_windows: leave the last ``holdout_windows x prediction_length`` steps of
            every training series out of training (a validation split).
    """

    path: str | None = None
    dataset: str | None = None
    download: bool = False
    column: str | None = None
    freq: str | None = None
    prediction_length: int | None = None
    context_length: int | None = None
    context_multiple: int = 12
    lags: list[int] | None = None
    normalization: Literal["mean", "standard", "last"] = "mean"
    min_observed: float = 0.5
    holdout_windows: int = 0

    def __post_init__(self):
        for name in ("prediction_length", "context_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"data.{name} must be >= 1 or null, got {value}")
        if self.context_multiple < 1:
            raise ConfigError(f"data.context_multiple must be >= 1, got {self.context_multiple}")
        if self.lags is not None and any(lag < 1 for lag in self.lags):
            raise ConfigError(f"data.lags must be positive, got {self.lags}")
        if not 0.0 <= self.min_observed <= 1.0:
            raise ConfigError(f"data.min_observed must be in [0, 1], got {self.min_observed}")


@dataclass
class TSModelConfig:
    """Size of the :class:`~sciogen.timeseries.network.TSDiffDenoiser`."""

    hidden: int = 64
    blocks: int = 3
    state: int = 64
    step_dim: int = 128
    dropout: float = 0.0
    input_skip: bool = True


@dataclass
class TSDiffusionConfig:
    """TSDiff's discrete process: ``num_steps`` linear betas from ``beta_start`` to ``beta_end``."""

    num_steps: int = 100
    beta_start: float = 1e-4
    beta_end: float = 0.1

    def __post_init__(self):
        if self.num_steps < 2 or not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"diffusion needs num_steps >= 2 and 0 < beta_start < beta_end < 1, got "
                f"{self.num_steps}, {self.beta_start}, {self.beta_end}"
            )


@dataclass
class TSGuidanceConfig:
    """Defaults of guided forecasting and imputation (observation self-guidance).

    Attributes:
        solver: ``"ddpm"`` (TSDiff's DDPM guidance) or ``"ddim"``.
        steps: solver steps on the discrete grid (at most ``diffusion.num_steps``).
        scale: guidance scale s (TSDiff uses 8 with DDPM and quantile guidance on exchange
            rates; it is the same knob here, see :mod:`sciogen.timeseries.forecast`).
        loss: ``"quantile"`` (TSDiff-Q: sample i of n is guided with the pinball loss at
            quantile (i + 1) / (n + 1)) or ``"mse"`` (TSDiff-MS).
        eta: DDIM stochasticity (0 = deterministic).
        replace: also replace the observed entries of x_t at every step (inpainting by
            replacement, not in TSDiff; see :mod:`sciogen.timeseries.forecast`).
        num_samples: sample paths per forecast.
        batch_size: sample paths per network call.
    """

    solver: Literal["ddpm", "ddim"] = "ddpm"
    steps: int = 100
    scale: float = 8.0
    loss: Literal["quantile", "mse"] = "quantile"
    eta: float = 0.0
    replace: bool = False
    num_samples: int = 100
    batch_size: int = 1000

    def __post_init__(self):
        if self.steps < 1 or self.num_samples < 1 or self.batch_size < 1:
            raise ConfigError("guidance.steps, guidance.num_samples and guidance.batch_size must be >= 1")
        if self.scale < 0:
            raise ConfigError(f"guidance.scale must be >= 0, got {self.scale}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(steps=20000, batch_size=64, lr=1e-3, grad_clip=0.5, ema_decay=0.999, warmup_steps=200,
                       decay="cosine", min_lr_ratio=0.1, checkpoint_every=1000, log_every=50)


@dataclass
class TimeSeriesConfig(RunConfig):
    """A TSDiff run: data, model, diffusion, guidance and sampling defaults, trainer options."""

    domain: str = "timeseries"
    data: TSDataConfig = field(default_factory=TSDataConfig)
    model: TSModelConfig = field(default_factory=TSModelConfig)
    diffusion: TSDiffusionConfig = field(default_factory=TSDiffusionConfig)
    guidance: TSGuidanceConfig = field(default_factory=TSGuidanceConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(solver="ddpm", steps=100, batch_size=256))
    train: TrainConfig = field(default_factory=_train_defaults)
