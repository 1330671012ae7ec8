"""Run configuration of the longitudinal volumes: the synthetic set, the data, the network and
conditioner, and sampling (all round-trip through YAML like every run config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sciogen.train.config import ConfigError, RunConfig, SamplingConfig, TrainConfig, check_choice

from ..config import VolumeDataConfig, VolumeModelConfig, VolumeProcessConfig
from .data import check_synthetic

__all__ = ["LongitudinalSyntheticConfig", "LongitudinalDataConfig", "LongitudinalModelConfig",
           "LongitudinalSamplingConfig", "LongitudinalConfig"]


@dataclass
class LongitudinalSyntheticConfig:
    """The synthetic longitudinal set made from the training volumes when ``fit()`` gets no
    data: the arguments of :func:`~sciogen.volumes.longitudinal.data.synthetic_longitudinal`."""

    visits: int = 4
    subjects_per_volume: int = 8
    gap: list[float] = field(default_factory=lambda: [0.5, 1.5])
    rate: list[float] = field(default_factory=lambda: [0.06, 0.15])
    width: float = 0.35
    centre_jitter: float = 0.05
    missing: float = 0.25
    supersample: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.supersample < 1:
            raise ConfigError(f"data.synthetic.supersample must be >= 1, got {self.supersample}")
        try:
            check_synthetic(self.visits, self.subjects_per_volume, self.gap, self.rate, self.width,
                             self.centre_jitter, self.missing)
        except ValueError as err:
            raise ConfigError(f"data.synthetic: {err}") from None


@dataclass
class LongitudinalDataConfig(VolumeDataConfig):
    """The training volumes and the network grid (:class:`~sciogen.volumes.VolumeDataConfig`),
    the synthetic set made from them, and how missing visits are simulated in training.

    Attributes:
        synthetic: the synthetic set (used when ``fit()`` gets no data).
        history_dropout: probability that a present visit is hidden from the conditioner in a
            training step (it can still be a target).
        time_key: the record key holding a visit's time when ``fit`` gets records.
    """

    synthetic: LongitudinalSyntheticConfig = field(default_factory=LongitudinalSyntheticConfig)
    history_dropout: float = 0.1
    time_key: str = "time"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.history_dropout < 1.0:
            raise ConfigError(f"data.history_dropout must be in [0, 1), got {self.history_dropout}")


@dataclass
class LongitudinalModelConfig(VolumeModelConfig):
    """The U-Net (:class:`~sciogen.volumes.VolumeModelConfig`; with cross-attention in its
    middle block, and at the levels of ``attention_levels``) and the conditioner.

    Attributes:
        context_dim: the conditioner's width D (the U-Net's cross-attention width).
        encoder_channels: visit encoder channels; each level halves the grid.
        tokens: each visit becomes tokens^3 tokens.
        queries: context tokens per target visit.
        depth, heads: the conditioner's transformer.
        time_scale: time units mapped to 1 in the time embeddings.
        previous_image: concatenate the latest earlier visit to the U-Net input.
        residual: diffuse the change since the latest earlier visit, divided by its RMS in
            the training data, instead of the visit itself (needs ``previous_image``): the
            change between visits is a few hundredths of the intensity range, far below the
            error floor of a model of whole volumes (the volumes card, ``domains/volumes/README.md``,
            gives the measurements).
    """

    channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    attention_levels: list[bool] = field(default_factory=lambda: [False, False, False])
    context_dim: int = 32
    encoder_channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    tokens: int = 2
    queries: int = 4
    depth: int = 2
    heads: int = 4
    time_scale: float = 5.0
    previous_image: bool = True
    residual: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not self.encoder_channels or any(c % self.norm_num_groups for c in self.encoder_channels):
            raise ConfigError(f"model.encoder_channels {self.encoder_channels} must be multiples of "
                              f"model.norm_num_groups ({self.norm_num_groups})")
        if self.context_dim < 2 or self.context_dim % self.heads or self.context_dim % 8:
            raise ConfigError(f"model.context_dim must be a multiple of model.heads ({self.heads}) and of 8, "
                              f"got {self.context_dim}")
        for name in ("tokens", "queries", "depth", "heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.time_scale <= 0:
            raise ConfigError(f"model.time_scale must be > 0, got {self.time_scale}")
        if self.residual and not self.previous_image:
            raise ConfigError("model.residual diffuses the change since the previous visit: it needs "
                              "model.previous_image: true")


@dataclass
class LongitudinalSamplingConfig(SamplingConfig):
    """Sampling defaults: a core solver on the MONAI timestep grid (``spacing`` as
    :class:`~sciogen.volumes.VolumeSamplingConfig`); ``clip`` clips each clean estimate to
    [-1, 1]."""

    steps: int = 20
    batch_size: int = 4
    clip: bool = False
    spacing: str = "logsnr"

    def __post_init__(self):
        super().__post_init__()
        check_choice("sampling.spacing", self.spacing, ("uniform", "logsnr"))


@dataclass
class LongitudinalConfig(RunConfig):
    """Run config of :class:`LongitudinalVolumeGenerator` (``train.batch_size`` counts subjects)."""

    domain: str = "volumes_longitudinal"
    data: LongitudinalDataConfig = field(default_factory=LongitudinalDataConfig)
    model: LongitudinalModelConfig = field(default_factory=LongitudinalModelConfig)
    process: VolumeProcessConfig = field(default_factory=lambda: VolumeProcessConfig(prediction="sample"))
    sampling: LongitudinalSamplingConfig = field(default_factory=LongitudinalSamplingConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=4, lr=2e-3, ema_decay=0.995))
