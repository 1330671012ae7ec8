"""3D molecules (atoms with coordinates, hydrogens included) <-> tensors, RDKit Mols, PyG, XYZ / SDF.

A molecule is three aligned tensors (:class:`Molecule3D`): ``types`` (N,) long, the index of
each atom's element in an :class:`ElementVocabulary`; ``charges`` (N,) long formal charges;
``positions`` (N, 3) float32 in Å. Hydrogens are atoms like any other when the vocabulary
holds ``"H"`` (QM9 with hydrogens, as EDM); without it they are left out.

Bonds are not stored: :func:`arrays_to_mol` perceives them from the 3D geometry (``method=``):

- ``"hueckel"`` (default): RDKit's ``DetermineBonds`` (xyz2mol, Kim & Kim 2015) with
  extended-Hückel connectivity (YAeHMOP), bond orders and formal charges for the total charge;
- ``"tables"``: connectivity from EDM's bond-length table (an atom pair is bonded below its
  single-bond length + 10 pm, :data:`EDM_BOND_LENGTHS`), then RDKit's ``DetermineBondOrders``;
  3-4x faster, misses the long C-N bonds of strained aziridine cages;
- ``"rdkit"``: ``DetermineBonds`` with RDKit's default connect-the-dots connectivity, which
  bonds the bridgeheads of QM9's bicyclo[1.1.1] cages (1.87 Å apart);
- ``"edm"``: EDM's bond orders from distances alone (``get_bond_order``, Hoogeboom et al.
  2022), no charges: the rule behind EDM's stability and validity, which :mod:`.metrics` uses.

Agreement with QM9's SMILES (heavy-atom canonical, no stereo) on all 130,831 DFT geometries:
hueckel 99.83 % (2 failures; most misses are the 580 charged molecules, as another valid
charge placement), tables 99.18 % (479 failures), edm 95.31 % (3,039 unsanitizable: e.g.
diynes, whose short single bond EDM reads as double), rdkit 94.63 % (6,810 failures).
Hückel costs about 3.7 ms a molecule, the others 1-1.7 ms.

    >>> mol = from_xyz_block("3\\nwater\\nO 0 0 0\\nH 0.96 0 0\\nH -0.24 0.93 0\\n")
    >>> types, charges, positions = mol_to_arrays(mol)
    >>> types.tolist(), heavy_smiles(arrays_to_mol(types, positions, charges))
    ([3, 0, 0], 'O')
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence, get_args

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from torch_geometric.data import Data

from sciogen.molecules.io import _open_write, _report_dropped
from sciogen.molecules.representation import (
    MoleculeError,
    MoleculeTooLargeError,
    UnknownAtomTypeError,
    UnrepresentableMoleculeError,
    canonical_smiles,
)

__all__ = [
    "BondMethod",
    "ElementVocabulary",
    "QM9_ELEMENTS",
    "Molecule3D",
    "NoConformerError",
    "BondPerceptionError",
    "EDM_BOND_LENGTHS",
    "EDM_MARGINS",
    "edm_thresholds",
    "edm_bond_orders",
    "mol_to_arrays",
    "arrays_to_mol",
    "perceive_bonds",
    "to_pyg",
    "from_xyz_block",
    "to_sdf",
    "heavy_smiles",
]

BondMethod = Literal["tables", "hueckel", "rdkit", "edm"]
#: QM9 with hydrogens, EDM's order (``atom_decoder`` of ``configs/datasets_config.py``)
QM9_ELEMENTS = ("H", "C", "N", "O", "F")
_PT = Chem.GetPeriodicTable()


class NoConformerError(MoleculeError):
    """A molecule without usable 3D coordinates (no conformer, a 2D one, NaN / inf)."""


class BondPerceptionError(MoleculeError):
    """Bonds (or a valid molecule) could not be derived from the 3D geometry."""


# -- vocabulary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElementVocabulary:
    """The elements an atom type indexes, and the largest molecule.

    Args:
        elements: element symbols; ``types[i] = k`` means ``elements[k]``. Without ``"H"``,
            hydrogens are left out of the tensors (EDM's ``remove_h``).
        max_atoms: the most atoms (hydrogens included when they are in ``elements``); None
            for no limit.

    >>> ElementVocabulary.qm9().index("N")
    2
    """

    elements: tuple[str, ...] = QM9_ELEMENTS
    max_atoms: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))
        if not self.elements:
            raise ValueError("an ElementVocabulary needs at least one element")
        for e in self.elements:
            if not isinstance(e, str) or _atomic_number(e) is None:
                raise ValueError(f"{e!r} is not an element symbol (e.g. 'H', 'C', 'Cl')")
        if len(set(self.elements)) != len(self.elements):
            raise ValueError(f"elements are repeated in {self.elements}")
        if self.max_atoms is not None and self.max_atoms < 1:
            raise ValueError(f"max_atoms={self.max_atoms}; give a positive number or None")

    @classmethod
    def qm9(cls, hydrogens: bool = True) -> "ElementVocabulary":
        """QM9: H, C, N, O, F and up to 29 atoms, or C, N, O, F and up to 9 heavy atoms."""
        return cls(QM9_ELEMENTS, 29) if hydrogens else cls(QM9_ELEMENTS[1:], 9)

    @property
    def hydrogens(self) -> bool:
        return "H" in self.elements

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return tuple(_PT.GetAtomicNumber(e) for e in self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def index(self, symbol: str) -> int:
        try:
            return self.elements.index(symbol)
        except ValueError:
            raise UnknownAtomTypeError(f"element {symbol} is outside the vocabulary ({', '.join(self.elements)})", item=symbol) from None

    def to_dict(self) -> dict[str, Any]:
        return {"elements": list(self.elements), "max_atoms": self.max_atoms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ElementVocabulary":
        return cls(tuple(d["elements"]), d.get("max_atoms"))


def _atomic_number(symbol: str) -> int | None:
    try:
        z = _PT.GetAtomicNumber(symbol)
    except RuntimeError:  # RDKit's "Element 'Xx' not found"
        return None
    return z if z > 0 and _PT.GetElementSymbol(z) == symbol else None


# -- tensors <-> RDKit ------------------------------------------------------------------------


class Molecule3D(NamedTuple):
    """One molecule as tensors: ``types`` (N,) long, ``charges`` (N,) long formal charges,
    ``positions`` (N, 3) float32 in Å."""

    types: torch.Tensor
    charges: torch.Tensor
    positions: torch.Tensor


def mol_to_arrays(mol: "Chem.Mol", vocabulary: ElementVocabulary | None = None, *, conformer_id: int = -1,
                  index: int | None = None) -> Molecule3D:
    """An RDKit Mol with a 3D conformer as :class:`Molecule3D` tensors (atom order kept).

    With hydrogens in the vocabulary every hydrogen must be an atom with coordinates
    (``Chem.AddHs(mol, addCoords=True)``); without, hydrogen atoms are left out.

    Raises:
        NoConformerError: no conformer, a 2D one, or non-finite coordinates.
        UnknownAtomTypeError: an element outside the vocabulary (the atom is named).
        MoleculeTooLargeError: more atoms than ``vocabulary.max_atoms``.
        UnrepresentableMoleculeError: implicit hydrogens where the vocabulary keeps hydrogens.
    """
    vocabulary = vocabulary or ElementVocabulary.qm9()
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"expected an RDKit Mol, got {type(mol).__name__}")
    item = _name(mol)
    if mol.GetNumConformers() == 0:
        raise NoConformerError("the molecule has no conformer (3D coordinates); embed one with "
                               "AllChem.EmbedMolecule(Chem.AddHs(mol)) or read it from an SDF / XYZ file", index=index, item=item)
    conf = mol.GetConformer(conformer_id)
    if not conf.Is3D():
        raise NoConformerError("the conformer is 2D (an SDF '2D' header or all z = 0); 3D coordinates are needed",
                               index=index, item=item)
    probe = Chem.Mol(mol)
    probe.UpdatePropertyCache(strict=False)
    keep = []
    for atom in probe.GetAtoms():
        symbol = atom.GetSymbol()
        if symbol == "H" and not vocabulary.hydrogens:
            continue
        if symbol not in vocabulary.elements:
            raise UnknownAtomTypeError(f"atom {atom.GetIdx()} is {symbol}, outside the vocabulary ({', '.join(vocabulary.elements)})",
                                       index=index, item=item)
        hidden = atom.GetNumImplicitHs() + atom.GetNumExplicitHs()
        if vocabulary.hydrogens and hidden:
            raise UnrepresentableMoleculeError(
                f"atom {atom.GetIdx()} ({symbol}) carries {hidden} hydrogen(s) without coordinates; add them as atoms "
                "with Chem.AddHs(mol, addCoords=True)", index=index, item=item)
        keep.append(atom.GetIdx())
    if vocabulary.max_atoms is not None and len(keep) > vocabulary.max_atoms:
        raise MoleculeTooLargeError(f"{len(keep)} atoms, more than max_atoms={vocabulary.max_atoms}", index=index, item=item)
    xyz = conf.GetPositions()[keep]
    if not np.isfinite(xyz).all():
        raise NoConformerError("the conformer has NaN or infinite coordinates", index=index, item=item)
    atoms = [mol.GetAtomWithIdx(i) for i in keep]
    return Molecule3D(
        torch.tensor([vocabulary.index(a.GetSymbol()) for a in atoms], dtype=torch.long),
        torch.tensor([a.GetFormalCharge() for a in atoms], dtype=torch.long),
        torch.as_tensor(xyz, dtype=torch.float32).view(-1, 3),
    )


def _name(mol) -> str | None:
    return mol.GetProp("_Name") if mol.HasProp("_Name") and mol.GetProp("_Name") else None


def _check_arrays(types, positions, charges, vocabulary: ElementVocabulary, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(torch.as_tensor(types).detach().cpu()).reshape(-1).astype(np.int64)
    x = np.asarray(torch.as_tensor(positions).detach().cpu(), dtype=np.float64)
    if x.ndim != 2 or x.shape != (t.shape[0], 3):
        raise MoleculeError(f"positions have shape {tuple(x.shape)}, expected ({t.shape[0]}, 3) for {t.shape[0]} atom types",
                            index=index)
    bad = np.flatnonzero((t < 0) | (t >= len(vocabulary)))
    if bad.size:
        raise UnknownAtomTypeError(f"atom {bad[0]} has type {t[bad[0]]}, outside 0..{len(vocabulary) - 1} "
                                   f"({', '.join(vocabulary.elements)})", index=index)
    if not np.isfinite(x).all():
        raise NoConformerError(f"atom {np.flatnonzero(~np.isfinite(x).all(1))[0]} has NaN or infinite coordinates", index=index)
    if vocabulary.max_atoms is not None and t.shape[0] > vocabulary.max_atoms:
        raise MoleculeTooLargeError(f"{t.shape[0]} atoms, more than max_atoms={vocabulary.max_atoms}", index=index)
    q = np.zeros_like(t) if charges is None else np.asarray(torch.as_tensor(charges).detach().cpu()).reshape(-1).astype(np.int64)
    if q.shape != t.shape:
        raise MoleculeError(f"charges have shape {tuple(q.shape)}, expected {tuple(t.shape)}", index=index)
    return t, x, q


def arrays_to_mol(
    types: torch.Tensor | Sequence[int],
    positions: torch.Tensor | np.ndarray,
    charges: torch.Tensor | Sequence[int] | None = None,
    vocabulary: ElementVocabulary | None = None,
    *,
    method: BondMethod = "hueckel",
    total_charge: int | None = None,
    sanitize: bool = True,
    index: int | None = None,
) -> "Chem.Mol":
    """An RDKit Mol with one 3D conformer and bonds perceived from the geometry.

    Args:
        types: (N,) element indices in ``vocabulary``.
        positions: (N, 3) coordinates in Å.
        charges: (N,) formal charges, or None. ``"edm"`` puts them on the atoms; the other
            methods derive formal charges themselves for the total ``sum(charges)``.
        method: see the module docstring.
        total_charge: the molecule's charge (default ``sum(charges)``, else 0).
        sanitize: sanitize the result (raises :class:`BondPerceptionError` if RDKit rejects it).

    Raises:
        UnknownAtomTypeError, NoConformerError, MoleculeTooLargeError: bad tensors.
        BondPerceptionError: the method found no valid bonding for the geometry.
    """
    vocabulary = vocabulary or ElementVocabulary.qm9()
    t, x, q = _check_arrays(types, positions, charges, vocabulary, index)
    mol = Chem.RWMol()
    for k, z in enumerate(t):
        atom = Chem.Atom(vocabulary.elements[z])
        if method == "edm" and q[k]:
            atom.SetFormalCharge(int(q[k]))
        mol.AddAtom(atom)
    conf = Chem.Conformer(len(t))
    for k, p in enumerate(x):
        conf.SetAtomPosition(k, p.tolist())
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    charge = int(total_charge if total_charge is not None else q.sum())
    return perceive_bonds(mol.GetMol(), method, charge=charge, sanitize=sanitize, index=index)


def perceive_bonds(mol: "Chem.Mol", method: BondMethod = "hueckel", *, charge: int = 0, sanitize: bool = True,
                   index: int | None = None) -> "Chem.Mol":
    """A copy of ``mol`` (atoms + 3D conformer) with bonds from its coordinates (existing bonds are dropped).

    Raises:
        BondPerceptionError: RDKit's bond-order search fails or the molecule does not sanitize.
    """
    if method not in get_args(BondMethod):
        raise ValueError(f"method={method!r}; allowed: {', '.join(get_args(BondMethod))}")
    item = _name(mol)
    rw = Chem.RWMol(mol)
    for bond in list(rw.GetBonds()):
        rw.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    try:
        if method in ("tables", "edm"):
            symbols = [a.GetSymbol() for a in rw.GetAtoms()]
            orders = _edm_orders_np(symbols, rw.GetConformer().GetPositions())
            for i, j in zip(*np.nonzero(np.triu(orders, 1))):
                rw.AddBond(int(i), int(j), _BOND_TYPES[orders[i, j] if method == "edm" else 1])
            out = rw.GetMol()
            if method == "tables":
                rdDetermineBonds.DetermineBondOrders(out, charge=charge, embedChiral=False)
        else:
            out = rw.GetMol()
            with _quiet_stderr() if method == "hueckel" else contextlib.nullcontext():
                rdDetermineBonds.DetermineBonds(out, useHueckel=method == "hueckel", charge=charge, embedChiral=False)
        if sanitize:
            Chem.SanitizeMol(out)
    except (ValueError, RuntimeError) as err:  # RDKit's valence / charge / kekulization errors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BondPerceptionError(f"no valid bonds from the geometry with method={method!r}: {reason}", index=index, item=item) from None
    return out


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level stderr: YAeHMOP (extended Hückel) prints a warning for every O-H or
    N-H distance under ~1 Å, i.e. for nearly every QM9 molecule."""
    fd = 2  # the C library's stderr, whatever sys.stderr is now (pytest, notebooks)
    sys.stderr.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


# -- EDM's bond-length table ------------------------------------------------------------------

# Typical bond lengths in pm, from EDM (Hoogeboom et al. 2022), ``qm9/bond_analyze.py`` of
# github.com/ehoogeboom/e3_diffusion_for_molecules (commit fce07d7), which takes them from
# wiredchemist.com (bond energies and lengths) and chemistry-reference.com. Each pair is
# listed once and made symmetric; EDM lists C=S (160) only in C's row, so its lookup
# depends on the atom order there, not here (QM9 has no S).
_SINGLE = {
    "H": {"H": 74, "C": 109, "N": 101, "O": 96, "F": 92, "B": 119, "Si": 148, "P": 144, "As": 152, "S": 134, "Cl": 127,
          "Br": 141, "I": 161},
    "C": {"C": 154, "N": 147, "O": 143, "F": 135, "Si": 185, "P": 184, "S": 182, "Cl": 177, "Br": 194, "I": 214},
    "N": {"N": 145, "O": 140, "F": 136, "Cl": 175, "Br": 214, "S": 168, "I": 222, "P": 177},
    "O": {"O": 148, "F": 142, "Br": 172, "S": 151, "P": 163, "Si": 163, "Cl": 164, "I": 194},
    "F": {"F": 142, "S": 158, "Si": 160, "Cl": 166, "Br": 178, "P": 156, "I": 187},
    "B": {"Cl": 175},
    "Si": {"Si": 233, "S": 200, "Cl": 202, "Br": 215, "I": 243},
    "Cl": {"Cl": 199, "P": 203, "S": 207, "Br": 214},
    "S": {"S": 204, "Br": 225, "P": 210, "I": 234},
    "Br": {"Br": 228, "P": 222},
    "P": {"P": 221},
    "I": {"I": 266},
}
_DOUBLE = {"C": {"C": 134, "N": 129, "O": 120, "S": 160}, "N": {"N": 125, "O": 121}, "O": {"O": 121, "P": 150}, "P": {"S": 186}}
_TRIPLE = {"C": {"C": 120, "N": 116, "O": 113}, "N": {"N": 110}}


def _symmetric(table: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    out = {}
    for a, row in table.items():
        for b, v in row.items():
            out[(a, b)] = out[(b, a)] = v
    return out


#: (single, double, triple) bond lengths in pm by element pair, EDM's ``bonds1/2/3``
EDM_BOND_LENGTHS: tuple[dict[tuple[str, str], int], ...] = (_symmetric(_SINGLE), _symmetric(_DOUBLE), _symmetric(_TRIPLE))
#: EDM's ``margin1, margin2, margin3`` in pm, "tuned to maximize the stability of the QM9 true samples"
EDM_MARGINS = (10, 5, 3)
_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def edm_thresholds(symbols: Sequence[str]) -> np.ndarray:
    """(3, K, K) distance thresholds in pm (table length + margin) for single, double and
    triple bonds between the K ``symbols``; -inf where EDM's table has no such bond."""
    out = np.full((3, len(symbols), len(symbols)), -np.inf)
    for k, (table, margin) in enumerate(zip(EDM_BOND_LENGTHS, EDM_MARGINS)):
        for i, a in enumerate(symbols):
            for j, b in enumerate(symbols):
                if (a, b) in table:
                    out[k, i, j] = table[(a, b)] + margin
    return out


def _orders_from_distances(dist_pm: np.ndarray | torch.Tensor, thr: Any, ti: Any, tj: Any):
    """EDM's ``get_bond_order``: 1 below the single threshold, 2 also below the double one,
    3 also below the triple one, else 0 (a pair missing from a table never reaches it)."""
    single = dist_pm < thr[0][ti, tj]
    double = single & (dist_pm < thr[1][ti, tj])
    triple = double & (dist_pm < thr[2][ti, tj])
    return single.astype(np.int64) + double + triple if isinstance(single, np.ndarray) else single.long() + double + triple


def _edm_orders_np(symbols: Sequence[str], xyz: np.ndarray) -> np.ndarray:
    unique = sorted(set(symbols))
    idx = np.array([unique.index(s) for s in symbols], dtype=np.int64)
    d = 100.0 * np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    orders = _orders_from_distances(d, edm_thresholds(unique), idx[:, None], idx[None, :])
    np.fill_diagonal(orders, 0)
    return orders


def edm_bond_orders(types: torch.Tensor, positions: torch.Tensor, vocabulary: ElementVocabulary | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """EDM's bond orders (0-3) between every pair of atoms, from distances alone.

    Shapes:
        types (N,) or (B, N) long; positions (N, 3) or (B, N, 3) in Å; mask (B, N) bool
        (padding atoms get no bonds) -> (N, N) or (B, N, N) long, symmetric, zero diagonal.
    """
    vocabulary = vocabulary or ElementVocabulary.qm9()
    single = types.dim() == 1
    t, x = (types[None], positions[None]) if single else (types, positions)
    thr = torch.as_tensor(edm_thresholds(vocabulary.elements), device=x.device)
    d = 100.0 * torch.cdist(x.double(), x.double())
    orders = _orders_from_distances(d, thr, t.long()[:, :, None], t.long()[:, None, :])
    n = t.shape[1]
    keep = ~torch.eye(n, dtype=torch.bool, device=x.device)[None]
    if mask is not None:
        m = mask if mask.dim() == 2 else mask[None]
        keep = keep & m[:, :, None] & m[:, None, :]
    orders = orders * keep
    return orders[0] if single else orders


# -- PyG, XYZ, SDF ----------------------------------------------------------------------------


def to_pyg(types: torch.Tensor, positions: torch.Tensor, charges: torch.Tensor | None = None,
           vocabulary: ElementVocabulary | None = None) -> Data:
    """A torch-geometric ``Data`` for 3D models (no edges: EGNN / SchNet build their own).

    Shapes:
        -> x (N, K) float one-hot element, pos (N, 3) float Å, z (N,) long atomic number,
        atom_type (N,) long, charge (N,) long formal charge.
    """
    vocabulary = vocabulary or ElementVocabulary.qm9()
    t, x, q = _check_arrays(types, positions, charges, vocabulary, None)
    t = torch.as_tensor(t)
    z = torch.tensor(vocabulary.atomic_numbers, dtype=torch.long)[t]
    one_hot = torch.nn.functional.one_hot(t, len(vocabulary)).float()
    return Data(x=one_hot, pos=torch.as_tensor(x, dtype=torch.float32), z=z, atom_type=t, charge=torch.as_tensor(q))


def from_xyz_block(block: str, *, method: BondMethod | None = "hueckel", charge: int = 0, index: int | None = None,
                   source: str | None = None) -> "Chem.Mol":
    """One XYZ record (atom count, comment line, ``El x y z`` lines) as a Mol with a 3D
    conformer; bonds perceived by ``method`` (None: atoms only). The comment becomes ``_Name``.

    Raises:
        NoConformerError: the block is not valid XYZ (the reason is given).
        BondPerceptionError: no valid bonds for the geometry (``method`` not None).
    """
    lines = block.splitlines()
    problem = _xyz_problem(lines)
    if problem is not None:
        raise NoConformerError(f"not a valid XYZ record: {problem}", index=index, source=source)
    mol = Chem.MolFromXYZBlock(block)
    if mol is None:
        raise NoConformerError("RDKit cannot read this XYZ record", index=index, source=source)
    mol.GetConformer().Set3D(True)
    if len(lines) > 1 and lines[1].strip():
        mol.SetProp("_Name", lines[1].strip())
    if method is None:
        return mol
    try:
        return perceive_bonds(mol, method, charge=charge, index=index)
    except BondPerceptionError as err:
        raise err.located(source) if source else err from None


def _xyz_problem(lines: list[str]) -> str | None:
    if not lines or not lines[0].strip().isdigit():
        return f"the first line must be the atom count, got {lines[0].strip()[:40] if lines else ''!r}"
    n = int(lines[0])
    atoms = [ln for ln in lines[2:] if ln.strip()]
    if len(atoms) != n:
        return f"the header says {n} atoms, {len(atoms)} atom lines follow"
    for k, ln in enumerate(atoms):
        parts = ln.split()
        if len(parts) < 4:
            return f"atom line {k + 1} ({ln.strip()!r}) needs an element and x y z"
        if _atomic_number(parts[0].capitalize()) is None:
            return f"atom line {k + 1}: {parts[0]!r} is not an element symbol"
        try:
            xyz = [float(v) for v in parts[1:4]]
        except ValueError:
            return f"atom line {k + 1} ({ln.strip()!r}): coordinates are not numbers"
        if not np.isfinite(xyz).all():
            return f"atom line {k + 1}: non-finite coordinates"
    return None


def to_sdf(molecules: Sequence["Chem.Mol | None"], path: str | Path, *, columns: dict[str, Sequence] | None = None,
           kekulize: bool = True) -> Path:
    """Write Mols with their 3D coordinates (hydrogens kept) to a multi-record SDF (``.gz`` allowed).

    ``None`` entries (invalid samples) are left out and counted on stderr; ``columns`` (one
    value per input molecule) become SD tags.

    Raises:
        TypeError: an entry is neither a Mol nor None.
        NoConformerError: a Mol has no 3D conformer (its index is named).
    """
    import io

    path = Path(path)
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    writer.SetKekulize(kekulize)
    for i, m in enumerate(molecules):
        if m is None:
            continue
        if not isinstance(m, Chem.Mol):
            raise TypeError(f"entry {i} is a {type(m).__name__}; to_sdf writes RDKit Mols (None for invalid samples)")
        if m.GetNumConformers() == 0 or not m.GetConformer().Is3D():
            raise NoConformerError("no 3D conformer to write (embed one, or build it with arrays_to_mol)", index=i, item=_name(m))
        mol = Chem.Mol(m)
        for name, values in (columns or {}).items():
            mol.SetProp(name, str(values[i]))
        try:
            writer.write(mol)
        except (RuntimeError, ValueError) as err:  # kekulization of an unsanitized sample
            raise BondPerceptionError(f"RDKit cannot write it: {err}; pass kekulize=False", index=i, item=_name(m)) from None
    writer.close()
    with _open_write(path) as handle:
        handle.write(buffer.getvalue())
    _report_dropped(sum(m is None for m in molecules), len(molecules), "SDF",
                    "write .xyz to keep every generated sample's atoms and coordinates")
    return path


def heavy_smiles(mol: "Chem.Mol") -> str | None:
    """RDKit canonical SMILES without hydrogens or stereo (the form QM9's SMILES are compared
    in), or None when the SMILES of ``mol`` does not parse back."""
    back = Chem.MolFromSmiles(Chem.MolToSmiles(mol, isomericSmiles=False))
    return None if back is None else canonical_smiles(back)
