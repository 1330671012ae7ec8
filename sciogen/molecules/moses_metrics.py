"""The MOSES metrics (Polykovskiy et al. 2020) on RDKit, without the ``molsets`` package.

Definitions follow ``moses.metrics`` 0.3.1, over valid generated molecules G and a
reference set R (MOSES: its test or scaffold-test set):

- **SNN**: mean over g in G of max_r Tanimoto(fp(g), fp(r)), Morgan radius 2, 1024 bits.
- **Frag**: cosine similarity of the BRICS-fragment count vectors of G and R.
- **Scaf**: cosine similarity of the Bemis-Murcko scaffold count vectors (scaffolds with
  at least 2 rings, as MOSES's ``compute_scaffolds``).
- **IntDiv_p**: 1 - mean_g (mean_{g'} T(g, g')^p)^(1/p) over all pairs including g = g'
  (p = 1: ``intdiv``, p = 2: ``intdiv2``).
- **Filters**: fraction of G with no ring of 8+ atoms, no formal charge, only
  C N S O F Cl Br H, and no match of MOSES's MCF and PAINS SMARTS (read from the molsets
  wheel with its SHA-256 checked, see :func:`load_filters`; nothing of molsets is imported).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

__all__ = [
    "morgan_fingerprints",
    "tanimoto_aggregate",
    "snn",
    "fragment_counts",
    "scaffold_counts",
    "count_cosine",
    "internal_diversity",
    "MosesFilters",
    "load_filters",
    "MOLSETS_WHEEL_URL",
    "MOLSETS_WHEEL_SHA256",
    "MosesReference",
    "moses_metrics",
]

#: the molsets 0.3.1 wheel on PyPI, which holds ``moses/metrics/mcf.csv`` and ``wehi_pains.csv``
MOLSETS_WHEEL_URL = "https://files.pythonhosted.org/packages/py3/m/molsets/molsets-0.3.1-py3-none-any.whl"
MOLSETS_WHEEL_SHA256 = "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34"
FILTER_FILES = {
    "mcf.csv": ("moses/metrics/mcf.csv", "f4a2bfacb4cb8877295eb2a4b4e61ec9770a26388f1331e5dc9c193d22dd5f89"),
    "wehi_pains.csv": ("moses/metrics/wehi_pains.csv", "d762e5420ec70f06d7e41d336cae6f67e2feb0eddf05c6171192a332726d296f"),
}
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})

_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)


def _mols(molecules: Sequence) -> list:
    out = []
    for m in molecules:
        mol = Chem.MolFromSmiles(m) if isinstance(m, str) else m
        if mol is not None:
            out.append(mol)
    return out


def morgan_fingerprints(molecules: Sequence) -> np.ndarray:
    """(n, 1024) uint8 Morgan (radius 2) bit vectors of valid SMILES / Mols."""
    mols = _mols(molecules)
    if not mols:
        return np.zeros((0, 1024), dtype=np.uint8)
    return np.stack([_MORGAN.GetFingerprintAsNumPy(m).astype(np.uint8) for m in mols])


def tanimoto_aggregate(stock: np.ndarray, gen: np.ndarray, agg: str = "max", p: float = 1.0, batch_size: int = 4096) -> np.ndarray:
    """Per generated fingerprint: max (``agg="max"``) or (mean T^p)^(1/p) Tanimoto to ``stock``.

    Shapes: stock (m, D), gen (n, D) bits -> (n,). 0/0 similarities count as 1 (MOSES).
    """
    if agg not in ("max", "mean"):
        raise ValueError(f"agg={agg!r}; allowed: max, mean")
    g = torch.from_numpy(gen.astype(np.float32))
    result = torch.zeros(g.shape[0], dtype=torch.float64)
    g_sum = g.sum(1)
    for start in range(0, stock.shape[0], batch_size):
        s = torch.from_numpy(stock[start : start + batch_size].astype(np.float32))
        tp = s @ g.T
        jac = (tp / (s.sum(1, keepdim=True) + g_sum[None, :] - tp)).double()
        jac = torch.nan_to_num(jac, nan=1.0)
        if p != 1:
            jac = jac**p
        result = torch.maximum(result, jac.max(0).values) if agg == "max" else result + jac.sum(0)
    if agg == "mean":
        result = result / stock.shape[0]
    if p != 1:
        result = result ** (1.0 / p)
    return result.numpy()


def snn(generated: Sequence, reference_fps: np.ndarray) -> float:
    """MOSES SNN: mean nearest-neighbour Tanimoto similarity to the reference."""
    return float(tanimoto_aggregate(reference_fps, morgan_fingerprints(generated), agg="max").mean())


def internal_diversity(generated: Sequence, p: float = 1.0) -> float:
    """MOSES IntDiv_p of a set (all ordered pairs, self-pairs included)."""
    fps = morgan_fingerprints(generated)
    return float(1.0 - tanimoto_aggregate(fps, fps, agg="mean", p=p).mean())


def fragment_counts(molecules: Sequence) -> Counter:
    """BRICS fragments (SMILES with dummy atoms) counted over the molecules."""
    counts: Counter = Counter()
    for mol in _mols(molecules):
        counts.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split("."))
    return counts


def scaffold_counts(molecules: Sequence, min_rings: int = 2) -> Counter:
    """Bemis-Murcko scaffolds with at least ``min_rings`` rings, counted."""
    counts: Counter = Counter()
    for mol in _mols(molecules):
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
        except Exception:
            continue
        smiles = Chem.MolToSmiles(scaffold)
        if smiles and scaffold.GetRingInfo().NumRings() >= min_rings:
            counts[smiles] += 1
    return counts


def count_cosine(reference: Counter, generated: Counter) -> float:
    """Cosine similarity of two count dictionaries (absent keys count 0); NaN if one is empty."""
    if not reference or not generated:
        return float("nan")
    keys = sorted(set(reference) | set(generated))
    r = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    g = np.array([generated.get(k, 0) for k in keys], dtype=np.float64)
    return float(r @ g / (np.linalg.norm(r) * np.linalg.norm(g)))


# -- filters ----------------------------------------------------------------------------------


@dataclass
class MosesFilters:
    """MOSES's structural filters: SMARTS patterns (MCF + PAINS) plus atom / charge / ring rules."""

    patterns: list

    def passes(self, mol) -> bool:
        mol = Chem.MolFromSmiles(mol) if isinstance(mol, str) else mol
        if mol is None:
            return False
        if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
            return False
        if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
            return False
        if any(a.GetSymbol() not in ALLOWED_ATOMS for a in mol.GetAtoms()):
            return False
        with_h = Chem.AddHs(mol)
        if any(with_h.HasSubstructMatch(p) for p in self.patterns):
            return False
        return Chem.MolFromSmiles(Chem.MolToSmiles(mol, isomericSmiles=False)) is not None

    def fraction_passing(self, molecules: Sequence) -> float:
        mols = _mols(molecules)
        return float(np.mean([self.passes(m) for m in mols])) if mols else float("nan")


def _read_patterns(mcf: str, pains: str) -> list:
    rows = list(csv.DictReader(io.StringIO(mcf)))
    smarts = [r["smarts"] for r in rows]
    smarts += [row[0] for row in csv.reader(io.StringIO(pains)) if row]
    patterns = [Chem.MolFromSmarts(s) for s in smarts]
    bad = [s for s, p in zip(smarts, patterns) if p is None]
    if bad:
        raise ValueError(f"{len(bad)} filter SMARTS do not parse, e.g. {bad[0]!r}")
    return patterns


def load_filters(path: str | Path | None = None, *, download: bool = False) -> MosesFilters:
    """MOSES's MCF + PAINS filters.

    Args:
        path: the molsets 0.3.1 wheel, or a folder holding ``mcf.csv`` and
            ``wehi_pains.csv``. Default: ``$SCIOGEN_CACHE/molecules/moses_filters``.
        download: fetch the wheel from PyPI into the cache when the files are missing
            (its SHA-256 and the two files' SHA-256 are checked).

    Raises:
        FileNotFoundError: no copy and ``download=False``; the message says how to get one.
    """
    from sciogen.data import ChecksumError, cache_dir, download_url, sha256sum

    folder = cache_dir() / "molecules" / "moses_filters"
    if path is not None and Path(path).is_file():
        wheel = Path(path)
        if sha256sum(wheel) != MOLSETS_WHEEL_SHA256:
            raise ChecksumError(f"{wheel} is not the molsets 0.3.1 wheel (SHA-256 differs)")
        with zipfile.ZipFile(wheel) as z:
            texts = {name: z.read(member).decode() for name, (member, _) in FILTER_FILES.items()}
        return MosesFilters(_read_patterns(texts["mcf.csv"], texts["wehi_pains.csv"]))
    if path is not None:
        folder = Path(path)
    if not all((folder / name).is_file() for name in FILTER_FILES):
        if path is not None or not download:
            raise FileNotFoundError(
                f"MOSES filter files (mcf.csv, wehi_pains.csv) not found in {folder}; call "
                "sciogen.molecules.moses_metrics.load_filters(download=True) once, or pass the molsets-0.3.1 wheel "
                f"({MOLSETS_WHEEL_URL})"
            )
        wheel = download_url(MOLSETS_WHEEL_URL, folder / "_molsets-0.3.1-py3-none-any.whl", sha256=MOLSETS_WHEEL_SHA256)
        with zipfile.ZipFile(wheel) as z:
            for name, (member, _) in FILTER_FILES.items():
                (folder / name).write_bytes(z.read(member))
        wheel.unlink()
    for name, (_, sha) in FILTER_FILES.items():
        if sha256sum(folder / name) != sha:
            raise ChecksumError(f"{folder / name}: SHA-256 differs from molsets 0.3.1's; delete it and download again")
    return MosesFilters(_read_patterns((folder / "mcf.csv").read_text(), (folder / "wehi_pains.csv").read_text()))


# -- the set ----------------------------------------------------------------------------------


@dataclass
class MosesReference:
    """Precomputed reference statistics: fingerprints, fragment and scaffold counts."""

    fingerprints: np.ndarray
    fragments: Counter
    scaffolds: Counter

    @classmethod
    def from_smiles(cls, smiles: Sequence[str]) -> "MosesReference":
        mols = _mols(smiles)
        return cls(morgan_fingerprints(mols), fragment_counts(mols), scaffold_counts(mols))


def moses_metrics(generated: Sequence, reference: MosesReference | None = None, filters: MosesFilters | None = None) -> dict[str, float]:
    """SNN, Frag, Scaf (with a reference), IntDiv, IntDiv2 and Filters of valid molecules.

    ``filters`` defaults to :func:`load_filters` without download; when the filter files
    are absent ``filters`` is left out of the result (with a warning), never guessed.
    """
    mols = _mols(generated)
    out: dict[str, float] = {}
    if reference is not None:
        fps = morgan_fingerprints(mols)
        out["snn"] = float(tanimoto_aggregate(reference.fingerprints, fps, agg="max").mean())
        out["frag"] = count_cosine(reference.fragments, fragment_counts(mols))
        out["scaf"] = count_cosine(reference.scaffolds, scaffold_counts(mols))
    out["intdiv"] = internal_diversity(mols, p=1)
    out["intdiv2"] = internal_diversity(mols, p=2)
    if filters is None:
        try:
            filters = load_filters()
        except FileNotFoundError as err:
            import warnings

            warnings.warn(f"MOSES 'filters' not computed: {err}", stacklevel=2)
    if filters is not None:
        out["filters"] = filters.fraction_passing(mols)
    return out
