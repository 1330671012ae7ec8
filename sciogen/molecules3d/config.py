"""The 3D molecules domain's run config (one YAML file, e.g. ``sciogen/recipes/molecules3d/qm9.yaml``).

Defaults follow EDM on QM9 with hydrogens (Hoogeboom et al. 2022): atom types as one-hot
vectors scaled by 0.25 diffused beside the positions (zero centre of mass), an EGNN
denoiser with time (and an optional property) as node features, the noise prediction and a
plain squared error; the sizes are scaled down for a CPU budget (the card says what was
trained).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.config import ConfigError, check_choice
from sciogen.molecules.datasets import QM9_PROPERTIES as MOLECULES_QM9_PROPERTIES
from sciogen.train.config import RunConfig, SamplingConfig

__all__ = ["Molecule3DDataConfig", "Molecule3DModelConfig", "Molecule3DDiffusionConfig", "Molecule3DConfig",
           "QM9_PROPERTIES"]

#: QM9 properties a model can be conditioned on (the EDM paper's conditional experiments), in
#: the units of the dataset (Debye, Bohr^3, Hartree, cal / (mol K)); the 2D domain's list
QM9_PROPERTIES = MOLECULES_QM9_PROPERTIES


@dataclass
class Molecule3DDataConfig:
    """Training molecules.

    Attributes:
        dataset: ``"qm9"`` (the DiGress split of the DFT geometries with hydrogens) or
            ``"file"`` (your own 3D molecules: an SDF or XYZ file, a folder or a glob).
        path: QM9: a file in the shared ``qm9_xyz.csv.gz`` format (null: the dataset
            registry's copy); ``file``: your molecules.
        download: fetch QM9 (checksummed) when the cache has no copy.
        split: the split trained on.
        limit: only the first ``limit`` molecules (null: all).
        elements: the element vocabulary (null: QM9's H, C, N, O, F, or inferred from your file).
        max_atoms: the largest molecule kept (null: the largest of the data).
        condition: a property to condition on (QM9: one of ``QM9_PROPERTIES``); null: unconditional.
    """

    dataset: Literal["qm9", "file"] = "qm9"
    path: str | None = None
    download: bool = False
    split: Literal["train", "val", "test"] = "train"
    limit: int | None = None
    elements: list[str] | None = None
    max_atoms: int | None = None
    condition: str | None = None

    def __post_init__(self):
        if self.dataset == "file" and not self.path:
            raise ConfigError("data.path is required when data.dataset is 'file'")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"data.limit must be >= 1 or null, got {self.limit}")
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ConfigError(f"data.max_atoms must be >= 1 or null, got {self.max_atoms}")
        if self.elements is not None and not self.elements:
            raise ConfigError("data.elements is empty; list element symbols (e.g. [H, C, N, O, F]) or use null")
        if self.dataset == "qm9" and self.condition is not None and self.condition not in QM9_PROPERTIES:
            raise ConfigError(f"data.condition {self.condition!r} is not a QM9 property; allowed: {', '.join(QM9_PROPERTIES)}")


@dataclass
class Molecule3DModelConfig:
    """The network: an EGNN denoiser (``kind: edm``, :class:`sciogen.molecules3d.network.EDMDynamics`)
    or a UniGenX sequence model (``kind: unigenx``, :mod:`sciogen.molecules3d.unigenx`).

    Attributes:
        kind: ``"edm"`` (de novo: positions and atom types by equivariant diffusion) or
            ``"unigenx"`` (SMILES tokens by a causal transformer, one 3D position per atom token
            by its per-token diffusion head: de novo and conformers of a given SMILES).
        hidden, layers: EGNN width and number of equivariant blocks (EDM: 256, 9); for UniGenX
            the transformer's width and depth.
        sublayers: (edm) feature updates per block (EDM: 2).
        attention: (edm) EGNN's edge gating.
        condition_dropout: (edm) probability of training a sample without its property (the
            learned null), which classifier-free guidance needs.
        heads, head_width, head_depth, diffusion_repeats: (unigenx) attention heads, the
            per-token diffusion head's width and depth, noise draws per position in the loss.
        tokens, max_len, max_atoms: (unigenx) the SMILES vocabulary and sequence limits, written
            here from the training data (so the checkpoint rebuilds the same network).
        scale, frame: (unigenx) coordinates in units of ``scale`` Å, in the molecule's principal
            axes (``"inertia"``) or randomly rotated in training (``"random"``).
    """

    kind: Literal["edm", "unigenx"] = "edm"
    hidden: int = 128
    layers: int = 6
    sublayers: int = 2
    attention: bool = True
    condition_dropout: float = 0.1
    heads: int = 4
    head_width: int = 256
    head_depth: int = 3
    diffusion_repeats: int = 4
    tokens: list[str] | None = None
    max_len: int | None = None
    max_atoms: int | None = None
    scale: float = 1.5
    frame: Literal["inertia", "random"] = "inertia"

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1 or self.sublayers < 1:
            raise ConfigError(f"model.hidden, model.layers and model.sublayers must be >= 1, got "
                              f"{self.hidden}, {self.layers}, {self.sublayers}")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ConfigError(f"model.condition_dropout must be in [0, 1), got {self.condition_dropout}")
        check_choice("model.kind", self.kind, ("edm", "unigenx"))
        check_choice("model.frame", self.frame, ("inertia", "random"))
        if self.heads < 1 or self.hidden % self.heads:
            raise ConfigError(f"model.heads ({self.heads}) must divide model.hidden ({self.hidden})")
        if self.head_width < 1 or self.head_depth < 1 or self.diffusion_repeats < 1:
            raise ConfigError("model.head_width, model.head_depth and model.diffusion_repeats must be >= 1")
        if not self.scale > 0:
            raise ConfigError(f"model.scale must be > 0 (Å), got {self.scale}")


@dataclass
class Molecule3DDiffusionConfig:
    """The Gaussian process over positions and scaled one-hot atom types.

    Attributes:
        schedule: a core schedule name (EDM: a polynomial VP schedule; cosine is the closest core one).
        type_scale: the one-hot types are diffused as ``type_scale * one_hot`` (EDM: 0.25), so
            positions are decided before types in the reverse process.
    """

    schedule: Literal["cosine", "linear"] = "cosine"
    type_scale: float = 0.25

    def __post_init__(self):
        if not self.type_scale > 0:
            raise ConfigError(f"diffusion.type_scale must be > 0, got {self.type_scale}")


@dataclass
class Molecule3DConfig(RunConfig):
    """A 3D molecules run: data, model, diffusion, sampling defaults and trainer options."""

    domain: str = "molecules3d"
    data: Molecule3DDataConfig = field(default_factory=Molecule3DDataConfig)
    model: Molecule3DModelConfig = field(default_factory=Molecule3DModelConfig)
    diffusion: Molecule3DDiffusionConfig = field(default_factory=Molecule3DDiffusionConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(solver="unipc", steps=50, batch_size=500))
