"""Sample quality of generated molecules, computed as DiGress / PARD / MOSES compute it.

Validity (Vignac et al. 2023, DiGress ``BasicMolecularMetrics``; PARD uses the same code):
a graph is built atom by atom and bond by bond from its types, ``SanitizeMol`` must pass,
and the SMILES kept is the canonical SMILES of the largest fragment. *Relaxed* validity
first applies the +1 charge rule (:func:`sciogen.molecules.representation.build_mol`).
Uniqueness is ``|set(relaxed valid)| / |relaxed valid|`` and novelty the fraction of those
unique SMILES absent from the training set, as DiGress / PARD report them. *Connected* is
the fraction of all samples whose whole graph is one component (``C.C.FC(F)(F)F`` is valid
through its largest fragment but not connected); it is reported beside validity because
validity alone hides disconnected graphs. FCD (Preuer et
al. 2018) uses fcd-torch's ChemNet on the valid SMILES against reference statistics that
are computed once and cached. QED / SA / logP / weight distributions are compared with
the reference by 1-D Fréchet distance (as MOSES) and Wasserstein-1 distance.

    >>> from sciogen.molecules import evaluate
    >>> evaluate(["CCO", "CCO", "C1CC1", None])["validity"]
    0.75
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors
from torch_geometric.data import Batch, Data

from .representation import MoleculeSpec, build_mol

__all__ = [
    "sample_smiles",
    "graph_smiles",
    "validity_metrics",
    "fragment_counts",
    "FRAGMENTS_PROP",
    "FCDReference",
    "fcd",
    "property_values",
    "property_metrics",
    "MoleculeEvaluator",
    "evaluate",
]


# -- from samples to SMILES -------------------------------------------------------------------

#: the RDKit property in which a generated Mol keeps the fragment count of its whole graph when
#: only its largest fragment was kept (``sample(..., fragments="largest")``); private (a leading
#: underscore), so SD files do not carry it.
FRAGMENTS_PROP = "_sciogen_fragments"


def _largest_fragment_smiles(mol) -> str | None:
    """DiGress's ``mol2smiles`` + largest fragment: None when RDKit rejects the molecule."""
    try:
        Chem.SanitizeMol(mol)
    except Exception:
        return None
    try:
        frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    except Exception:  # AtomValenceException / KekulizeException, as DiGress catches them
        return None
    largest = max(frags, default=mol, key=lambda m: m.GetNumAtoms())
    try:
        Chem.SanitizeMol(largest)
    except Exception:
        return None
    return Chem.MolToSmiles(largest)


def graph_smiles(atoms: Sequence[int], bonds: dict[tuple[int, int], int], spec: MoleculeSpec, relaxed: bool = False) -> str | None:
    """Canonical SMILES of the largest fragment of a generated graph, or None if invalid."""
    return _largest_fragment_smiles(build_mol(atoms, bonds, spec, relaxed=relaxed))


def _graph_parts(sample) -> tuple[list[int], dict[tuple[int, int], int]]:
    if isinstance(sample, Data):
        x = sample.x.view(-1).tolist()
        bonds = {}
        for i, j, t in zip(*sample.edge_index.tolist(), sample.edge_attr.view(-1).tolist()):
            if i != j and t:
                bonds[(min(i, j), max(i, j))] = int(t)
        return x, bonds
    atoms, edges = sample  # DiGress's (atom types (n,), edge types (n, n))
    atoms = torch.as_tensor(atoms).view(-1).tolist()
    e = torch.triu(torch.as_tensor(edges), diagonal=1)
    i, j = e.nonzero(as_tuple=True)
    return atoms, {(a, b): int(t) for a, b, t in zip(i.tolist(), j.tolist(), e[i, j].tolist())}


def sample_smiles(samples: Any, spec: MoleculeSpec | None = None) -> tuple[list[str | None], list[str | None]]:
    """(strict, relaxed) largest-fragment canonical SMILES per sample, None where invalid.

    ``samples``: a ``Batch`` or list of graphs (``Data``), of DiGress pairs ``(X (n,),
    E (n, n))``, of RDKit Mols, or of SMILES strings (None / ``"None"`` = invalid). Graphs
    need ``spec``; molecules and SMILES give the same list twice (no relaxation applies).
    """
    if isinstance(samples, Batch):
        samples = samples.to_data_list()
    samples = list(samples)
    if not samples:
        return [], []
    kind = next((s for s in samples if s is not None), None)
    if isinstance(kind, (Data, tuple, list)):
        if spec is None:
            raise ValueError("graph samples need the MoleculeSpec that decodes their atom types (spec=...)")
        strict, relaxed = [], []
        for s in samples:
            atoms, bonds = _graph_parts(s)
            strict.append(graph_smiles(atoms, bonds, spec, relaxed=False))
            relaxed.append(graph_smiles(atoms, bonds, spec, relaxed=True))
        return strict, relaxed
    out = []
    for s in samples:
        if s is None or (isinstance(s, str) and s.strip() in ("", "None")):
            out.append(None)
        elif isinstance(s, str):
            mol = Chem.MolFromSmiles(s.strip(), sanitize=False)
            out.append(None if mol is None else _largest_fragment_smiles(mol))
        elif isinstance(s, Chem.Mol):
            out.append(_largest_fragment_smiles(Chem.Mol(s)))
        else:
            raise TypeError(f"cannot evaluate a sample of type {type(s).__name__}; pass graphs, Mols or SMILES")
    return out, list(out)


def _components(n_atoms: int, bonds) -> int:
    """Connected components of a graph with ``n_atoms`` nodes and ``bonds`` {(i, j): type}."""
    parent = list(range(n_atoms))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in bonds:
        parent[root(i)] = root(j)
    return len({root(i) for i in range(n_atoms)})


def _mol_fragments(mol) -> int:
    if mol.HasProp(FRAGMENTS_PROP):
        return mol.GetIntProp(FRAGMENTS_PROP)
    return len(Chem.GetMolFrags(mol)) if mol.GetNumAtoms() else 0


def fragment_counts(samples: Any) -> list[int | None]:
    """The number of connected components of each sample's whole graph (1 = connected).

    Graphs (``Data``, DiGress pairs) are counted on their bonds; Mols on their fragments
    (a Mol that :meth:`~sciogen.molecules.MoleculeGenerator.sample` cut to its largest
    fragment remembers its graph's count in :data:`FRAGMENTS_PROP`); SMILES on their
    ``.``-separated parts. None where a sample is missing or its SMILES does not parse.
    """
    if isinstance(samples, Batch):
        samples = samples.to_data_list()
    out: list[int | None] = []
    for s in samples:
        if s is None or (isinstance(s, str) and s.strip() in ("", "None")):
            out.append(None)
        elif isinstance(s, (Data, tuple, list)):
            atoms, bonds = _graph_parts(s)
            out.append(_components(len(atoms), bonds))
        elif isinstance(s, str):
            mol = Chem.MolFromSmiles(s.strip(), sanitize=False)
            out.append(None if mol is None else _mol_fragments(mol))
        elif isinstance(s, Chem.Mol):
            out.append(_mol_fragments(s))
        else:
            raise TypeError(f"cannot count the fragments of a sample of type {type(s).__name__}")
    return out


def validity_metrics(strict: list[str | None], relaxed: list[str | None], train_smiles: set[str] | None = None) -> dict[str, float]:
    """validity, relaxed_validity, uniqueness (over relaxed valid), novelty (over unique)."""
    n = len(strict)
    if n == 0:
        raise ValueError("no samples to evaluate")
    valid_relaxed = [s for s in relaxed if s is not None]
    out = {
        "num_samples": float(n),
        "validity": sum(s is not None for s in strict) / n,
        "relaxed_validity": len(valid_relaxed) / n,
    }
    unique = set(valid_relaxed)
    out["uniqueness"] = len(unique) / len(valid_relaxed) if valid_relaxed else 0.0
    if train_smiles is not None:
        out["novelty"] = sum(s not in train_smiles for s in unique) / len(unique) if unique else 0.0
    return out


# -- FCD --------------------------------------------------------------------------------------

_FCD_MODEL: dict[str, Any] = {}


def _fcd_model(device: str = "cpu"):
    if device not in _FCD_MODEL:
        from fcd_torch import FCD

        _FCD_MODEL[device] = FCD(device=device, n_jobs=1, batch_size=512)
    return _FCD_MODEL[device]


def _activations(smiles: Sequence[str], device: str) -> np.ndarray:
    with warnings.catch_warnings():  # fcd-torch calls np.row_stack, deprecated in NumPy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        return _fcd_model(device).get_predictions(list(smiles))


def _cache_root() -> Path:
    from sciogen.data import cache_dir

    return cache_dir() / "molecules" / "fcd"


class FCDReference:
    """ChemNet activation statistics (mean (512,), covariance (512, 512)) of a reference set.

    :meth:`from_smiles` computes them once and caches them as ``.npz`` under
    ``$SCIOGEN_CACHE/molecules/fcd/``, keyed by the SHA-256 of the sorted SMILES.
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, count: int):
        self.mu, self.sigma, self.count = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64), int(count)

    @staticmethod
    def key(smiles: Sequence[str]) -> str:
        digest = hashlib.sha256("\n".join(sorted(smiles)).encode()).hexdigest()
        return f"chemnet-{digest[:32]}"

    @classmethod
    def from_smiles(cls, smiles: Sequence[str], *, cache: bool | str | Path = True, device: str = "cpu") -> "FCDReference":
        smiles = [s for s in smiles if s]
        if len(smiles) < 2:
            raise ValueError(f"FCD needs at least 2 reference molecules, got {len(smiles)}")
        path = None
        if cache:
            folder = Path(cache) if isinstance(cache, (str, Path)) else _cache_root()
            path = folder / f"{cls.key(smiles)}.npz"
            if path.is_file():
                z = np.load(path)
                return cls(z["mu"], z["sigma"], int(z["count"]))
        act = _activations(smiles, device)
        ref = cls(act.mean(0), np.cov(act.T), len(smiles))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
            np.savez(tmp, mu=ref.mu, sigma=ref.sigma, count=ref.count)
            os.replace(tmp, path)
        return ref


def fcd(generated: Sequence[str], reference: "FCDReference | Sequence[str]", device: str = "cpu") -> float:
    """Fréchet ChemNet Distance between valid generated SMILES and a reference.

    d^2 = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)) over ChemNet's penultimate
    activations (fcd-torch; ``calculate_frechet_distance``).
    """
    from fcd_torch.utils import calculate_frechet_distance

    if not isinstance(reference, FCDReference):
        reference = FCDReference.from_smiles(reference)
    generated = [s for s in generated if s]
    if len(generated) < 2:
        return float("nan")
    act = _activations(generated, device)
    return float(calculate_frechet_distance(reference.mu, reference.sigma, act.mean(0), np.cov(act.T)))


# -- property distributions -------------------------------------------------------------------

_SASCORER = None


def _sa_score(mol) -> float:
    global _SASCORER
    if _SASCORER is None:
        folder = os.path.join(RDConfig.RDContribDir, "SA_Score")
        if folder not in sys.path:
            sys.path.append(folder)
        import sascorer  # RDKit Contrib (Ertl & Schuffenhauer 2009)

        _SASCORER = sascorer
    return float(_SASCORER.calculateScore(mol))


PROPERTIES = {
    "qed": lambda m: float(QED.qed(m)),
    "sa": _sa_score,
    "logp": lambda m: float(Crippen.MolLogP(m)),
    "weight": lambda m: float(Descriptors.MolWt(m)),
}


def property_values(smiles: Sequence[str], names: Sequence[str] = ("qed", "sa", "logp", "weight")) -> dict[str, np.ndarray]:
    """QED, SA score, Crippen logP and molecular weight (g/mol) of valid SMILES."""
    mols = [Chem.MolFromSmiles(s) for s in smiles if s]
    mols = [m for m in mols if m is not None]
    return {n: np.array([PROPERTIES[n](m) for m in mols], dtype=np.float64) for n in names}


def _frechet_1d(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.mean() - b.mean()) ** 2 + a.var() + b.var() - 2 * math.sqrt(a.var() * b.var()))


def property_metrics(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Mean and std of each property; with a reference, MOSES's 1-D Fréchet and W1 distances."""
    from scipy.stats import wasserstein_distance

    out: dict[str, float] = {}
    for name, values in generated.items():
        if values.size == 0:
            continue
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_std"] = float(values.std())
        if reference is not None and reference.get(name) is not None and reference[name].size:
            out[f"{name}_frechet"] = _frechet_1d(values, reference[name])
            out[f"{name}_w1"] = float(wasserstein_distance(values, reference[name]))
    return out


# -- everything together ----------------------------------------------------------------------


class MoleculeEvaluator:
    """Holds the training set and reference statistics, then scores sample sets.

    Args:
        spec: decodes graph samples (not needed for SMILES / Mol samples).
        train_smiles: canonical SMILES of the training set (novelty).
        reference_smiles: held-out SMILES (FCD, property and MOSES references).
        fcd: compute FCD (needs ``reference_smiles``; its statistics are cached).
        properties: QED / SA / logP / weight statistics.
        moses: also the MOSES set (SNN, Frag, Scaf, IntDiv, IntDiv2, Filters).
        device: device for ChemNet.
    """

    def __init__(
        self,
        spec: MoleculeSpec | None = None,
        train_smiles: Sequence[str] | None = None,
        reference_smiles: Sequence[str] | None = None,
        *,
        fcd: bool = True,
        properties: bool = True,
        moses: bool = False,
        device: str = "cpu",
    ):
        self.spec = spec
        self.train = set(train_smiles) if train_smiles is not None else None
        self.reference = list(reference_smiles) if reference_smiles is not None else None
        self.use_fcd, self.use_properties, self.use_moses, self.device = fcd, properties, moses, device
        self._fcd_ref: FCDReference | None = None
        self._ref_props: dict[str, np.ndarray] | None = None
        self._moses_ref = None

    def fcd_reference(self) -> FCDReference:
        if self._fcd_ref is None:
            if self.reference is None:
                raise ValueError("FCD needs reference_smiles")
            self._fcd_ref = FCDReference.from_smiles(self.reference, device=self.device)
        return self._fcd_ref

    def __call__(self, samples: Any) -> dict[str, float]:
        if isinstance(samples, Batch):
            samples = samples.to_data_list()
        samples = list(samples)
        strict, relaxed = sample_smiles(samples, self.spec)
        out = validity_metrics(strict, relaxed, self.train)
        out["connected"] = sum(c == 1 for c in fragment_counts(samples)) / len(samples)
        valid = [s for s in strict if s is not None]
        if self.use_fcd and self.reference is not None:
            out["fcd"] = fcd(valid, self.fcd_reference(), device=self.device)
        if self.use_properties and valid:
            if self._ref_props is None and self.reference is not None:
                self._ref_props = property_values(self.reference)
            out.update(property_metrics(property_values(valid), self._ref_props))
        if self.use_moses and valid:
            from .moses_metrics import MosesReference, moses_metrics

            if self._moses_ref is None and self.reference is not None:
                self._moses_ref = MosesReference.from_smiles(self.reference)
            out.update(moses_metrics(valid, self._moses_ref))
        return out


def evaluate(
    samples: Any,
    spec: MoleculeSpec | None = None,
    *,
    train_smiles: Sequence[str] | None = None,
    reference_smiles: Sequence[str] | None = None,
    fcd: bool = True,
    properties: bool = True,
    moses: bool = False,
    device: str = "cpu",
) -> dict[str, float]:
    """Score generated molecules (see :class:`MoleculeEvaluator` for the arguments).

    Returns a dict of floats: ``validity``, ``relaxed_validity``, ``uniqueness``, ``connected``
    (the fraction of samples whose whole graph is one component), and, when
    their inputs are given, ``novelty``, ``fcd``, ``{qed,sa,logp,weight}_{mean,std,frechet,w1}``
    and the MOSES metrics. Fractions are in [0, 1].
    """
    return MoleculeEvaluator(
        spec, train_smiles, reference_smiles, fcd=fcd, properties=properties, moses=moses, device=device
    )(samples)

