"""The molecules domain's run config (one YAML file, e.g. ``domains/molecules/qm9.yaml``).

Defaults follow PARD on QM9 (Zhao et al. 2024): heavy atoms with kekulized bonds, the
peeling order of :mod:`sciogen.molecules.blocks` (3 hops, PARD's weighting), marginal
transitions for atoms and bonds (DiGress), a bond loss weight of 5 (DiGress's lambda),
and the sizes scaled down for a CPU budget (the card says what was trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.train.config import ConfigError, RunConfig, TrainConfig

__all__ = ["MolDataConfig", "MolModelConfig", "MolDiffusionConfig", "MolSamplingConfig", "MoleculeConfig", "CONDITION_NAMES"]

#: graph-level conditions a model can be trained on: QM9's DFT properties and RDKit's
CONDITION_NAMES = ("mu", "alpha", "homo", "lumo", "gap", "cv", "qed", "logp", "sa", "weight")


@dataclass
class MolDataConfig:
    """Training molecules.

    Attributes:
        dataset: ``"qm9"`` (DiGress / PARD split), ``"moses"`` or ``"file"`` (``path``:
            a SMILES / CSV / SDF file read with :func:`sciogen.molecules.read_molecules`).
        path: local copy of the dataset (QM9: the folder with ``qm9_smiles.csv``), or the file.
        split: the split trained on.
        limit: only the first ``limit`` molecules (null: all).
        explicit_hydrogens: hydrogens as nodes (QM9 with H).
        hops, weighting: PARD's block decomposition (see :func:`sciogen.molecules.peel_blocks`).
    """

    dataset: Literal["qm9", "moses", "file"] = "qm9"
    path: str | None = None
    split: Literal["train", "val", "test"] = "train"
    limit: int | None = None
    explicit_hydrogens: bool = False
    hops: int = 3
    weighting: Literal["pard", "lexicographic"] = "pard"

    def __post_init__(self):
        if self.dataset == "file" and not self.path:
            raise ConfigError("data.path is required when data.dataset is 'file'")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null, got {self.limit}")


@dataclass
class MolModelConfig:
    """Size of the :class:`~sciogen.molecules.network.PARDNet` and its conditions.

    Attributes:
        conditions: graph-level properties the model is trained to follow (classifier-free
            guidance; see :data:`CONDITION_NAMES`); [] = unconditional.
        cond_drop: probability of dropping all conditions of a training molecule (the
            unconditional model); each one is also dropped alone with this probability.
    """

    node_dim: int = 128
    edge_dim: int = 64
    layers: int = 5
    heads: int = 4
    dropout: float = 0.0
    max_degree: int = 4
    conditions: list[str] = field(default_factory=list)
    cond_drop: float = 0.2

    def __post_init__(self):
        unknown = [c for c in self.conditions if c not in CONDITION_NAMES]
        if unknown:
            raise ConfigError(f"model.conditions has unknown names {unknown}; allowed: {', '.join(CONDITION_NAMES)}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ConfigError(f"model.cond_drop must be in [0, 1), got {self.cond_drop}")


@dataclass
class MolDiffusionConfig:
    """The categorical processes of atoms and bonds, and the loss.

    Attributes:
        transition: ``"marginal"`` (DiGress / PARD) or ``"uniform"``.
        schedule: abar(t): ``"cosine"`` (DiGress) or ``"linear"``.
        bond_weight: weight of the bond cross-entropy against the atoms' (DiGress: 5).
        block_weight: weight of the next-block (size, degree) cross-entropy.
        one_block: the whole molecule is one block (a DiGress-like one-shot model).
    """

    transition: Literal["marginal", "uniform"] = "marginal"
    schedule: Literal["cosine", "linear"] = "cosine"
    bond_weight: float = 5.0
    block_weight: float = 1.0
    one_block: bool = False


@dataclass
class MolSamplingConfig:
    """Sampling defaults: ancestral steps per block, molecules per network call.

    ``valence_retries``: a block that exceeds some atom's valence is denoised again from
    fresh noise, at most this many times (0 = PARD's plain sampler; see
    :func:`sciogen.molecules.pard.sample_graphs`).
    """

    solver: Literal["ancestral"] = "ancestral"
    steps: int = 20
    batch_size: int = 500
    guidance: float = 1.0
    valence_retries: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"sampling.steps and sampling.batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.valence_retries < 0:
            raise ConfigError(f"sampling.valence_retries must be >= 0, got {self.valence_retries}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(steps=20000, batch_size=128, lr=5e-4, warmup_steps=500, decay="cosine", min_lr_ratio=0.1,
                       grad_clip=1.0, ema_decay=0.999, checkpoint_every=1000, log_every=50)


@dataclass
class MoleculeConfig(RunConfig):
    """A PARD run: data, network, diffusion, sampling defaults and trainer options."""

    domain: str = "molecules"
    data: MolDataConfig = field(default_factory=MolDataConfig)
    model: MolModelConfig = field(default_factory=MolModelConfig)
    diffusion: MolDiffusionConfig = field(default_factory=MolDiffusionConfig)
    sampling: MolSamplingConfig = field(default_factory=MolSamplingConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
