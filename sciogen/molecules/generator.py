"""``MoleculeGenerator``: PARD behind the generator verbs.

    >>> import sciogen
    >>> gen = sciogen.load("molecules/qm9")                      # doctest: +SKIP
    >>> mols = gen.sample(100, steps=20, seed=0)                 # RDKit Mols, None where invalid
    >>> gen.sample(100, condition={"qed": 0.55}, guidance=2.0)   # property-conditioned (CFG)
    >>> gen.sample(100, scaffold="c1ccncc1")                     # the scaffold kept, the rest generated
    >>> sciogen.molecules.evaluate(mols, train_smiles=..., reference_smiles=...)

Training reads the configured dataset (QM9 with the DiGress / PARD split by default, from
the dataset registry's cache) or your own molecules (``sciogen train molecules --data
my.smi``; :mod:`sciogen.molecules.own_data`), peels every molecule into PARD blocks
(:mod:`sciogen.molecules.blocks`), caches the dense tensors under
``$SCIOGEN_CACHE/molecules/tensors`` and minimises :func:`~sciogen.molecules.pard.pard_loss`
with the shared trainer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sciogen.data.cache import content_key
from sciogen.data.records import RecordLog, expand_paths
from sciogen.diffusion import CategoricalProcess
from sciogen.train.checks import finite_number, positive_int
from sciogen.train.generator import Generator
from sciogen.train.progress import show_progress

from .config import FRAGMENT_CHOICES, RDKIT_CONDITIONS, MoleculeConfig
from .datasets import QM9_PROPERTIES, MoleculeDataset, load_moses, load_qm9
from .io import MOLECULE_SUFFIXES, read_molecules, write_molecules
from .network import PARDNet, PARDNetConfig
from .own_data import (
    MIN_MOLECULES,
    _reason,
    _smiles_or_none,
    condition_columns,
    infer_vocabulary,
    own_dataset,
    read_own_molecules,
)
from .pard import MoleculeTensors, marginals, pard_loss, sample_graphs, to_block_tensors
from .representation import MoleculeError, MoleculeSpec, canonical_smiles, from_dense, max_valences

__all__ = ["MoleculeGenerator", "ConditionError", "molecule_properties"]

#: registered datasets ``sciogen evaluate molecules --reference NAME`` takes
REFERENCE_DATASETS = ("qm9", "moses")


class ConditionError(ValueError):
    """A sampling condition the model was not trained on, or a bad value."""


def molecule_properties(smiles: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """RDKit properties (qed, logp, sa, weight) of SMILES, shape (n, len(names)); NaN where invalid."""
    from rdkit import Chem

    from .metrics import PROPERTIES

    out = np.full((len(smiles), len(names)), np.nan)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s) if s else None
        if mol is not None:
            out[i] = [PROPERTIES[n](mol) for n in names]
    return out


class _Molecules(Dataset):
    """Block tensors with normalised conditions (M, P) (NaN = unknown)."""

    def __init__(self, tensors: MoleculeTensors, cond: torch.Tensor):
        self.tensors, self.cond = tensors, cond

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i):
        item = self.tensors[i]
        item["cond"] = self.cond[i]
        return item


class MoleculeGenerator(Generator):
    """PARD on molecular graphs. Domain ``"molecules"``.

    ``fit(data)`` accepts a :class:`~sciogen.molecules.MoleculeDataset`, a list of SMILES
    or RDKit Mols, or a file path, converted with this model's atom vocabulary; with no
    data it reads ``config.data``. To train on your own molecules with a vocabulary and
    conditions taken from them, use ``sciogen.fit("molecules", data=PATH, ...)``
    (:meth:`own_data_config`).
    ``sample(n)`` returns RDKit ``Mol`` objects (None where the graph is not a valid
    molecule), or the graphs themselves with ``graphs=True``.
    """

    domain = "molecules"
    sample_conditions = True
    record_name = "molecules"
    output_formats = (".sdf", ".smi", ".smiles", ".txt", ".csv")
    config_class = MoleculeConfig
    data_options = ("column", "condition_on", "download")
    example_output = "samples.smi"

    def __init__(self, config: MoleculeConfig | None = None):
        config = MoleculeConfig() if config is None else config
        self.spec = self._spec(config)
        k_atoms, k_bonds = self.spec.num_atom_types, self.spec.num_bond_types
        self.atom_marginals = torch.full((k_atoms,), 1.0 / k_atoms, dtype=torch.float64)
        self.bond_marginals = torch.full((k_bonds,), 1.0 / k_bonds, dtype=torch.float64)
        self.cond_mean = torch.zeros(len(config.model.conditions))
        self.cond_std = torch.ones(len(config.model.conditions))
        #: per condition: mean and std (the normalisation), min, max and count of known values
        self.condition_stats: dict[str, dict[str, float]] = {}
        super().__init__(config)

    # -- settings ----------------------------------------------------------------------------

    @staticmethod
    def _spec(config: MoleculeConfig) -> MoleculeSpec:
        d = config.data
        if d.atom_types:
            return MoleculeSpec(tuple(d.atom_types), d.explicit_hydrogens, d.bonds, d.max_atoms)
        if d.dataset == "qm9":
            return MoleculeSpec.qm9(explicit_hydrogens=d.explicit_hydrogens)
        if d.dataset == "moses":
            return MoleculeSpec.moses()
        if d.dataset == "custom":
            raise ValueError("data.dataset 'custom' needs data.atom_types (and data.max_atoms); "
                             "sciogen.fit('molecules', data=[...]) sets them from your molecules")
        types, largest, _ = _vocabulary(read_own_molecules(d.path, column=d.column, limit=d.limit), d, str(d.path))
        return MoleculeSpec(tuple(types), d.explicit_hydrogens, d.bonds, d.max_atoms or largest)

    @classmethod
    def own_data_config(cls, config: MoleculeConfig, data: Any, *, column: str | None = None,
                        condition_on: Sequence[str] | None = None, download: bool = False) -> MoleculeConfig:
        """Train on your molecules: ``data`` is a SMILES / CSV / TSV / parquet / SDF file, a
        folder, a glob or a list of SMILES / Mols (None with ``download``: the recipe's
        registered dataset, fetched when the cache has none).

        Sets ``data.dataset`` (``file``, or ``custom`` for Python objects), the atom
        vocabulary and size inferred from the molecules (``data.atom_types``,
        ``data.max_atoms``; kept in the checkpoint, so sampling decodes with them) and
        ``model.conditions`` = ``condition_on`` (columns / SD tags, or RDKit's qed, logp, sa,
        weight; [] when not given). Raises ValueError when no record is usable.
        """
        d = config.data
        if data is None:
            d.download = bool(download)
            return config
        source = str(data) if isinstance(data, (str, Path)) else "your list"
        log = RecordLog()
        own = read_own_molecules(data, column=column, log=log)
        types, largest, good = _vocabulary(own, d, source, log)
        names = list(condition_on or [])
        condition_columns(names, own.columns, source)
        d.dataset = "file" if isinstance(data, (str, Path)) else "custom"
        d.path = str(data) if isinstance(data, (str, Path)) else None
        d.column, d.split, d.limit, d.download = column, "train", None, False
        d.atom_types, d.max_atoms = types, largest
        config.model.conditions = names
        print(f"sciogen: {source}: {good} molecules read; atom types {' '.join(types)}; up to {largest} "
              f"atoms per molecule (the network's size; --set data.max_atoms=N to change); conditions: "
              f"{', '.join(names) or 'none'}", file=sys.stderr)
        return config

    @property
    def conditions(self) -> list[str]:
        return list(self.config.model.conditions)

    def processes(self) -> tuple[CategoricalProcess, CategoricalProcess]:
        """The categorical processes of atom types and bond types."""
        d = self.config.diffusion
        if d.transition == "marginal":
            return (CategoricalProcess(self.spec.num_atom_types, "marginal", self.atom_marginals, d.schedule),
                    CategoricalProcess(self.spec.num_bond_types, "marginal", self.bond_marginals, d.schedule))
        return (CategoricalProcess(self.spec.num_atom_types, "uniform", schedule=d.schedule),
                CategoricalProcess(self.spec.num_bond_types, "uniform", schedule=d.schedule))

    def build_model(self) -> nn.Module:
        m = self.config.model
        return PARDNet(PARDNetConfig(
            num_atom_types=self.spec.num_atom_types, num_bond_types=self.spec.num_bond_types,
            max_atoms=int(self.spec.max_atoms), max_degree=m.max_degree, cond_dim=len(m.conditions),
            node_dim=m.node_dim, edge_dim=m.edge_dim, layers=m.layers, heads=m.heads, dropout=m.dropout,
        ))

    # -- data --------------------------------------------------------------------------------

    def _dataset(self, data: Any) -> MoleculeDataset:
        d = self.config.data
        if isinstance(data, MoleculeDataset):
            return data
        if data is not None or d.dataset in ("file", "custom"):
            if data is None and d.dataset == "custom":
                raise ValueError("this config (data.dataset 'custom') trains on molecules passed to fit(data); "
                                 "pass them, or use sciogen.fit('molecules', data=PATH) for a file")
            try:
                dataset = own_dataset(d.path if data is None else data, self.spec, column=d.column,
                                      conditions=self.conditions, log=self.data_log,
                                      limit=d.limit if data is None else None)
                self.data_log.skipped.sort(key=lambda r: (r.source, _position(r.index)))  # file order
                return dataset
            except ValueError as err:
                if d.dataset in ("qm9", "moses") and "condition on" in str(err):
                    raise ValueError(f"{err}. This model's config conditions on {self.conditions} ({d.dataset}'s "
                                     "properties); sciogen.fit('molecules', data=..., condition_on=[...]) takes "
                                     "the conditions (or none) from your data") from None
                raise
        if d.dataset == "qm9":
            path = Path(d.path) if d.path else None
            if path is not None and not path.exists():
                raise FileNotFoundError(f"data.path {d.path!r} does not exist (QM9 folder with qm9_smiles.csv)")
            dataset = load_qm9(d.split, path=path, spec=self.spec, limit=d.limit, on_error="skip",
                               download=d.download)
        else:
            dataset = load_moses(d.split, path=d.path, spec=self.spec, limit=d.limit, on_error="skip",
                                 download=d.download)
        for s in dataset.skipped:
            self.data_log.skip(dataset.name, s.index, f"{s.item!r}: {s.reason}")
        return dataset

    def _cache_key(self, dataset: MoleculeDataset) -> str:
        d, m = self.config.data, self.config.model
        what = {
            "smiles": hashlib.sha256("\n".join(dataset.smiles).encode()).hexdigest(),
            "spec": self.spec.to_dict(), "hops": d.hops, "weighting": d.weighting, "max_degree": m.max_degree,
            "one_block": self.config.diffusion.one_block, "conditions": m.conditions, "version": 1,
        }
        if dataset.property_names and dataset.name != "qm9" and dataset.graphs:  # your columns' values
            values = torch.cat([g.y for g in dataset.graphs]).numpy().tobytes()
            what["values"] = hashlib.sha256(values).hexdigest()
        return content_key(json.dumps(what, sort_keys=True))

    def _conditions_of(self, dataset: MoleculeDataset) -> torch.Tensor:
        names = self.conditions
        if not names:
            return torch.zeros(len(dataset), 0)
        cols = []
        rdkit_names = [n for n in names if n not in dataset.property_names and n in RDKIT_CONDITIONS]
        rd = molecule_properties(dataset.smiles, rdkit_names) if rdkit_names else None
        for name in names:
            if name in dataset.property_names:
                j = dataset.property_names.index(name)
                cols.append(np.array([float(g.y[0, j]) for g in dataset.graphs]))
            elif name in rdkit_names:
                cols.append(rd[:, rdkit_names.index(name)])
            elif name in QM9_PROPERTIES:
                raise ConditionError(f"condition {name!r} needs QM9's properties, which this dataset does not have")
            else:
                raise ConditionError(f"condition {name!r} is neither a column of the training data nor one of "
                                     f"RDKit's {', '.join(RDKIT_CONDITIONS)}")
        return torch.tensor(np.stack(cols, 1), dtype=torch.float32)

    def training_data(self, data: Any = None) -> Dataset:
        from sciogen.data.cache import TensorCache

        dataset = self._dataset(data)
        self.data_log.kept = len(dataset)
        self.data_log.require(MIN_MOLECULES, "molecules")
        d = self.config.data

        def build() -> dict:
            tensors = to_block_tensors(dataset.graphs, int(self.spec.max_atoms), self.config.model.max_degree,
                                       hops=d.hops, weighting=d.weighting, one_block=self.config.diffusion.one_block)
            return {"tensors": tensors.state_dict(), "cond": self._conditions_of(dataset)}

        stored = TensorCache("molecules", "tensors").get(self._cache_key(dataset), build)
        tensors, raw = MoleculeTensors(**stored["tensors"]), stored["cond"]
        self.atom_marginals, self.bond_marginals = marginals(tensors, self.spec.num_atom_types, self.spec.num_bond_types)
        if raw.shape[1]:
            self._condition_statistics(raw)
        return _Molecules(tensors, (raw - self.cond_mean) / self.cond_std)

    def _condition_statistics(self, raw: torch.Tensor) -> None:
        """Mean / std (the normalisation) and range of each condition; unknown values (NaN) say so."""
        known = ~torch.isnan(raw)
        for j, name in enumerate(self.conditions):
            count = int(known[:, j].sum())
            if count == 0:
                raise ValueError(f"condition {name!r} has no known value in the {len(raw)} training molecules")
            if count < len(raw):
                print(f"sciogen: {len(raw) - count} of {len(raw)} molecules have no {name!r} value; they train "
                      f"with {name!r} unknown (the unconditional part of guidance)", file=sys.stderr)
        self.cond_mean = torch.nanmean(raw, 0)
        self.cond_std = torch.sqrt(torch.nanmean((raw - self.cond_mean) ** 2, 0)).clamp_min(1e-8)
        inf = torch.tensor(float("inf"))
        low = torch.where(known, raw, inf).amin(0)
        high = torch.where(known, raw, -inf).amax(0)
        self.condition_stats = {
            name: {"mean": float(self.cond_mean[j]), "std": float(self.cond_std[j]), "min": float(low[j]),
                   "max": float(high[j]), "known": int(known[:, j].sum())}
            for j, name in enumerate(self.conditions)
        }

    def metadata(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "atom_marginals": self.atom_marginals, "bond_marginals": self.bond_marginals,
                "cond_mean": self.cond_mean, "cond_std": self.cond_std, "condition_stats": self.condition_stats}

    def load_metadata(self, metadata: Mapping[str, Any]) -> None:
        if "spec" in metadata:
            self.spec = MoleculeSpec.from_dict(metadata["spec"])
        for name in ("atom_marginals", "bond_marginals", "cond_mean", "cond_std"):
            if name in metadata:
                setattr(self, name, torch.as_tensor(metadata[name]))
        self.condition_stats = dict(metadata.get("condition_stats") or {})

    # -- training ----------------------------------------------------------------------------

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        atoms, bonds = self.processes()
        cond = cond_mask = None
        if self.conditions:
            raw = batch["cond"]
            p = self.config.model.cond_drop
            b, k = raw.shape
            drop_all = torch.rand(b, 1, generator=generator, device=raw.device) < p
            drop_one = torch.rand(b, k, generator=generator, device=raw.device) < p
            cond_mask = ~(drop_all | drop_one) & ~torch.isnan(raw)
            cond = torch.nan_to_num(raw)
        d = self.config.diffusion
        return pard_loss(model, batch, atoms, bonds, generator, bond_weight=d.bond_weight, block_weight=d.block_weight,
                         cond=cond, cond_mask=cond_mask)

    # -- sampling ----------------------------------------------------------------------------

    def _condition_tensors(self, n: int, condition: Mapping[str, float] | None, device):
        if not condition:
            return None, None
        if not self.conditions:
            raise ConditionError("this model was trained without conditions; it samples unconditionally only")
        unknown = [k for k in condition if k not in self.conditions]
        if unknown:
            raise ConditionError(f"unknown condition(s) {unknown}; this model was trained on {self.conditions}")
        cond = torch.zeros(n, len(self.conditions), device=device)
        mask = torch.zeros(n, len(self.conditions), dtype=torch.bool, device=device)
        for name, value in condition.items():
            j = self.conditions.index(name)
            value = float(value)
            if not math.isfinite(value):
                raise ConditionError(f"condition {name}={value} is not a finite number")
            cond[:, j] = (value - float(self.cond_mean[j])) / float(self.cond_std[j])
            mask[:, j] = True
        return cond, mask

    def _scaffold_prompt(self, scaffold: str) -> MoleculeTensors:
        try:
            graph = self.spec.to_graph(scaffold)
        except MoleculeError as err:
            raise ConditionError(f"scaffold {scaffold!r} cannot be used: {err}") from None
        return to_block_tensors([graph], int(self.spec.max_atoms), self.config.model.max_degree,
                                hops=self.config.data.hops, weighting=self.config.data.weighting)

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     condition: Mapping[str, float] | None = None, guidance: float | None = None,
                     scaffold: str | None = None, graphs: bool = False, valence_retries: int | None = None,
                     fragments: str | None = None) -> list:
        if solver != "ancestral":
            raise ValueError(f"molecules are sampled with solver='ancestral' (categorical diffusion), got {solver!r}")
        device = next(model.parameters()).device
        cond, mask = self._condition_tensors(n, condition, device)
        atoms, bonds = self.processes()
        X, E, count = sample_graphs(
            model, n, atoms, bonds, steps=steps, generator=generator, cond=cond, cond_mask=mask,
            guidance=self.config.sampling.guidance if guidance is None else float(guidance),
            prompt=self._scaffold_prompt(scaffold) if scaffold else None, one_block=self.config.diffusion.one_block,
            progress=show_progress(None) and n >= 200,
            max_valence=torch.tensor(max_valences(self.spec)), valence_retries=self._retries(valence_retries),
        )
        mask_nodes = torch.arange(X.shape[1], device=X.device)[None, :] < count[:, None]
        out = from_dense(X.cpu(), E.cpu(), mask_nodes.cpu())
        if graphs:
            return out
        keep = self.config.sampling.fragments if fragments is None else fragments
        return [self.graph_to_mol(g, fragments=keep) for g in out]

    def _retries(self, value: int | None) -> int:
        retries = self.config.sampling.valence_retries if value is None else value
        if int(retries) != retries or retries < 0:
            raise ValueError(f"valence_retries must be an integer >= 0, got {value!r}")
        return int(retries)

    def graph_to_mol(self, graph, *, fragments: str = "whole"):
        """A generated graph as a sanitized RDKit Mol, or None when it is not a valid molecule.

        ``fragments="largest"`` keeps the largest fragment of a disconnected graph (the
        molecule the validity metric scores) and records the graph's fragment count in the
        Mol's :data:`~sciogen.molecules.metrics.FRAGMENTS_PROP`; ``"whole"`` keeps them all.
        """
        try:
            mol = self.spec.to_mol(graph)
        except MoleculeError:
            return None
        if fragments == "whole":
            return mol
        from rdkit import Chem

        from .metrics import FRAGMENTS_PROP

        parts = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
        largest = max(parts, key=lambda m: m.GetNumAtoms()) if len(parts) > 1 else Chem.Mol(mol)
        largest.SetIntProp(FRAGMENTS_PROP, len(parts))
        return largest

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
        parser.add_argument("--scaffold", help="SMILES of a substructure kept in every molecule")
        parser.add_argument("--fragments", choices=FRAGMENT_CHOICES,
                            help="a sample whose graph falls apart keeps its largest fragment (default) or the "
                                 "whole graph (dot-separated SMILES)")
        parser.add_argument("--valence-retries", type=int, dest="valence_retries",
                            help="denoise a block again (at most this many times) when it exceeds an atom's valence "
                                 "(default: the model's; 0 = PARD's plain sampler)")

    def sample(self, n: int, *, condition: Mapping[str, float] | None = None, **kwargs) -> Any:
        """Draw ``n`` molecules; ``condition`` is ``{name: value}`` (property names the model
        was trained on).

        Other options: ``steps`` (per block), ``seed``, ``batch_size``, ``guidance``,
        ``scaffold`` (SMILES), ``graphs=True`` (return graphs instead of Mols),
        ``fragments`` (``"largest"`` or ``"whole"``: what a disconnected graph becomes; default
        ``sampling.fragments``),
        ``valence_retries`` (redraw a block that exceeds an atom's valence at most this many
        times; default ``sampling.valence_retries``, 0 = PARD's plain sampler).
        """
        if condition is not None and not isinstance(condition, Mapping):
            raise ConditionError(f"condition must be a mapping {{name: value}}, e.g. {{'qed': 0.55}}; got {condition!r}")
        if condition:
            checked = {}
            for name, value in condition.items():
                try:
                    checked[name] = finite_number(f"condition {name}", value)
                except ValueError as err:
                    raise ConditionError(str(err)) from None
            self._condition_tensors(1, checked, "cpu")  # names the model knows, before any work
            kwargs["condition"] = checked
        if kwargs.get("guidance") is not None:
            kwargs["guidance"] = finite_number("guidance", kwargs["guidance"])
        if kwargs.get("fragments") is not None and kwargs["fragments"] not in FRAGMENT_CHOICES:
            raise ValueError(f"fragments must be one of {', '.join(FRAGMENT_CHOICES)}; got {kwargs['fragments']!r}")
        if kwargs.get("valence_retries") is not None:
            kwargs["valence_retries"] = positive_int("valence_retries", kwargs["valence_retries"], minimum=0)
        if kwargs.get("scaffold") is not None:
            if not isinstance(kwargs["scaffold"], str) or not kwargs["scaffold"].strip():
                raise ConditionError(f"scaffold must be a SMILES string, got {kwargs['scaffold']!r}")
            self._scaffold_prompt(kwargs["scaffold"])  # a ConditionError with RDKit's reason
        return super().sample(n, **kwargs)

    # -- metrics and files ---------------------------------------------------------------------

    def reference_data(self) -> Any:
        """``"qm9"`` / ``"moses"``, or your training file when it is still there (novelty against it)."""
        d = self.config.data
        if d.dataset in REFERENCE_DATASETS:
            return d.dataset
        if d.dataset == "file" and d.path:
            try:
                expand_paths(d.path, MOLECULE_SUFFIXES)
            except (OSError, ValueError):
                return None
            return d.path
        return None

    def evaluate(self, samples: Any, reference: Any = None) -> dict[str, float]:
        """The metrics of ``samples`` (Mols, SMILES or this model's graphs) against ``reference``
        (default: the training dataset's name)."""
        return self.evaluate_samples(samples, reference if reference is not None else self.reference_data(), spec=self.spec)

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None, spec: MoleculeSpec | None = None,
                         download: bool = False) -> dict[str, float]:
        """Validity, uniqueness, novelty, FCD and property statistics (:func:`sciogen.molecules.evaluate`).

        ``reference``: ``"qm9"`` (train split for novelty, test split for FCD and
        properties) or ``"moses"`` from the dataset registry's cache (``download=True``:
        fetched, checksummed, when the cache has none); your own molecules (a file, folder
        or glob in any format :func:`~sciogen.molecules.own_data.read_own_molecules` reads,
        e.g. your training file: novelty, FCD and properties against it); a list of
        reference SMILES (FCD and properties); or None (validity and uniqueness only).
        Graph samples need the ``spec`` that decodes them.
        """
        from .metrics import evaluate

        train, ref = _reference_smiles(reference, download=download)
        return evaluate(samples, spec, train_smiles=train, reference_smiles=ref, fcd=ref is not None and len(ref) >= 2)

    @classmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        """``.sdf``, ``.smi`` / ``.txt`` or ``.csv`` (with QED, logP, SA and weight columns of the
        molecule written, and ``fragments``: how many molecules its generated graph held)."""
        path = Path(path)
        columns = None
        if path.suffix.lower() == ".csv" or path.name.lower().endswith(".csv.gz"):
            from rdkit import Chem

            from .metrics import fragment_counts

            samples = list(samples)
            smiles = [Chem.MolToSmiles(m) if m is not None else None for m in samples]
            props = molecule_properties(smiles, ("qed", "logp", "sa", "weight"))  # of what is written
            columns = {name: [f"{v:.4f}" if np.isfinite(v) else "" for v in props[:, j]]
                       for j, name in enumerate(("qed", "logp", "sa", "weight"))}
            columns["fragments"] = ["" if c is None else str(c) for c in fragment_counts(samples)]
        return write_molecules(samples, path, columns=columns)

    @classmethod
    def read_samples(cls, path: str | Path) -> Any:
        return read_molecules(path, on_error="keep").mols


def _vocabulary(own, d, source: str, log: RecordLog | None = None) -> tuple[list[str], int, int]:
    """The atom tokens and node count of a user's molecules, or a ValueError with reasons."""
    from .own_data import MAX_ATOMS_CAP

    cap = max(MAX_ATOMS_CAP, d.max_atoms or 0)
    failures: list[tuple[int, str]] = []
    types, largest, good = infer_vocabulary(own.mols, explicit_hydrogens=d.explicit_hydrogens, bonds=d.bonds,
                                            max_atoms_cap=cap, failures=failures)
    log = RecordLog() if log is None else log
    if good == 0 and not len(own) and not len(log):
        raise ValueError(f"{source}: no molecule records (an empty file, or only blank lines)")
    if good == 0:
        for i, reason in failures:
            log.skip(own.sources[i], own.where[i], _reason(_smiles_or_none(own.mols[i]), reason))
        log.skipped.sort(key=lambda r: (r.source, _position(r.index)))
        raise ValueError(f"{source}: no usable molecule among {len(log)} records:\n{log.examples()}")
    return types, largest, good


def _position(where: Any) -> tuple:
    """Sort key of a record's place (``"line 12"`` after ``"line 9"``)."""
    import re

    return tuple(int(n) for n in re.findall(r"\d+", str(where))) or (0,)


def _reference_smiles(reference: Any, download: bool = False) -> tuple[list[str] | None, list[str] | None]:
    """(train SMILES for novelty, reference SMILES for FCD) of a dataset name, a user's file or a list."""
    if reference is None:
        return None, None
    if isinstance(reference, str) and reference == "qm9":
        train = load_qm9("train", graphs=False, download=download).smiles
        return train, load_qm9("test", graphs=False).smiles
    if isinstance(reference, str) and reference == "moses":
        train = load_moses("train", graphs=False, download=download).smiles
        return train, load_moses("test", graphs=False, download=download).smiles
    if isinstance(reference, (str, Path)):
        if not any(ch in str(reference) for ch in "*?[") and not Path(reference).exists():
            raise FileNotFoundError(f"--reference {str(reference)!r} is neither a file, a folder nor a dataset name "
                                    f"({', '.join(REFERENCE_DATASETS)})")
        log = RecordLog()
        own = read_own_molecules(reference, log=log)
        log.kept = len(own)
        if len(log):
            print(f"sciogen: reference {reference}: {log.summary('molecules')}", file=sys.stderr)
        smiles = sorted({canonical_smiles(m) for m in own.mols})
        if not smiles:
            raise ValueError(f"--reference {reference}: no readable molecule")
        return smiles, smiles
    return None, list(reference)
