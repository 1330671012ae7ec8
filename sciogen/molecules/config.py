"""The molecules domain's run config (one YAML file, e.g. ``domains/molecules/qm9.yaml``).

Defaults follow PARD on QM9 (Zhao et al. 2024): heavy atoms with kekulized bonds, the
peeling order of :mod:`sciogen.molecules.blocks` (3 hops, PARD's weighting), marginal
transitions for atoms and bonds (DiGress), a bond loss weight of 5 (DiGress's lambda),
and the sizes scaled down for a CPU budget (the card says what was trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.config import ConfigError
from sciogen.train.config import RunConfig, SamplingConfig, TrainConfig

__all__ = ["MoleculeDataConfig", "MoleculeModelConfig", "MoleculeDiffusionConfig", "MoleculeSamplingConfig", "MoleculeConfig",
           "CONDITION_NAMES", "RDKIT_CONDITIONS"]

#: graph-level conditions of QM9 / MOSES models: QM9's DFT properties and RDKit's
CONDITION_NAMES = ("mu", "alpha", "homo", "lumo", "gap", "cv", "qed", "logp", "sa", "weight")
#: conditions computed with RDKit from any molecule (used for your own files when no column has the name)
RDKIT_CONDITIONS = ("qed", "logp", "sa", "weight")


@dataclass
class MoleculeDataConfig:
    """Training molecules.

    Attributes:
        dataset: ``"qm9"`` (DiGress / PARD split), ``"moses"``, ``"file"`` (your own
            molecules: ``path`` is a SMILES / CSV / TSV / parquet / SDF file, a folder or a
            glob; see :mod:`sciogen.molecules.own_data`) or ``"custom"`` (the molecules
            passed to ``fit(data)`` in Python).
        path: local copy of the dataset (QM9: the folder with ``qm9_smiles.csv``; null: the
            dataset registry's copy in ``$SCIOGEN_CACHE``), or your file.
        download: fetch QM9 / MOSES (checksummed) when the cache has no copy.
        column: the SMILES column of a CSV / TSV / parquet file (null: found by name).
        split: the split trained on.
        limit: only the first ``limit`` molecules (null: all).
        explicit_hydrogens: hydrogens as nodes (QM9 with H).
        atom_types: the atom vocabulary (tokens such as ``C``, ``[N+]``, ``Cl``); null: the
            dataset's preset (QM9, MOSES) or inferred from your file. ``sciogen train
            --data`` writes the inferred one here, so the checkpoint decodes with it.
        max_atoms: the largest molecule the network holds (atoms counted as nodes); null:
            the preset, or the largest molecule of your file up to 64.
        bonds: ``"kekulize"`` (single / double / triple) or ``"aromatic"`` (+ aromatic) for
            your own files; QM9 and MOSES presets are kekulized.
        hops, weighting: PARD's block decomposition (see :func:`sciogen.molecules.peel_blocks`).
    """

    dataset: Literal["qm9", "moses", "file", "custom"] = "qm9"
    path: str | None = None
    download: bool = False
    column: str | None = None
    split: Literal["train", "val", "test"] = "train"
    limit: int | None = None
    explicit_hydrogens: bool = False
    atom_types: list[str] | None = None
    max_atoms: int | None = None
    bonds: Literal["kekulize", "aromatic"] = "kekulize"
    hops: int = 3
    weighting: Literal["pard", "lexicographic"] = "pard"

    def __post_init__(self):
        if self.dataset == "file" and not self.path:
            raise ConfigError("data.path is required when data.dataset is 'file'")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null, got {self.limit}")
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ConfigError(f"data.max_atoms must be >= 1 or null, got {self.max_atoms}")
        if self.atom_types is not None and not self.atom_types:
            raise ConfigError("data.atom_types is empty; list the atom tokens (e.g. [C, N, O, '[N+]']) or use null")


@dataclass
class MoleculeModelConfig:
    """Size of the :class:`~sciogen.molecules.network.PARDNet` and its conditions.

    Attributes:
        conditions: graph-level properties the model is trained to follow (classifier-free
            guidance); [] = unconditional. QM9 / MOSES: names of :data:`CONDITION_NAMES`;
            your own files: any numeric column / SD tag, or one of :data:`RDKIT_CONDITIONS`.
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
        bad = [c for c in self.conditions if not str(c).strip() or "=" in str(c)]
        if bad:
            raise ConfigError(f"model.conditions has bad names {bad}: a name is a non-empty column name without '='")
        if len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"model.conditions has duplicates: {self.conditions}")
        if not 0.0 <= self.cond_drop < 1.0:
            raise ConfigError(f"model.cond_drop must be in [0, 1), got {self.cond_drop}")


@dataclass
class MoleculeDiffusionConfig:
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


#: what a disconnected sample keeps (``sampling.fragments``)
FRAGMENT_CHOICES = ("largest", "whole")


@dataclass
class MoleculeSamplingConfig(SamplingConfig):
    """Sampling defaults: ancestral steps per block, molecules per network call.

    ``valence_retries``: a block that exceeds some atom's valence is denoised again from
    fresh noise, at most this many times (0 = PARD's plain sampler; see
    :func:`sciogen.molecules.pard.sample_graphs`).
    ``fragments``: what a sample is when its graph falls apart into several molecules
    (``C.C.FC(F)(F)F``): ``"largest"`` keeps the largest fragment (the molecule the validity
    metric scores; the graph's fragment count stays on the Mol and in the CSV's ``fragments``
    column), ``"whole"`` keeps every fragment (a dot-separated SMILES).
    """

    solvers = ("ancestral",)  # categorical diffusion: PARD's ancestral sampler

    solver: str = "ancestral"
    steps: int = 20
    batch_size: int = 500
    guidance: float = 1.0
    valence_retries: int = 0
    fragments: Literal["largest", "whole"] = "largest"

    def __post_init__(self):
        super().__post_init__()
        if self.valence_retries < 0:
            raise ConfigError(f"sampling.valence_retries must be >= 0, got {self.valence_retries}")
        if self.fragments not in FRAGMENT_CHOICES:
            raise ConfigError(f"sampling.fragments must be one of {', '.join(FRAGMENT_CHOICES)}; got {self.fragments!r}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(steps=20000, batch_size=128, lr=5e-4, warmup_steps=500, decay="cosine", min_lr_ratio=0.1,
                       grad_clip=1.0, ema_decay=0.999, checkpoint_every=1000, log_every=50)


@dataclass
class MoleculeConfig(RunConfig):
    """A PARD run: data, network, diffusion, sampling defaults and trainer options."""

    domain: str = "molecules"
    data: MoleculeDataConfig = field(default_factory=MoleculeDataConfig)
    model: MoleculeModelConfig = field(default_factory=MoleculeModelConfig)
    diffusion: MoleculeDiffusionConfig = field(default_factory=MoleculeDiffusionConfig)
    sampling: MoleculeSamplingConfig = field(default_factory=MoleculeSamplingConfig)
    train: TrainConfig = field(default_factory=_train_defaults)

    def __post_init__(self):
        if self.data.dataset in ("qm9", "moses"):
            unknown = [c for c in self.model.conditions if c not in CONDITION_NAMES]
            if unknown:
                raise ConfigError(
                    f"model.conditions has unknown names {unknown} for data.dataset {self.data.dataset!r}; allowed: "
                    f"{', '.join(CONDITION_NAMES)} (your own columns need your own data: sciogen train molecules "
                    "--data FILE --condition-on COLUMN)"
                )
