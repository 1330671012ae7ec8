"""``VectorGenerator``: Gaussian diffusion of vectors in R^d with an MLP denoiser.

The core's demo domain: it trains on draws from a known Gaussian mixture (whose exact
denoiser gives ground truth) or on any user array / CSV of vectors.

    >>> from sciogen.toy import VectorGenerator, ToyConfig
    >>> gen = VectorGenerator(ToyConfig())
    >>> gen.fit(steps=20, batch_size=64, progress=False).sample(5, seed=0).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sciogen.diffusion import GaussianMixture, GaussianProcess, TunedGrid, sample, search_grid
from sciogen.train.generator import Generator
from sciogen.train.trainer import ValidateFn

from .config import ToyConfig
from .io import SUFFIXES, read_vectors, write_vectors
from .metrics import vector_metrics
from .network import MLPDenoiser

__all__ = ["VectorGenerator"]

VALIDATION_SAMPLES = 1000


class VectorGenerator(Generator):
    """Generates vectors (N, D). Domain name ``"toy"``; config :class:`ToyConfig`.

    ``fit(data)`` accepts a tensor / NumPy array (N, D) or a path (.csv, .npy, .pt); with no
    data it uses ``config.data``. ``sample(n)`` returns a float32 tensor (n, D) in data units;
    ``sample(n, steps=5, grid="tuned")`` uses the times :meth:`tune_grid` stored for the solver
    and steps (``grid`` may also be ``"uniform"``, ``"logsnr"`` or ``"karras"``).
    """

    domain = "toy"
    config_class = ToyConfig
    output_formats = SUFFIXES

    def __init__(self, config: ToyConfig | None = None):
        super().__init__(config)
        dim = self.config.data.dim
        self.shift = torch.zeros(dim)
        self.scale = torch.ones(dim)
        self._reference: torch.Tensor | None = None

    # -- domain parts ----------------------------------------------------------------------

    @property
    def process(self) -> GaussianProcess:
        d = self.config.diffusion
        return GaussianProcess(d.schedule, d.prediction, d.loss_weighting)

    def mixture(self) -> GaussianMixture | None:
        """The ground-truth mixture when the data source is ``gmm``, else None."""
        data = self.config.data
        return GaussianMixture.example(data.dim) if data.source == "gmm" else None

    def build_model(self) -> nn.Module:
        m = self.config.model
        return MLPDenoiser(self.config.data.dim, hidden=m.hidden, depth=m.depth, time_dim=m.time_dim)

    def raw_data(self, data: Any = None) -> torch.Tensor:
        """The training vectors in data units, float32 (N, D)."""
        cfg = self.config.data
        if data is None and cfg.source == "gmm":
            g = torch.Generator().manual_seed(cfg.seed)
            x = self.mixture().sample(cfg.num_samples, generator=g)
        elif data is None:
            x = read_vectors(cfg.path)
        elif isinstance(data, (str, Path)):
            x = read_vectors(data)
        else:
            x = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
        x = x.float()
        if x.ndim != 2 or x.shape[1] != cfg.dim:
            raise ValueError(
                f"training vectors must have shape (N, {cfg.dim}), got {tuple(x.shape)}; for other "
                f"dimensions build the generator with ToyConfig(data=ToyDataConfig(dim=...))"
            )
        return x

    @classmethod
    def own_data_config(cls, config: ToyConfig, data: Any, **options: Any) -> ToyConfig:
        """Train on a file of vectors (.csv / .npy / .pt): ``data.source: file``, ``data.dim``
        read from the file."""
        if not isinstance(data, (str, Path)):
            raise ValueError("the toy domain's --data is a file of vectors (.csv, .npy or .pt)")
        config.data.source, config.data.path = "file", str(data)
        config.data.dim = int(read_vectors(data).shape[1])
        return config

    def training_data(self, data: Any = None) -> torch.Tensor:
        x = self.raw_data(data)
        from_mixture = data is None and self.config.data.source == "gmm"
        self._reference = None if from_mixture else x[:5000].clone()
        if self.config.data.standardize:
            self.shift, self.scale = x.mean(0), x.std(0).clamp_min(1e-6)
        return (x - self.shift) / self.scale

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.process.loss(model, batch, generator=generator)

    def sample_batch(
        self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
        grid: str | None = None, **conditions
    ) -> torch.Tensor:
        if conditions:
            raise ValueError(f"the toy domain takes no sampling conditions, got {sorted(conditions)}")
        d = self.config.diffusion
        device = next(model.parameters()).device
        times = self.tuned_grid(solver, steps) if isinstance(grid, str) and grid == "tuned" else grid
        x_T = self.process.prior((n, self.config.data.dim), generator=generator, device=device)
        x0 = sample(model, x_T, schedule=d.schedule, prediction=d.prediction, solver=solver, steps=steps,
                    generator=generator, grid=times)
        return x0 * self.scale.to(device) + self.shift.to(device)

    def tune_grid(self, steps: int, solver: str | None = None, samples: int = 100, **options: Any) -> TunedGrid:
        """Search the ``steps`` sampling times of ``solver`` (default: ``config.sampling.solver``) that
        bring the EMA model closest to its own many-step solution, from ``samples`` noises, and store
        them under ``"<solver>/<steps>"`` for ``sample(..., grid="tuned")`` (saved with the model).

        ``options``: those of :func:`sciogen.diffusion.search_grid` (``teacher_steps``,
        ``iterations``, ``generator``, ...). Returns its :class:`~sciogen.diffusion.TunedGrid`.
        """
        solver = solver or self._sampling_defaults().solver
        d = self.config.diffusion
        model = self.sampling_model.eval()
        found = search_grid(model, self.process.schedule, d.prediction, solver, steps, shape=(self.config.data.dim,),
                            samples=samples, device=self.device, **options)
        self.tuned_grids[f"{solver}/{int(steps)}"] = found.times.tolist()
        return found

    # -- metadata, validation, evaluation --------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"shift": self.shift.clone(), "scale": self.scale.clone()}

    def load_metadata(self, metadata) -> None:
        if "shift" in metadata:
            self.shift, self.scale = metadata["shift"].float(), metadata["scale"].float()

    def reference_data(self) -> torch.Tensor | None:
        """Up to 5000 training vectors; None when training on the example mixture (then
        :meth:`evaluate_samples` compares with fresh draws from it)."""
        return self._reference

    def validation(self) -> ValidateFn:
        def validate(model: nn.Module, step: int) -> dict[str, float]:
            s = self._sampling_defaults()
            g = torch.Generator(device=next(model.parameters()).device).manual_seed(step)
            x = self.sample_batch(model, VALIDATION_SAMPLES, generator=g, steps=s.steps, solver=s.solver).cpu()
            return self.evaluate(x)

        return validate

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """Energy distance, mean and covariance errors against ``reference``.

        ``reference``: vectors (tensor / array), a file path, or None for draws from the
        example Gaussian mixture of the samples' dimension (then also the mixture NLL).
        """
        x = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples).float()
        if x.ndim != 2:
            raise ValueError(f"samples must have shape (N, D), got {tuple(x.shape)}")
        mixture = None
        if reference is None:
            mixture = GaussianMixture.example(x.shape[1])
            reference = mixture.sample(5000, generator=torch.Generator().manual_seed(12345))
        elif isinstance(reference, (str, Path)):
            reference = read_vectors(reference)
        ref = torch.as_tensor(np.asarray(reference) if not isinstance(reference, torch.Tensor) else reference)
        return vector_metrics(x, ref.float(), mixture)

    @classmethod
    def add_sample_arguments(cls, parser) -> None:
        parser.add_argument("--grid", choices=("uniform", "logsnr", "karras", "tuned"),
                            help="sampling times (default: the schedule's own grid); tuned: the grid "
                                 "`sciogen tune-solver` stored for this solver and number of steps")

    @classmethod
    def write_samples(cls, samples: torch.Tensor, path: str | Path) -> Path:
        return write_vectors(samples, path)

    @classmethod
    def read_samples(cls, path: str | Path) -> torch.Tensor:
        return read_vectors(path)
