"""RDKit molecules <-> molecular graphs (torch-geometric ``Data``), and dense batches.

A molecule becomes a graph whose nodes are atoms and whose edges are bonds:

- ``x`` (N,) long: the index of each atom's type in :attr:`MoleculeSpec.atom_types`;
- ``edge_index`` (2, 2M) long: every bond in both directions, sorted by (source, target);
- ``edge_attr`` (2M,) long: the bond type, 1 single, 2 double, 3 triple, 4 aromatic
  (0 is kept for "no bond" in the dense adjacency, as in DiGress).

An atom type is a token: a bare element symbol (``"C"``) or a SMILES bracket atom that
adds a formal charge and, for aromatic heteroatoms in aromatic mode, the hydrogen count
(``"[N+]"``, ``"[O-]"``, ``"[nH]"``). Hydrogens are implicit by default (heavy-atom
mode): RDKit recomputes them from each atom's element, charge and bonds, which is exact
for every QM9 molecule. With ``explicit_hydrogens=True`` they are nodes of type ``"H"``.
Bonds are kekulized by default (single / double / triple); ``bonds="aromatic"`` keeps
RDKit's aromatic bonds (DiGress's MOSES / GuacaMol setting).

    >>> spec = MoleculeSpec.qm9()
    >>> g = spec.to_graph("C[NH3+]")
    >>> [spec.atom_types[i] for i in g.x.tolist()], g.edge_attr.tolist()
    (['C', '[N+]'], [1, 1])
    >>> canonical_smiles(spec.to_mol(g))
    'C[NH3+]'

Bad input raises a :class:`MoleculeError` subclass naming the item (and its index when
given): :class:`SmilesParseError`, :class:`UnknownAtomTypeError`,
:class:`MoleculeTooLargeError`, :class:`UnsupportedBondError`,
:class:`UnrepresentableMoleculeError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence, get_args

import torch
from rdkit import Chem, RDLogger
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

__all__ = [
    "BondMode",
    "BOND_TYPES",
    "BOND_ORDERS",
    "max_valences",
    "AtomType",
    "MoleculeSpec",
    "MoleculeError",
    "SmilesParseError",
    "UnknownAtomTypeError",
    "MoleculeTooLargeError",
    "UnsupportedBondError",
    "UnrepresentableMoleculeError",
    "parse_smiles",
    "canonical_smiles",
    "to_dense",
    "from_dense",
    "QM9_ATOM_TYPES",
    "MOSES_ATOM_TYPES",
]

RDLogger.DisableLog("rdApp.*")

BondMode = Literal["kekulize", "aromatic"]

#: index -> RDKit bond type; index 0 means "no bond" (dense adjacency), as in DiGress
BOND_TYPES: tuple[Any, ...] = (
    None,
    Chem.BondType.SINGLE,
    Chem.BondType.DOUBLE,
    Chem.BondType.TRIPLE,
    Chem.BondType.AROMATIC,
)
_BOND_INDEX = {b: i for i, b in enumerate(BOND_TYPES) if b is not None}
#: index -> bond order counted towards an atom's valence (aromatic 1.5, as RDKit)
BOND_ORDERS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 1.5)

#: QM9 heavy atoms: C, N, O, F (DiGress / PARD order) then the charged atoms QM9 contains
QM9_ATOM_TYPES = ("C", "N", "O", "F", "[N+]", "[O-]", "[N-]", "[C-]")
#: MOSES atoms (no charges in MOSES), DiGress's order
MOSES_ATOM_TYPES = ("C", "N", "S", "O", "F", "Cl", "Br")


# -- errors -----------------------------------------------------------------------------------


class MoleculeError(ValueError):
    """A molecule that cannot be represented; ``index`` and ``item`` name the culprit."""

    def __init__(self, message: str, *, index: int | None = None, item: Any = None, source: str | None = None):
        self.index, self.item, self.reason, self.source = index, item, message, source
        where = f"molecule {index}" if index is not None else "molecule"
        shown = f" ({item!r})" if isinstance(item, str) else ""
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}{shown}: {message}")

    def located(self, source: str) -> "MoleculeError":
        """The same error with a file name in front of the message."""
        return type(self)(self.reason, index=self.index, item=self.item, source=source)


class SmilesParseError(MoleculeError):
    """RDKit could not parse (or sanitize) a SMILES string."""


class UnknownAtomTypeError(MoleculeError):
    """An atom (element + charge) outside the spec's vocabulary."""


class MoleculeTooLargeError(MoleculeError):
    """More atoms than the spec's ``max_atoms``."""


class UnsupportedBondError(MoleculeError):
    """A bond type the spec cannot encode (dative, quadruple, aromatic in kekulize mode...)."""


class UnrepresentableMoleculeError(MoleculeError):
    """The graph would not give the molecule back (e.g. hydrogens RDKit cannot infer)."""


# -- atom types -------------------------------------------------------------------------------

_TOKEN = re.compile(r"^\[(?P<sym>[A-Za-z][a-z]?)(?:H(?P<h>\d*))?(?P<chg>[+-]\d*|\++|-+)?\]$")
_ELEMENT = re.compile(r"^[A-Z][a-z]?$")


@dataclass(frozen=True)
class AtomType:
    """An atom type: element, formal charge and (aromatic heteroatoms only) hydrogen count.

    ``hydrogens`` is None except in aromatic mode for aromatic heteroatoms (and charged
    carbons) that carry hydrogens (pyrrole's ``[nH]``), whose hydrogen count a kekulizer
    cannot guess.
    """

    symbol: str
    charge: int = 0
    hydrogens: int | None = None

    @property
    def token(self) -> str:
        if self.charge == 0 and self.hydrogens is None:
            return self.symbol
        sym = self.symbol.lower() if self.hydrogens is not None else self.symbol
        h = "" if not self.hydrogens else ("H" if self.hydrogens == 1 else f"H{self.hydrogens}")
        c = "" if self.charge == 0 else ("+" if self.charge > 0 else "-") + (str(abs(self.charge)) if abs(self.charge) > 1 else "")
        return f"[{sym}{h}{c}]"

    @classmethod
    def parse(cls, token: str) -> "AtomType":
        """``"C"``, ``"[N+]"``, ``"[O-]"``, ``"[nH]"``, ``"[N+2]"`` -> AtomType."""
        if _ELEMENT.match(token):
            return cls(token)
        m = _TOKEN.match(token)
        if m is None:
            raise ValueError(f"bad atom type token {token!r}; use an element ('C') or a bracket atom ('[N+]', '[nH]')")
        sym, h, chg = m.group("sym"), m.group("h"), m.group("chg") or ""
        aromatic = sym[0].islower()
        hydrogens = (int(h) if h else 1) if h is not None else None
        if aromatic and hydrogens is None:
            hydrogens = 0
        charge = 0
        if chg:
            sign = 1 if chg[0] == "+" else -1
            digits = chg.lstrip("+-")
            charge = sign * (int(digits) if digits else len(chg))
        return cls(sym.capitalize(), charge, hydrogens)

    @classmethod
    def of(cls, atom: "Chem.Atom", bonds: BondMode) -> "AtomType":
        """The type of an RDKit atom under a bond mode."""
        hydrogens = None
        special = atom.GetSymbol() != "C" or atom.GetFormalCharge() != 0
        if bonds == "aromatic" and atom.GetIsAromatic() and special and atom.GetTotalNumHs() > 0:
            hydrogens = atom.GetTotalNumHs()
        return cls(atom.GetSymbol(), atom.GetFormalCharge(), hydrogens)


# -- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoleculeSpec:
    """How molecules map to graphs: the atom vocabulary, hydrogens, bond mode, size limit.

    Attributes:
        atom_types: atom type tokens; node feature ``x`` indexes this tuple.
        explicit_hydrogens: hydrogens are nodes (type ``"H"``) instead of implicit.
        bonds: ``"kekulize"`` (single / double / triple) or ``"aromatic"`` (adds aromatic).
        max_atoms: the largest number of nodes allowed (None: no limit).
    """

    atom_types: tuple[str, ...] = QM9_ATOM_TYPES
    explicit_hydrogens: bool = False
    bonds: BondMode = "kekulize"
    max_atoms: int | None = None
    _index: dict = field(init=False, repr=False, compare=False, hash=False)
    _parsed: tuple = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "atom_types", tuple(self.atom_types))
        if self.bonds not in get_args(BondMode):
            raise ValueError(f"bonds={self.bonds!r}; allowed: {', '.join(get_args(BondMode))}")
        if not self.atom_types:
            raise ValueError("atom_types is empty")
        if len(set(self.atom_types)) != len(self.atom_types):
            raise ValueError(f"atom_types has duplicates: {self.atom_types}")
        parsed = tuple(AtomType.parse(t) for t in self.atom_types)
        if self.explicit_hydrogens and AtomType("H") not in parsed:
            raise ValueError("explicit_hydrogens=True needs 'H' among atom_types")
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "_index", {p: i for i, p in enumerate(parsed)})

    # -- presets --------------------------------------------------------------------------

    @classmethod
    def qm9(cls, explicit_hydrogens: bool = False, charges: bool = True) -> "MoleculeSpec":
        """QM9: C, N, O, F (+ the charged N+, O-, N-, C- QM9 contains), up to 9 heavy atoms.

        ``charges=False`` gives DiGress / PARD's four types (charged molecules then fail
        to convert); with ``explicit_hydrogens`` ``"H"`` comes first (DiGress's order) and
        the limit is 29 atoms.
        """
        types = QM9_ATOM_TYPES if charges else QM9_ATOM_TYPES[:4]
        if explicit_hydrogens:
            return cls(("H",) + types, explicit_hydrogens=True, bonds="kekulize", max_atoms=29)
        return cls(types, explicit_hydrogens=False, bonds="kekulize", max_atoms=9)

    @classmethod
    def moses(cls, bonds: BondMode = "kekulize") -> "MoleculeSpec":
        """MOSES: C, N, S, O, F, Cl, Br, up to 27 heavy atoms (aromatic mode adds [nH])."""
        types = MOSES_ATOM_TYPES + (("[nH]",) if bonds == "aromatic" else ())
        return cls(types, bonds=bonds, max_atoms=27)

    @classmethod
    def infer(
        cls,
        molecules: Iterable["Chem.Mol | str"],
        *,
        explicit_hydrogens: bool = False,
        bonds: BondMode = "kekulize",
        max_atoms: int | None = None,
    ) -> "MoleculeSpec":
        """The smallest spec covering ``molecules`` (types in order of first appearance,
        ``max_atoms`` = the largest molecule unless given)."""
        seen: dict[str, None] = {}
        largest = 0
        for i, m in enumerate(molecules):
            mol = _prepare(_as_mol(m, i), explicit_hydrogens, bonds, i)
            largest = max(largest, mol.GetNumAtoms())
            for a in mol.GetAtoms():
                seen.setdefault(AtomType.of(a, bonds).token, None)
        if not seen:
            raise ValueError("cannot infer a spec from no molecules")
        return cls(tuple(seen), explicit_hydrogens, bonds, max_atoms if max_atoms is not None else largest)

    # -- sizes ----------------------------------------------------------------------------

    @property
    def num_atom_types(self) -> int:
        return len(self.atom_types)

    @property
    def num_bond_types(self) -> int:
        """Edge classes including "no bond": 4 (kekulize) or 5 (aromatic)."""
        return 4 if self.bonds == "kekulize" else 5

    def atom_type(self, index: int) -> AtomType:
        return self._parsed[index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "atom_types": list(self.atom_types),
            "explicit_hydrogens": self.explicit_hydrogens,
            "bonds": self.bonds,
            "max_atoms": self.max_atoms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MoleculeSpec":
        return cls(tuple(d["atom_types"]), bool(d.get("explicit_hydrogens", False)), d.get("bonds", "kekulize"), d.get("max_atoms"))

    # -- conversions ----------------------------------------------------------------------

    def to_graph(self, molecule: "Chem.Mol | str", *, index: int | None = None, check: bool = True) -> Data:
        """A molecule (RDKit Mol or SMILES) as a graph.

        Args:
            molecule: an RDKit ``Mol`` or a SMILES string.
            index: its position in a file or list, quoted in error messages.
            check: rebuild the molecule from the graph and verify that every atom gets
                its hydrogens back (raises :class:`UnrepresentableMoleculeError` if not).

        Returns:
            ``Data(x (N,), edge_index (2, 2M), edge_attr (2M,), num_nodes=N)``.
        """
        item = molecule if isinstance(molecule, str) else None
        mol = _prepare(_as_mol(molecule, index), self.explicit_hydrogens, self.bonds, index, item)
        n = mol.GetNumAtoms()
        if self.max_atoms is not None and n > self.max_atoms:
            raise MoleculeTooLargeError(
                f"has {n} {'atoms' if self.explicit_hydrogens else 'heavy atoms'}, more than max_atoms={self.max_atoms}; "
                "filter it out or use a spec with a larger max_atoms",
                index=index, item=item or _smiles_or_none(mol),
            )
        x = []
        for a in mol.GetAtoms():
            t = AtomType.of(a, self.bonds)
            if t not in self._index:
                raise UnknownAtomTypeError(
                    f"atom {a.GetIdx()} has type {t.token!r}, not in the vocabulary {list(self.atom_types)}; "
                    "remove the molecule or build the spec with MoleculeSpec.infer(...)",
                    index=index, item=item or _smiles_or_none(mol),
                )
            x.append(self._index[t])
        rows, cols, types = [], [], []
        for b in mol.GetBonds():
            bt = _BOND_INDEX.get(b.GetBondType())
            if bt is None or (bt == 4 and self.bonds == "kekulize"):
                raise UnsupportedBondError(
                    f"bond {b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()} has type {b.GetBondType()}, "
                    f"which bonds={self.bonds!r} cannot encode",
                    index=index, item=item or _smiles_or_none(mol),
                )
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            rows += [i, j]
            cols += [j, i]
            types += [bt, bt]
        edge_index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        edge_attr = torch.tensor(types, dtype=torch.long)
        order = (edge_index[0] * max(n, 1) + edge_index[1]).argsort()
        data = Data(x=torch.tensor(x, dtype=torch.long), edge_index=edge_index[:, order], edge_attr=edge_attr[order], num_nodes=n)
        if check:
            self._check_hydrogens(mol, data, index, item)
        return data

    def _check_hydrogens(self, mol, data: Data, index, item) -> None:
        try:
            rebuilt = self.to_mol(data)
        except MoleculeError as err:
            raise UnrepresentableMoleculeError(f"does not survive graph -> molecule: {err.reason}", index=index,
                                               item=item or _smiles_or_none(mol)) from None
        for a, b in zip(mol.GetAtoms(), rebuilt.GetAtoms()):
            if a.GetTotalNumHs() != b.GetTotalNumHs() or a.GetNumRadicalElectrons() != b.GetNumRadicalElectrons():
                raise UnrepresentableMoleculeError(
                    f"atom {a.GetIdx()} ({a.GetSymbol()}) has {a.GetTotalNumHs()} H and {a.GetNumRadicalElectrons()} "
                    f"radical electrons, but its graph gives {b.GetTotalNumHs()} H; unusual valences, radicals and "
                    "explicit [XH] atoms cannot be encoded (use explicit_hydrogens=True or drop the molecule)",
                    index=index, item=item or _smiles_or_none(mol),
                )

    def to_mol(self, graph: Data, *, sanitize: bool = True) -> "Chem.Mol":
        """A graph back to an RDKit ``Mol`` (sanitized unless ``sanitize=False``).

        Raises :class:`MoleculeError` when the graph is not a valid molecule (valence,
        kekulization); use :mod:`sciogen.molecules.metrics` to *score* generated graphs.
        """
        x = graph.x.view(-1).tolist()
        ei = graph.edge_index.tolist()
        ea = graph.edge_attr.view(-1).tolist()
        bonds = {}
        for (i, j), t in zip(zip(ei[0], ei[1]), ea):
            if i != j and t:
                bonds[(min(i, j), max(i, j))] = int(t)
        mol = build_mol(x, bonds, self, relaxed=False)
        if sanitize:
            try:
                Chem.SanitizeMol(mol)
            except Exception as err:  # RDKit raises several ValueError subclasses
                raise MoleculeError(f"the graph is not a valid molecule: {err}") from None
        return mol

    def to_smiles(self, graph: Data) -> str:
        """Canonical SMILES of a graph (hydrogens implicit, no stereo)."""
        return canonical_smiles(self.to_mol(graph))

    def to_graphs(self, molecules: Sequence["Chem.Mol | str"], *, check: bool = True) -> list[Data]:
        """:meth:`to_graph` over a list; errors name the position in the list."""
        return [self.to_graph(m, index=i, check=check) for i, m in enumerate(molecules)]


# -- building molecules from types (used by to_mol and by the metrics) ------------------------

_ATOM_VALENCY = {6: 4, 7: 3, 8: 2, 9: 1, 15: 3, 16: 2, 17: 1, 35: 1, 53: 1}  # DiGress / GDSS
_VALENCE_MSG = re.compile(r"#\s*(\d+)\s+\w+,\s*(\d+)")


def build_mol(atoms: Sequence[int], bonds: dict[tuple[int, int], int], spec: MoleculeSpec, relaxed: bool = False) -> "Chem.RWMol":
    """An unsanitized RWMol from atom type indices and ``{(i, j): bond type}`` (i < j).

    With ``relaxed=True``, DiGress's relaxed rule (Vignac et al. 2023, from GDSS): bonds are
    added in row-major order of the upper triangle; after each, if the first atom whose
    valence is exceeded is a neutral N, O or S over its usual valence by exactly one, it
    gets a +1 formal charge.
    """
    mol = Chem.RWMol()
    limits, valence = [], []
    for t in atoms:
        at = spec.atom_type(int(t))
        a = Chem.Atom(at.symbol)
        if at.charge:
            a.SetFormalCharge(at.charge)
        if at.hydrogens is not None:
            a.SetNumExplicitHs(at.hydrogens)
            a.SetIsAromatic(True)
        if spec.explicit_hydrogens and at.symbol != "H":
            a.SetNoImplicit(True)
        mol.AddAtom(a)
        limits.append(_valence_floor(a.GetAtomicNum(), at.charge))
        valence.append(float(at.hydrogens or 0))
    pending = False
    for (i, j) in sorted(bonds):
        t = bonds[(i, j)]
        mol.AddBond(i, j, BOND_TYPES[t])
        if t == 4:
            mol.GetBondBetweenAtoms(i, j).SetIsAromatic(True)
            mol.GetAtomWithIdx(i).SetIsAromatic(True)
            mol.GetAtomWithIdx(j).SetIsAromatic(True)
        order = BOND_ORDERS[t]
        valence[i] += order
        valence[j] += order
        # RDKit is asked only when some atom may exceed its valence (exactness kept: a
        # conservative floor of the allowed valence decides when to ask)
        if relaxed and (pending or t == 4 or valence[i] > limits[i] or valence[j] > limits[j]):
            pending = _relax_charge(mol)
    return mol


_PT = Chem.GetPeriodicTable()


def _valence_floor(atomic_num: int, charge: int) -> float:
    """A lower bound of the largest valence RDKit allows (inf when any valence is allowed)."""
    best = float("inf")
    for z in {atomic_num, atomic_num - charge}:
        if z < 1:
            continue
        allowed = list(_PT.GetValenceList(z))
        if -1 in allowed:
            continue
        best = min(best, float(max(allowed)))
    return best


def max_valences(spec: "MoleculeSpec") -> list[float]:
    """The largest total bond order each atom type of ``spec`` can carry in a valid molecule.

    The largest valence RDKit allows the element, or for a charged atom its isoelectronic
    neutral element (``[N+]`` 4 like C, ``[O-]`` 1 like F, ``[C-]`` 3 like N), minus the
    type's fixed hydrogens (``[nH]``); infinity where RDKit sets no limit.
    """
    out = []
    for token in spec.atom_types:
        at = AtomType.parse(token)
        z = _PT.GetAtomicNumber(at.symbol) - at.charge
        allowed = list(_PT.GetValenceList(z)) if z >= 1 else [-1]
        limit = float("inf") if -1 in allowed else float(max(allowed))
        out.append(limit - float(at.hydrogens or 0))
    return out


def _relax_charge(mol: "Chem.RWMol") -> bool:
    """DiGress's rule on the first valence problem; True if RDKit found a problem."""
    problems = Chem.DetectChemistryProblems(mol, Chem.SanitizeFlags.SANITIZE_PROPERTIES)
    if not problems:
        return False
    if problems[0].GetType() != "AtomValenceException":
        return True
    idx = problems[0].GetAtomIdx()
    atom = mol.GetAtomWithIdx(idx)
    m = _VALENCE_MSG.search(problems[0].Message())
    valence = int(m.group(2)) if m else int(round(sum(b.GetBondTypeAsDouble() for b in atom.GetBonds())))
    an = atom.GetAtomicNum()
    if an in (7, 8, 16) and atom.GetFormalCharge() == 0 and valence - _ATOM_VALENCY[an] == 1:
        atom.SetFormalCharge(1)
    return True


# -- helpers ----------------------------------------------------------------------------------


def parse_smiles(smiles: str, *, index: int | None = None) -> "Chem.Mol":
    """``Chem.MolFromSmiles`` that raises :class:`SmilesParseError` naming the string."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise SmilesParseError("empty or non-string SMILES", index=index, item=smiles if isinstance(smiles, str) else repr(smiles))
    mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        raise SmilesParseError("RDKit cannot parse or sanitize this SMILES", index=index, item=smiles)
    return mol


def canonical_smiles(mol: "Chem.Mol | str", *, isomeric: bool = False) -> str:
    """RDKit canonical SMILES with hydrogens implicit (stereo dropped unless ``isomeric``)."""
    if isinstance(mol, str):
        mol = parse_smiles(mol)
    if any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        mol = Chem.RemoveHs(mol, sanitize=False)
    return Chem.MolToSmiles(mol, isomericSmiles=isomeric)


def _as_mol(molecule, index):
    if isinstance(molecule, str):
        return parse_smiles(molecule, index=index)
    if not isinstance(molecule, Chem.Mol):
        raise TypeError(f"expected an RDKit Mol or a SMILES string, got {type(molecule).__name__}")
    return molecule


def _prepare(mol, explicit_hydrogens: bool, bonds: BondMode, index, item=None):
    mol = Chem.Mol(mol)
    try:
        if explicit_hydrogens:
            mol = Chem.AddHs(mol)
        else:
            mol = Chem.RemoveHs(mol)
        if bonds == "kekulize":
            Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception as err:  # kekulization / valence errors of user-built molecules
        raise SmilesParseError(f"RDKit cannot process this molecule: {err}", index=index, item=item) from None
    return mol


def _smiles_or_none(mol) -> str | None:
    try:
        return Chem.MolToSmiles(mol)
    except Exception:  # pragma: no cover - only for messages
        return None


# -- dense batches ----------------------------------------------------------------------------


def to_dense(graphs: Batch | Sequence[Data], max_atoms: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Graphs as dense tensors for a model.

    Shapes:
        X (B, N) long atom types (0 at padding), E (B, N, N) long bond types (0 = no
        bond, symmetric, zero diagonal), mask (B, N) bool real atoms; N = ``max_atoms`` or
        the largest graph.
    """
    batch = graphs if isinstance(graphs, Batch) else Batch.from_data_list(list(graphs))
    X, mask = to_dense_batch(batch.x.view(-1), batch.batch, fill_value=0, max_num_nodes=max_atoms)
    E = to_dense_adj(batch.edge_index, batch.batch, batch.edge_attr.view(-1), max_num_nodes=X.shape[1]).long()
    return X.long(), E, mask


def from_dense(X: torch.Tensor, E: torch.Tensor, mask: torch.Tensor | None = None) -> list[Data]:
    """Dense (B, N), (B, N, N) tensors (and a (B, N) mask) back to a list of graphs.

    Only the upper triangle of E is read (diagonal ignored), so a non-symmetric model
    output is made symmetric as DiGress does.
    """
    if mask is None:
        mask = torch.ones_like(X, dtype=torch.bool)
    out = []
    for b in range(X.shape[0]):
        n = int(mask[b].sum())
        keep = mask[b].nonzero().view(-1)
        e = torch.triu(E[b][keep][:, keep], diagonal=1)
        i, j = e.nonzero(as_tuple=True)
        t = e[i, j]
        ei = torch.cat([torch.stack([i, j]), torch.stack([j, i])], dim=1)
        ea = torch.cat([t, t])
        order = (ei[0] * max(n, 1) + ei[1]).argsort()
        out.append(Data(x=X[b][keep].long().cpu(), edge_index=ei[:, order].cpu(), edge_attr=ea[order].long().cpu(), num_nodes=n))
    return out
