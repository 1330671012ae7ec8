"""The crystals domain's run config (one YAML file, e.g. ``domains/crystals/perov5.yaml``).

Two model kinds share the config (``model.kind``):

- ``cspnet`` (default): DiffCSP (Jiao et al. 2023) joint diffusion with the periodic
  :class:`~sciogen.crystals.network.CSPNet`. Defaults follow DiffCSP: cosine schedule for
  the lattice, wrapped normal with sigma in [0.005, 0.5] for fractional coordinates,
  predictor-corrector sampling; the network is smaller than DiffCSP's (hidden 512,
  6 layers) for a CPU budget.
- ``unigenx``: UniGenX (Zhang et al. 2025), a causal transformer over element tokens,
  lattice rows and coordinates with a per-token diffusion head
  (:mod:`sciogen.crystals.unigenx`); sampled with a core solver (``ddim``, ``dpm++2m``, ...)
  per number. The ``diffusion`` section (DiffCSP's processes) is then unused: the head's
  process is :class:`~sciogen.ar.TokenARConfig`'s default (cosine schedule, v prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.config import ConfigError
from sciogen.train.config import RunConfig, SamplingConfig, TrainConfig

__all__ = ["CrystalDataConfig", "CrystalModelConfig", "CrystalDiffusionConfig", "CrystalSamplingConfig", "CrystalConfig",
           "DATASETS"]

#: CDVAE-format benchmarks with dataset cards (``sciogen/datasets/<name>.yaml``)
DATASETS = ("perov_5", "carbon_24", "mp_20", "mpts_52")


@dataclass
class CrystalDataConfig:
    """Training crystals.

    Your own crystals (``sciogen train crystals --data PATH`` sets these): ``dataset: file``
    with ``path`` a folder of CIFs (searched recursively), a CIF file, a CDVAE / MP-20-style
    CSV (CIF text in the column ``column``), an extxyz file (ASE) or a glob of these.

    Attributes:
        dataset: a CDVAE benchmark (:data:`DATASETS`) or ``"file"`` (your own files, ``path``).
        path: the benchmark's local folder of CSV files (null: the dataset cache), or your files.
        split: the benchmark split trained on (Perov-5 here: ``val``, as the official train file is absent).
        limit: only the first ``limit`` crystals (null: all).
        niggli: Niggli-reduce cells before training (CDVAE, DiffCSP).
        max_atoms: the largest cell the model supports; larger cells of your files are skipped
            and reported (null: the benchmark's, or 20 for files; ``--data`` sets it to the
            largest usable cell of the data).
        column: the CSV column holding the CIF text (``--column``).
        download: fetch the benchmark (checksummed) into the cache when no copy is there.
    """

    dataset: str = "perov_5"
    path: str | None = None
    split: Literal["train", "val", "test"] = "train"
    limit: int | None = None
    niggli: bool = True
    max_atoms: int | None = None
    column: str = "cif"
    download: bool = False

    def __post_init__(self):
        if self.dataset not in (*DATASETS, "file"):
            raise ConfigError(f"data.dataset={self.dataset!r}; allowed: {', '.join(DATASETS)}, file")
        if self.dataset == "file" and not self.path:
            raise ConfigError("data.path is required when data.dataset is 'file'")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null, got {self.limit}")
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ConfigError(f"data.max_atoms must be >= 1 or null, got {self.max_atoms}")


@dataclass
class CrystalModelConfig:
    """The network: a :class:`~sciogen.crystals.network.CSPNet` or a UniGenX transformer.

    Attributes:
        kind: ``"cspnet"`` (DiffCSP) or ``"unigenx"`` (:func:`~sciogen.crystals.unigenx.build_unigenx`).
        hidden, layers: width and depth of either network (UniGenX: transformer dim and blocks).
        frequencies, time_dim: CSPNet only (Fourier features, time embedding).
        heads, head_width, head_depth, diffusion_repeats, dropout: UniGenX only (attention
            heads; the AdaLN-MLP diffusion head; noise draws per number and step).
        frac_scale: UniGenX only; fractional coordinates enter as ``frac_scale * (f - 0.5)``.
        conditions: CSPNet only: numeric properties (CSV columns, extxyz info keys) the model
            is trained to follow with classifier-free guidance (``--condition-on``); [] = none.
        cond_drop: probability of replacing all conditions of a training crystal by their null
            embedding (the unconditional model of guidance); each one is also dropped alone
            with this probability.
    """

    kind: Literal["cspnet", "unigenx"] = "cspnet"
    hidden: int = 256
    layers: int = 4
    frequencies: int = 32
    time_dim: int = 64
    heads: int = 4
    head_width: int = 256
    head_depth: int = 3
    diffusion_repeats: int = 4
    dropout: float = 0.0
    frac_scale: float = 2.0
    conditions: list[str] = field(default_factory=list)
    cond_drop: float = 0.1

    def __post_init__(self):
        sizes = (self.hidden, self.layers, self.frequencies, self.time_dim, self.heads, self.head_width,
                 self.head_depth, self.diffusion_repeats)
        if min(sizes) < 1 or self.time_dim % 2:
            raise ConfigError("model sizes must be >= 1 and model.time_dim even")
        if self.kind == "unigenx" and self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if not self.frac_scale > 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.frac_scale must be > 0 and model.dropout in [0, 1), got {self.frac_scale}, {self.dropout}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ConfigError(f"model.cond_drop must be in [0, 1), got {self.cond_drop}")
        if len(set(self.conditions)) != len(self.conditions) or not all(isinstance(c, str) and c for c in self.conditions):
            raise ConfigError(f"model.conditions must be distinct names, got {self.conditions}")
        if self.conditions and self.kind == "unigenx":
            raise ConfigError("model.conditions (--condition-on) are implemented for CSPNet models only "
                              "(model.kind: cspnet); UniGenX models train unconditionally")


@dataclass
class CrystalDiffusionConfig:
    """The three processes and the loss (see :mod:`sciogen.crystals.diffcsp`).

    Attributes:
        lattice_schedule: the Gaussian schedule of the lattice (DiffCSP: cosine).
        lattice_prediction: what the network predicts for the lattice. ``"v"`` (default):
            the cosine schedule ends at alpha(1) ~ 5e-4, where the x0 estimate of an eps
            model divides by alpha and the first sampling steps of a short grid blow up
            (DiffCSP's eps model samples with 1,000 steps).
        sigma_min, sigma_max: the wrapped normal of the coordinates (DiffCSP: 0.005, 0.5).
        type_transition: categorical transitions of element types (de novo).
        csp_fraction: share of training crystals whose types stay clean (structure prediction).
        weights: loss weights of lattice, coordinates, types.
    """

    lattice_schedule: Literal["cosine", "linear"] = "cosine"
    lattice_prediction: Literal["eps", "v", "x0"] = "v"
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    type_transition: Literal["marginal", "uniform"] = "marginal"
    csp_fraction: float = 0.5
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    def __post_init__(self):
        if not 0.0 <= self.csp_fraction <= 1.0:
            raise ConfigError(f"diffusion.csp_fraction must be in [0, 1], got {self.csp_fraction}")
        if len(self.weights) != 3 or min(self.weights) < 0:
            raise ConfigError(f"diffusion.weights must be 3 non-negative numbers (lattice, coordinates, types), got {self.weights}")


@dataclass
class CrystalSamplingConfig(SamplingConfig):
    """Sampling defaults: predictor steps, Langevin corrector, crystals per network call.

    DiffCSP samples with 1,000 steps; its recommended corrector step sizes (``step_lr``,
    ``recommand_step_lr`` of its ``scripts/eval_utils.py``) are 5e-7 for structure
    prediction on Perov-5 (1e-5 on MP-20) and 1e-6 for de novo generation on Perov-5
    (5e-6 on MP-20).

    UniGenX models use a core solver (:data:`sciogen.diffusion.SOLVERS`, e.g. ``ddim``) for
    each number, ``steps`` per number; ``temperature`` scales the solver's starting noise
    and ``token_temperature`` the softmax of element tokens (de novo). The corrector
    options are CSPNet's only.

    ``guidance`` is the default classifier-free guidance scale of models trained with
    ``model.conditions`` (1: the plain conditional model, 0: unconditional).
    """

    @classmethod
    def allowed_solvers(cls) -> tuple[str, ...]:
        """``pc`` (CSPNet's predictor-corrector) and the core's solvers (UniGenX's numbers)."""
        return ("pc", *super().allowed_solvers())

    solver: str = "pc"
    steps: int = 200
    corrector_steps: int = 1
    step_lr: float = 5e-7
    denovo_step_lr: float = 1e-6
    temperature: float = 1.0
    token_temperature: float = 1.0
    batch_size: int = 500
    guidance: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.corrector_steps < 0 or min(self.step_lr, self.denovo_step_lr) <= 0:
            raise ConfigError("sampling.corrector_steps must be >= 0 and sampling.step_lr, denovo_step_lr > 0")
        if self.temperature < 0 or self.token_temperature < 0:
            raise ConfigError("sampling.temperature and sampling.token_temperature must be >= 0")
        if not self.guidance >= 0:
            raise ConfigError(f"sampling.guidance must be >= 0, got {self.guidance}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(steps=20000, batch_size=128, lr=1e-3, warmup_steps=200, decay="cosine", min_lr_ratio=0.05,
                       grad_clip=1.0, ema_decay=0.999, checkpoint_every=1000, log_every=50)


@dataclass
class CrystalConfig(RunConfig):
    """A DiffCSP-style run: data, network, diffusion, sampling defaults and trainer options."""

    domain: str = "crystals"
    data: CrystalDataConfig = field(default_factory=CrystalDataConfig)
    model: CrystalModelConfig = field(default_factory=CrystalModelConfig)
    diffusion: CrystalDiffusionConfig = field(default_factory=CrystalDiffusionConfig)
    sampling: CrystalSamplingConfig = field(default_factory=CrystalSamplingConfig)
    train: TrainConfig = field(default_factory=_train_defaults)

    def __post_init__(self):
        pc = self.sampling.solver == "pc"
        if pc != (self.model.kind == "cspnet"):
            want = "pc" if self.model.kind == "cspnet" else "a core solver such as ddim"
            raise ConfigError(f"sampling.solver={self.sampling.solver!r} does not fit model.kind={self.model.kind!r}; use {want}")
