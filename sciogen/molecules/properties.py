"""A graph regressor of QM9's DFT properties, to score property-conditioned samples.

QM9's HOMO-LUMO gap, dipole moment and the other DFT properties are known only for the
molecules of QM9, so a conditional sample that is a new molecule cannot be looked up.
DiGress scores its conditional QM9 samples with a regressor trained on QM9; this module is
that regressor: a GINE message-passing network (Hu et al. 2020, torch-geometric's
``GINEConv``) over the heavy-atom graph with RDKit atom and bond features, trained on the
DiGress / PARD training split with the shared :class:`~sciogen.train.Trainer`.

    predictor = load_property_predictor("qm9")            # shipped, trained on QM9 train
    values = predictor.predict(mols)                      # (n, 6) float, NaN where mol is None
    predictor.predict(mols, "gap")                        # (n,) hartree

Train it again (the recipe of the shipped file)::

    python -m sciogen.molecules.properties domains/molecules/qm9_properties.yaml \
        --run-dir runs/qm9-properties --out sciogen/checkpoints/predictors/molecules-qm9-properties.pt

Features (one-hot unless said): atoms: element (the predictor's vocabulary), formal charge
-1 / 0 / +1, total hydrogens 0-4, degree 0-4, hybridisation sp / sp2 / sp3 / other, aromatic,
in a ring of size 3, 4, 5, 6, 7-9 (binary each); bonds: single / double / triple / aromatic,
conjugated, in a ring. The molecule goes through its canonical SMILES first, so a molecule
gets the same features whichever way it was built.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GINEConv, global_add_pool, global_mean_pool

from sciogen.config import ConfigError, from_dict, to_dict
from sciogen.train.config import TrainConfig

from .datasets import QM9_PROPERTIES
from .representation import UnknownAtomTypeError, canonical_smiles, parse_smiles

__all__ = [
    "PropertyNet", "PropertyPredictor", "PropertyModelConfig", "PropertyDataConfig", "PropertyRunConfig",
    "featurize", "load_property_predictor", "train_property_predictor",
]

#: the format tag of predictor files written before they became sciogen checkpoints (still read)
OLD_FORMAT = "sciogen-molecule-properties"
UNITS = {"mu": "D", "alpha": "bohr^3", "homo": "hartree", "lumo": "hartree", "gap": "hartree", "cv": "cal/mol/K"}
_CHARGES = (-1, 0, 1)
_HYBRID = ("SP", "SP2", "SP3")
_RINGS = (3, 4, 5, 6)
_BONDS = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
BOND_FEATURES = len(_BONDS) + 2


def atom_feature_size(elements: Sequence[str]) -> int:
    return len(elements) + len(_CHARGES) + 5 + 5 + len(_HYBRID) + 1 + 1 + len(_RINGS) + 1


def _one_hot(value, choices) -> list[float]:
    return [float(value == c) for c in choices]


def featurize(mol, elements: Sequence[str], *, index: int | None = None) -> Data:
    """RDKit ``Mol`` (or SMILES) -> ``Data(x (N, F), edge_index (2, 2B), edge_attr (2B, 6))``.

    Raises :class:`UnknownAtomTypeError` naming the element (and ``index``) when an atom
    is outside ``elements``, :class:`~sciogen.molecules.MoleculeError` for an unparsable SMILES.
    """
    if isinstance(mol, str):
        mol = parse_smiles(mol, index=index)
    mol = parse_smiles(canonical_smiles(mol), index=index)
    ring_info = mol.GetRingInfo()
    rows = []
    for atom in mol.GetAtoms():
        symbol = atom.GetSymbol()
        if symbol not in elements:
            where = f" (molecule {index})" if index is not None else ""
            raise UnknownAtomTypeError(
                f"element {symbol}{where} is outside the property predictor's elements {list(elements)}")
        k = atom.GetIdx()
        rows.append(
            _one_hot(symbol, elements) + _one_hot(atom.GetFormalCharge(), _CHARGES)
            + _one_hot(min(atom.GetTotalNumHs(), 4), range(5)) + _one_hot(min(atom.GetDegree(), 4), range(5))
            + _one_hot(str(atom.GetHybridization()), _HYBRID) + [float(str(atom.GetHybridization()) not in _HYBRID)]
            + [float(atom.GetIsAromatic())] + [float(ring_info.IsAtomInRingOfSize(k, s)) for s in _RINGS]
            + [float(any(ring_info.IsAtomInRingOfSize(k, s) for s in range(7, 10)))]
        )
    src, dst, attr = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feats = _one_hot(str(bond.GetBondType()), _BONDS) + [float(bond.GetIsConjugated()), float(bond.IsInRing())]
        src += [i, j]
        dst += [j, i]
        attr += [feats, feats]
    return Data(
        x=torch.tensor(rows, dtype=torch.float32).view(-1, atom_feature_size(elements)),
        edge_index=torch.tensor([src, dst], dtype=torch.long).view(2, -1),
        edge_attr=torch.tensor(attr, dtype=torch.float32).view(-1, BOND_FEATURES),
    )


@dataclass
class PropertyModelConfig:
    """The regressor: ``layers`` residual GINE layers of width ``hidden``."""

    elements: tuple[str, ...] = ("C", "N", "O", "F")
    properties: tuple[str, ...] = QM9_PROPERTIES
    hidden: int = 128
    layers: int = 5

    def __post_init__(self):
        self.elements, self.properties = tuple(self.elements), tuple(self.properties)
        unknown = [p for p in self.properties if p not in QM9_PROPERTIES]
        if unknown:
            raise ConfigError(f"model.properties: unknown {unknown}; allowed: {list(QM9_PROPERTIES)}")
        if not self.properties or self.hidden < 1 or self.layers < 1:
            raise ConfigError("model.properties must be non-empty, model.hidden and model.layers >= 1")


@dataclass
class PropertyDataConfig:
    """QM9 (DiGress / PARD split): ``path`` is the local folder with ``qm9_smiles.csv`` (None:
    cache, qm9pack); ``limit`` keeps the first molecules of each split (tests)."""

    path: str | None = None
    limit: int | None = None


@dataclass
class PropertyRunConfig:
    """``domains/molecules/qm9_properties.yaml``: model, data and training options."""

    model: PropertyModelConfig = field(default_factory=PropertyModelConfig)
    data: PropertyDataConfig = field(default_factory=PropertyDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class PropertyNet(nn.Module):
    r"""Residual GINE layers, then [sum, mean] pooling and an MLP.

    :math:`h_i \leftarrow h_i + \mathrm{GINE}(\mathrm{LN}(h))_i`, with
    :math:`\mathrm{GINE}(h)_i = \mathrm{MLP}(h_i + \sum_{j \in N(i)} \mathrm{ReLU}(h_j + W e_{ij}))`.
    Sum pooling carries size-extensive properties (alpha, Cv), mean pooling intensive ones.

    Shapes: ``x`` (N, F), ``edge_index`` (2, E), ``edge_attr`` (E, 6), ``batch`` (N,) ->
    (G, P) standardised properties.
    """

    def __init__(self, config: PropertyModelConfig):
        super().__init__()
        h = config.hidden
        self.embed = nn.Linear(atom_feature_size(config.elements), h)
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(config.layers))
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h)), edge_dim=BOND_FEATURES)
            for _ in range(config.layers))
        self.head = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, len(config.properties)))

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.embed(batch.x)
        for norm, conv in zip(self.norms, self.convs):
            h = h + conv(norm(h), batch.edge_index, batch.edge_attr)
        return self.head(torch.cat([global_add_pool(h, batch.batch), global_mean_pool(h, batch.batch)], dim=-1))


class PropertyPredictor:
    """A trained :class:`PropertyNet` with its elements, property names and the training
    set's mean / std (outputs are standardised inside the network)."""

    def __init__(self, config: PropertyModelConfig, net: PropertyNet | None = None,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None, metadata: dict | None = None):
        self.config = config
        self.net = net if net is not None else PropertyNet(config)
        p = len(config.properties)
        self.mean = torch.zeros(p) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.ones(p) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.metadata = dict(metadata or {})

    @property
    def properties(self) -> tuple[str, ...]:
        return self.config.properties

    def _column(self, name: str) -> int:
        if name not in self.properties:
            raise ValueError(f"property {name!r} is not predicted; this predictor has {list(self.properties)}")
        return self.properties.index(name)

    @torch.no_grad()
    def predict(self, mols: Sequence[Any], prop: str | None = None, *, batch_size: int = 512) -> np.ndarray:
        """Predicted properties of ``mols`` (RDKit ``Mol`` or SMILES), in the dataset's units.

        Returns (n, P), or (n,) for one ``prop``; rows of ``None`` entries are NaN. An atom
        outside the predictor's elements raises :class:`UnknownAtomTypeError` naming the molecule.
        """
        column = None if prop is None else self._column(prop)
        out = np.full((len(mols), len(self.properties)), np.nan)
        present = [i for i, m in enumerate(mols) if m is not None]
        graphs = [featurize(mols[i], self.config.elements, index=i) for i in present]
        self.net.eval()
        device = next(self.net.parameters()).device
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start:start + batch_size]).to(device)
            z = self.net(batch).cpu()
            out[present[start:start + batch_size]] = (z * self.std + self.mean).double().numpy()
        return out if column is None else out[:, column]

    def save(self, path: str | Path) -> Path:
        """Write a sciogen checkpoint (``kind: predictor``, domain ``molecules``) atomically; the
        registry reads it (:func:`sciogen.registry.read_predictor`)."""
        from sciogen._version import __version__
        from sciogen.registry import PREDICTOR_KIND
        from sciogen.train.checkpoint import FORMAT, FORMAT_VERSION, save_checkpoint

        state = {"format": FORMAT, "format_version": FORMAT_VERSION, "sciogen_version": __version__,
                 "domain": "molecules", "kind": PREDICTOR_KIND, "config": to_dict(self.config),
                 "metadata": {**self.metadata, "mean": self.mean.clone(), "std": self.std.clone()},
                 "model": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}, "ema": None}
        return save_checkpoint(state, path)

    @classmethod
    def from_checkpoint(cls, state: dict, device: str | torch.device = "cpu") -> "PropertyPredictor":
        metadata = dict(state.get("metadata") or {})
        mean, std = (state["mean"], state["std"]) if "mean" in state else (metadata.pop("mean"), metadata.pop("std"))
        config = from_dict(PropertyModelConfig, state["config"])
        net = PropertyNet(config)
        net.load_state_dict({k: v.float() for k, v in state["model"].items()})
        return cls(config, net.to(device), mean, std, metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "PropertyPredictor":
        """A predictor file (a sciogen checkpoint, or the older ``sciogen-molecule-properties`` format)."""
        from sciogen.registry import read_predictor
        from sciogen.train.checkpoint import safe_torch_load

        if Path(path).is_file():
            state = safe_torch_load(path, what="property predictor")
            if isinstance(state, dict) and state.get("format") == OLD_FORMAT:
                return cls.from_checkpoint(state, device)
        return cls.from_checkpoint(read_predictor(path, "molecules")[0], device)


def load_property_predictor(name: str = "qm9", device: str | torch.device = "cpu") -> PropertyPredictor:
    """A shipped predictor by name (``"qm9"`` = ``"molecules/qm9-properties"``, see
    :func:`sciogen.registry.available_predictors`) or a saved file."""
    if Path(name).suffix == ".pt" or Path(name).exists():
        return PropertyPredictor.load(name, device)
    from sciogen.registry import read_predictor

    full = name if "/" in name else f"molecules/{name}-properties"
    return PropertyPredictor.from_checkpoint(read_predictor(full, "molecules")[0], device)


def _featurize_split(split: str, config: PropertyModelConfig, data_config: PropertyDataConfig) -> list[Data]:
    from .datasets import load_qm9

    path = Path(data_config.path) if data_config.path else None
    if path is not None and not path.exists():
        raise FileNotFoundError(f"data.path {data_config.path!r} does not exist (QM9 folder with qm9_smiles.csv)")
    data = load_qm9(split, path=path, limit=data_config.limit)
    columns = [QM9_PROPERTIES.index(p) for p in config.properties]
    out = []
    for k, g in enumerate(data.graphs):
        d = featurize(g.smiles, config.elements, index=k)
        d.y = g.y[:, columns]
        out.append(d)
    return out


def _mae(predictor: PropertyPredictor, graphs: list[Data]) -> dict[str, float]:
    """Mean absolute error per property, in the dataset's units."""
    predictor.net.eval()
    errors = []
    with torch.no_grad():
        for start in range(0, len(graphs), 1024):
            batch = Batch.from_data_list(graphs[start:start + 1024])
            errors.append((predictor.net(batch) * predictor.std + predictor.mean - batch.y).abs())
    mae = torch.cat(errors).mean(0)
    return {name: float(v) for name, v in zip(predictor.properties, mae)}


def train_property_predictor(config: PropertyRunConfig, run_dir: str | Path | None = None) -> tuple[PropertyPredictor, dict]:
    """Train on the QM9 training split (L1 loss on standardised targets) with the shared
    trainer; returns the predictor (EMA weights) and its MAE on the validation and test splits."""
    from sciogen.train import Trainer

    start = time.perf_counter()
    train = _featurize_split("train", config.model, config.data)
    y = torch.cat([d.y for d in train])
    mean, std = y.mean(0), y.std(0)
    for d in train:
        d.z = (d.y - mean) / std

    def loss(model, batch, generator):
        return (model(batch) - batch.z).abs().mean(dim=1)

    net = PropertyNet(config.model)
    trainer = Trainer(net, loss, train, config.train, run_dir=run_dir, collate_fn=Batch.from_data_list)
    trainer.fit()
    predictor = PropertyPredictor(config.model, trainer.sampling_model.cpu(), mean, std)
    report = {"train_molecules": len(train), "steps": trainer.step, "train_seconds": time.perf_counter() - start,
              "val_mae": _mae(predictor, _featurize_split("val", config.model, config.data)),
              "test_mae": _mae(predictor, _featurize_split("test", config.model, config.data)),
              "train_std": {p: float(s) for p, s in zip(config.model.properties, std)}, "units": UNITS}
    predictor.metadata = {"trained_steps": trainer.step, "train_molecules": len(train),
                          "val_mae": report["val_mae"], "test_mae": report["test_mae"]}
    return predictor, report


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="train the QM9 property predictor")
    parser.add_argument("config", type=Path)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True, help="where to write the predictor (.pt)")
    args = parser.parse_args(argv)
    config = from_dict(PropertyRunConfig, yaml.safe_load(args.config.read_text()) or {})
    predictor, report = train_property_predictor(config, args.run_dir)
    predictor.save(args.out)
    for split in ("val", "test"):
        print(f"{split} MAE: " + ", ".join(f"{p} {v:.4g} {UNITS[p]}" for p, v in report[f"{split}_mae"].items()))
    print(f"trained {report['steps']} steps in {report['train_seconds'] / 60:.1f} min; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
