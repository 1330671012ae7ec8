"""The toy domain's run config (one YAML file, e.g. ``domains/toy/gmm.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.config import ConfigError
from sciogen.train.config import DiffusionConfig, RunConfig, SamplingConfig

__all__ = ["ToyConfig", "ToyDataConfig", "ToyModelConfig"]


@dataclass
class ToyDataConfig:
    """Where the vectors come from.

    ``source: gmm`` draws ``num_samples`` points from the example mixture
    :meth:`sciogen.diffusion.GaussianMixture.example` in R^dim with ``seed``;
    ``source: file`` reads ``path`` (.csv with one vector per row, .npy or .pt).
    ``standardize`` trains on (x - mean) / std and undoes it when sampling.
    """

    source: Literal["gmm", "file"] = "gmm"
    path: str | None = None
    num_samples: int = 20000
    dim: int = 2
    seed: int = 0
    standardize: bool = True

    def __post_init__(self):
        if self.source == "file" and not self.path:
            raise ConfigError("data.path is required when data.source is 'file'")
        if self.dim < 1 or self.num_samples < 1:
            raise ConfigError(f"data.dim and data.num_samples must be >= 1, got {self.dim}, {self.num_samples}")


@dataclass
class ToyModelConfig:
    """Size of the :class:`~sciogen.toy.network.MLPDenoiser`."""

    hidden: int = 128
    depth: int = 3
    time_dim: int = 64


@dataclass
class ToyConfig(RunConfig):
    """A toy run: data, model, diffusion process, sampling defaults and trainer options."""

    domain: str = "toy"
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
