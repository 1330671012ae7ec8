"""3D molecule datasets: QM9 with hydrogens and DFT geometries (DiGress split), and your own XYZ / SDF files.

:func:`load_qm9_3d` returns padded tensors (:class:`Molecules3DDataset`): element indices,
formal charges, positions in Å centred at their mean (EDM's zero centre of mass, unweighted),
a mask, the six DFT properties and the atom-count histogram EDM samples molecule sizes
from. It reads either qm9pack's ``qm9_part1..3.csv`` (the registry's files, see
``sciogen/datasets/qm9.yaml``; columns ``Index``, ``SMILES``, ``Elements``, ``XYZ_Ang`` and the
properties) or a ``qm9_xyz.csv[.gz]`` table (columns ``gdb_index``, ``smiles``, ``elements``
space separated, ``xyz_angstrom`` flattened x y z per atom) with an optional
``qm9_properties.csv.gz`` beside it (``gdb_index``, ``smiles``, ``mu_debye``, ``alpha_bohr3``,
``homo_hartree``, ``lumo_hartree``, ``gap_hartree``, ``cv_cal_mol_k``), joined by ``gdb_index``.

The split is the 2D QM9's (:func:`sciogen.molecules.datasets.qm9_split`). QM9's geometries
carry no formal charges; for the molecules whose SMILES has some, each charge is put on
its atom by matching the SMILES (hydrogens added) onto the bonds of the geometry.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, get_args

import numpy as np
import torch
from rdkit import Chem
from torch_geometric.data import Data

from sciogen.molecules.datasets import _QM9PACK_COLUMNS, _SHARED_COLUMNS, QM9_PROPERTIES, qm9_split
from sciogen.molecules.io import MoleculeRecords, OnError, Skipped, _base_suffix, _check_on_error, _open_text, _sdf_blocks
from sciogen.molecules.representation import MoleculeError

from .representation import (
    BondMethod,
    ElementVocabulary,
    Molecule3D,
    NoConformerError,
    _edm_orders_np,
    arrays_to_mol,
    from_xyz_block,
    heavy_smiles,
    mol_to_arrays,
    to_pyg,
)

__all__ = [
    "Molecules3DDataset",
    "QM9_PACK_FILES",
    "read_qm9_xyz",
    "read_qm9pack",
    "read_qm9_properties",
    "formal_charges",
    "load_qm9_3d",
    "atom_count_histogram",
    "sample_atom_counts",
    "from_mols",
    "read_xyz",
    "read_sdf3d",
    "read_molecules3d",
]

Split = Literal["train", "val", "test"]
QM9_PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_CACHE_VERSION = "molecules3d-qm9-v1"
_ELEMENT = re.compile(r"[A-Z][a-z]?")


@dataclass
class Molecules3DDataset:
    """Molecules as padded tensors.

    Attributes:
        types: (M, N) long element indices in ``vocabulary`` (0 at padding).
        charges: (M, N) long formal charges.
        positions: (M, N, 3) float32, Å, each molecule centred at the mean of its atoms.
        mask: (M, N) bool, real atoms.
        ids: (M,) long, the molecule's id in its source (QM9 ``gdb_index``).
        smiles: the source's SMILES.
        properties: (M, P) float64 or None; ``property_names`` its columns.
        skipped: molecules left out, with the reason.
    """

    name: str
    split: str
    vocabulary: ElementVocabulary
    types: torch.Tensor
    charges: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    ids: torch.Tensor
    smiles: list[str]
    properties: torch.Tensor | None = None
    property_names: tuple[str, ...] = ()
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return self.types.shape[0]

    @property
    def num_atoms(self) -> torch.Tensor:
        """(M,) long atoms per molecule."""
        return self.mask.sum(1)

    def molecule(self, i: int) -> Molecule3D:
        keep = self.mask[i]
        return Molecule3D(self.types[i, keep], self.charges[i, keep], self.positions[i, keep])

    def __getitem__(self, i: int) -> Data:
        """Molecule ``i`` as a PyG ``Data`` (:func:`~.representation.to_pyg`) with ``y`` (1, P), ``idx``, ``smiles``."""
        m = self.molecule(i)
        data = to_pyg(m.types, m.positions, m.charges, self.vocabulary)
        if self.properties is not None:
            data.y = self.properties[i].float().view(1, -1)
        data.idx, data.smiles = int(self.ids[i]), self.smiles[i]
        return data

    def __iter__(self) -> Iterator[Data]:
        return (self[i] for i in range(len(self)))

    def to_mol(self, i: int, method: BondMethod = "hueckel") -> "Chem.Mol":
        """Molecule ``i`` as an RDKit Mol, bonds perceived from its geometry."""
        m = self.molecule(i)
        return arrays_to_mol(m.types, m.positions, m.charges, self.vocabulary, method=method, index=i)

    def atom_count_histogram(self) -> torch.Tensor:
        """(N + 1,) long: how many molecules have n atoms (EDM's ``n_nodes``)."""
        return atom_count_histogram(self.num_atoms, self.types.shape[1])


def atom_count_histogram(num_atoms: torch.Tensor | Sequence[int], max_atoms: int | None = None) -> torch.Tensor:
    """(max_atoms + 1,) long counts of molecules per atom count."""
    n = torch.as_tensor(num_atoms).long().view(-1)
    size = int(max_atoms if max_atoms is not None else (n.max() if n.numel() else 0)) + 1
    if n.numel() and int(n.max()) >= size:
        raise ValueError(f"a molecule has {int(n.max())} atoms, more than max_atoms={size - 1}")
    return torch.bincount(n, minlength=size)


def sample_atom_counts(histogram: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) long atom counts drawn from a histogram (EDM's ``DistributionNodes``)."""
    h = torch.as_tensor(histogram, dtype=torch.float64)
    if h.dim() != 1 or not (h >= 0).all() or h.sum() <= 0:
        raise ValueError("the histogram must be a 1D tensor of non-negative counts with a positive total")
    return torch.multinomial(h, n, replacement=True, generator=generator)


# -- reading QM9's geometries -----------------------------------------------------------------


def _floats(text: str, what: str) -> np.ndarray:
    values = np.array(re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text), dtype=np.float64)
    if values.size % 3:
        raise ValueError(f"{what}: {values.size} coordinates, not a multiple of 3")
    return values.reshape(-1, 3)


def _table(rows: list[tuple[int, str, list[str], np.ndarray, list[float] | None]]) -> dict[str, Any]:
    rows.sort(key=lambda r: r[0])
    out: dict[str, Any] = {
        "gdb_index": np.array([r[0] for r in rows], dtype=np.int64),
        "smiles": [r[1] for r in rows],
        "elements": [r[2] for r in rows],
        "positions": [r[3] for r in rows],
    }
    if rows and rows[0][4] is not None:
        out["properties"] = np.array([r[4] for r in rows], dtype=np.float64)
    return out


def read_qm9_xyz(path: str | Path, *, ids: set[int] | None = None) -> dict[str, Any]:
    """A ``qm9_xyz.csv[.gz]`` table (see the module docstring), sorted by ``gdb_index``.

    Returns:
        ``gdb_index`` (n,) int64, ``smiles`` list, ``elements`` list of symbol lists,
        ``positions`` list of (n_atoms, 3) float64 arrays in Å; only rows in ``ids`` if given.

    Raises:
        ValueError: a row whose elements and coordinates disagree (file and line named).
    """
    path = Path(path)
    rows = []
    with _open_text(path) as handle:
        header = next(csv.reader([handle.readline()]), [])
        _require_columns(header, ("gdb_index", "smiles", "elements", "xyz_angstrom"), path)
        col = {name: header.index(name) for name in ("gdb_index", "smiles", "elements", "xyz_angstrom")}
        for line, text in enumerate(handle, 2):
            if not text.strip():
                continue
            head = text.split(",", 1)[0] if col["gdb_index"] == 0 else ""
            if ids is not None and head.isdigit() and int(head) not in ids:  # skip unwanted rows unparsed
                continue
            r = next(csv.reader([text]))
            if len(r) != len(header):
                raise ValueError(f"{path}, line {line}: {len(r)} fields, the header has {len(header)}")
            try:
                gdb = int(r[col["gdb_index"]])
            except ValueError:
                raise ValueError(f"{path}, line {line}: gdb_index {r[col['gdb_index']]!r} is not an integer") from None
            if ids is not None and gdb not in ids:
                continue
            rows.append(_row(gdb, r[col["smiles"]], r[col["elements"]].split(), r[col["xyz_angstrom"]], None, f"{path}, line {line}"))
    return _table(rows)


def read_qm9pack(files: Sequence[str | Path] | str | Path, *, ids: set[int] | None = None) -> dict[str, Any]:
    """qm9pack's ``qm9_part*.csv`` (a folder or the files): as :func:`read_qm9_xyz`, plus
    ``properties`` (n, 6) in :data:`~sciogen.molecules.datasets.QM9_PROPERTIES` order."""
    if isinstance(files, (str, Path)) and Path(files).is_dir():
        files = sorted(Path(files).glob("qm9_part*.csv"))
        if not files:
            raise FileNotFoundError("no qm9_part*.csv in the folder")
    files = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    csv.field_size_limit(1 << 26)
    rows = []
    for path in files:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            _require_columns(reader.fieldnames, ("Index", "SMILES", "Elements", "XYZ_Ang", *_QM9PACK_COLUMNS.values()), path)
            for line, r in enumerate(reader, 2):
                gdb = int(r["Index"])
                if ids is not None and gdb not in ids:
                    continue
                props = [float(r[_QM9PACK_COLUMNS[p]]) for p in QM9_PROPERTIES]
                rows.append(_row(gdb, r["SMILES"], _ELEMENT.findall(r["Elements"]), r["XYZ_Ang"], props, f"{path}, row {line}"))
    return _table(rows)


def _row(gdb: int, smiles: str, elements: list[str], xyz: str, props, where: str):
    positions = _floats(xyz, where)
    if len(elements) != len(positions) or not elements:
        raise ValueError(f"{where} (gdb_index {gdb}): {len(elements)} elements but {len(positions)} positions")
    return gdb, smiles, elements, positions, props


def _require_columns(found: Sequence[str] | None, needed: Sequence[str], path: Path) -> None:
    missing = [c for c in needed if c not in (found or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(found or [])}")


def read_qm9_properties(path: str | Path) -> dict[int, np.ndarray]:
    """A ``qm9_properties.csv[.gz]`` table: ``gdb_index`` -> (6,) float64 (mu D, alpha bohr^3,
    HOMO, LUMO, gap hartree, Cv cal/mol/K)."""
    path = Path(path)
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        _require_columns(reader.fieldnames, ("gdb_index", *_SHARED_COLUMNS.values()), path)
        return {int(r["gdb_index"]): np.array([float(r[_SHARED_COLUMNS[p]]) for p in QM9_PROPERTIES]) for r in reader}


# -- formal charges from the SMILES -----------------------------------------------------------


def _generic(mol: "Chem.Mol") -> "Chem.Mol":
    """Elements and single bonds only (no charges, aromaticity, hydrogens counts)."""
    rw = Chem.RWMol(mol)
    for a in rw.GetAtoms():
        a.SetFormalCharge(0)
        a.SetIsAromatic(False)
        a.SetNoImplicit(True)
        a.SetNumExplicitHs(0)
    for b in rw.GetBonds():
        b.SetBondType(Chem.BondType.SINGLE)
        b.SetIsAromatic(False)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(out)
    return out


def _connectivity(symbols: list[str], xyz: np.ndarray, hueckel: bool) -> "Chem.Mol":
    rw = Chem.RWMol()
    for s in symbols:
        rw.AddAtom(Chem.Atom(s))
    if hueckel:
        from rdkit.Chem import rdDetermineBonds

        from .representation import _quiet_stderr

        conf = Chem.Conformer(len(symbols))
        for k, p in enumerate(xyz.tolist()):
            conf.SetAtomPosition(k, p)
        rw.AddConformer(conf, assignId=True)
        mol = rw.GetMol()
        with _quiet_stderr():
            rdDetermineBonds.DetermineConnectivity(mol, useHueckel=True)
        return _generic(mol)
    orders = _edm_orders_np(symbols, xyz)
    for i, j in zip(*np.nonzero(np.triu(orders, 1))):
        rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    return _generic(rw.GetMol())


def formal_charges(smiles: str, symbols: list[str], xyz: np.ndarray) -> np.ndarray:
    """Formal charges of the atoms of a geometry, taken from its SMILES.

    The SMILES (hydrogens added) is matched, as a graph of elements, onto the bonds of the
    geometry (EDM's bond-length table, else extended-Hückel connectivity).

    Raises:
        ValueError: the SMILES does not parse, or its graph does not fit the geometry's.
    """
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        raise ValueError("the SMILES does not parse")
    if not any(a.GetFormalCharge() for a in template.GetAtoms()):
        return np.zeros(len(symbols), dtype=np.int64)
    template = Chem.AddHs(template)
    charges = [a.GetFormalCharge() for a in template.GetAtoms()]
    query = _generic(template)
    if query.GetNumAtoms() != len(symbols):
        raise ValueError(f"the SMILES has {query.GetNumAtoms()} atoms with hydrogens, the geometry {len(symbols)}")
    for hueckel in (False, True):
        target = _connectivity(symbols, xyz, hueckel)
        if target.GetNumBonds() != query.GetNumBonds():
            continue
        match = target.GetSubstructMatch(query)
        if len(match) == len(symbols):
            out = np.zeros(len(symbols), dtype=np.int64)
            out[list(match)] = charges
            return out
    raise ValueError("the SMILES's bonds do not match the bonds perceived from the geometry")


# -- QM9 --------------------------------------------------------------------------------------


def _qm9_source(path: str | Path | None, download: bool) -> tuple[str, list[Path]]:
    """("xyz", [table (+ properties)]) or ("qm9pack", parts)."""
    from sciogen.data import cache_dir, fetch

    if path is not None:
        path = Path(path)
        if path.is_file():
            props = path.parent / "qm9_properties.csv.gz"
            return "xyz", [path] + ([props] if props.is_file() else [])
        if not path.is_dir():
            raise FileNotFoundError(f"no such file or folder: {path}")
        for name in ("qm9_xyz.csv.gz", "qm9_xyz.csv"):
            if (path / name).is_file():
                return _qm9_source(path / name, False)
        parts = sorted(path.glob("qm9_part*.csv"))
        if parts:
            return "qm9pack", parts
        raise FileNotFoundError(f"{path} holds neither qm9_xyz.csv[.gz] nor qm9pack's qm9_part1..3.csv")
    folder = cache_dir() / "qm9"
    if all((folder / f).is_file() for f in QM9_PACK_FILES):
        return "qm9pack", [folder / f for f in QM9_PACK_FILES]
    try:  # an installed qm9pack ships the same files
        import importlib.resources

        data = Path(str(importlib.resources.files("qm9pack") / "data"))
        if all((data / f).is_file() for f in QM9_PACK_FILES):
            return "qm9pack", [data / f for f in QM9_PACK_FILES]
    except ModuleNotFoundError:
        pass
    if not download:
        raise FileNotFoundError(
            f"QM9 is not in the dataset cache ({folder}): pass download=True (add --download to the sciogen command) to "
            "fetch qm9pack's wheel (~104 MB, checksummed), `pip install qm9pack`, or give path= (a folder with "
            "qm9_part1..3.csv, or a qm9_xyz.csv[.gz] table)"
        )
    folder = fetch("qm9", files=list(QM9_PACK_FILES))
    return "qm9pack", [folder / f for f in QM9_PACK_FILES]


def _read_source(kind: str, files: list[Path], ids: set[int] | None) -> dict[str, Any]:
    if kind == "qm9pack":
        return read_qm9pack(files, ids=ids)
    table = read_qm9_xyz(files[0], ids=ids)
    if len(files) > 1:
        props = read_qm9_properties(files[1])
        missing = [int(g) for g in table["gdb_index"] if int(g) not in props]
        if missing:
            raise ValueError(f"{files[1]} has no properties for gdb_index {missing[0]} (and {len(missing) - 1} more)")
        table["properties"] = np.array([props[int(g)] for g in table["gdb_index"]], dtype=np.float64).reshape(-1, len(QM9_PROPERTIES))
    return table


def _tensors(table: dict[str, Any], vocabulary: ElementVocabulary, source: str) -> dict[str, Any]:
    """Padded tensors of a QM9 table; unusable molecules go to ``skipped`` (index, SMILES, reason)."""
    from sciogen.train.progress import preparing

    kept, skipped = [], []
    rows = preparing(range(len(table["smiles"])), len(table["smiles"]), f"{source} 3D molecules")
    for k in rows:
        smiles, symbols, xyz = table["smiles"][k], table["elements"][k], table["positions"][k]
        try:
            charges = formal_charges(smiles, symbols, xyz)
        except ValueError as err:
            skipped.append((int(table["gdb_index"][k]), smiles, f"formal charges: {err}"))
            continue
        keep = [i for i, s in enumerate(symbols) if s != "H" or vocabulary.hydrogens]
        unknown = [symbols[i] for i in keep if symbols[i] not in vocabulary.elements]
        if unknown:
            skipped.append((int(table["gdb_index"][k]), smiles, f"element {unknown[0]} is outside the vocabulary"))
            continue
        if vocabulary.max_atoms is not None and len(keep) > vocabulary.max_atoms:
            skipped.append((int(table["gdb_index"][k]), smiles, f"{len(keep)} atoms, more than max_atoms={vocabulary.max_atoms}"))
            continue
        kept.append((k, [vocabulary.index(symbols[i]) for i in keep], charges[keep], xyz[keep]))
    n_max = vocabulary.max_atoms or max((len(t) for _, t, _, _ in kept), default=0)
    m = len(kept)
    types = torch.zeros(m, n_max, dtype=torch.long)
    charges = torch.zeros(m, n_max, dtype=torch.long)
    positions = torch.zeros(m, n_max, 3, dtype=torch.float32)
    mask = torch.zeros(m, n_max, dtype=torch.bool)
    for b, (_, t, q, x) in enumerate(kept):
        n = len(t)
        types[b, :n], charges[b, :n], mask[b, :n] = torch.tensor(t), torch.as_tensor(q), True
        positions[b, :n] = torch.as_tensor(x - x.mean(0), dtype=torch.float32)
    rows = [k for k, _, _, _ in kept]
    out = {
        "types": types, "charges": charges, "positions": positions, "mask": mask,
        "ids": torch.as_tensor(table["gdb_index"][rows], dtype=torch.long),
        "smiles": [table["smiles"][k] for k in rows],
        "skipped": [list(s) for s in skipped],
    }
    if "properties" in table:
        out["properties"] = torch.as_tensor(table["properties"][rows], dtype=torch.float64)
    return out


def _cached_tensors(kind: str, files: list[Path], vocabulary: ElementVocabulary, cache: bool | str | Path) -> dict[str, Any]:
    from sciogen.data import TensorCache, content_key, sha256sum

    build = lambda: _tensors(_read_source(kind, files, None), vocabulary, "qm9")  # noqa: E731
    if cache is False:
        return build()
    key = content_key([_CACHE_VERSION, kind, json.dumps(vocabulary.to_dict()), *(sha256sum(f) for f in files)])
    store = TensorCache("molecules3d", "qm9", root=None if cache is True else cache)
    return store.get(key, build)


def load_qm9_3d(
    split: Split = "train",
    *,
    path: str | Path | None = None,
    vocabulary: ElementVocabulary | None = None,
    properties: bool | None = None,
    limit: int | None = None,
    download: bool = False,
    cache: bool | str | Path = True,
) -> Molecules3DDataset:
    """One split of QM9 in 3D (DiGress / PARD split, as :func:`sciogen.molecules.load_qm9`).

    Args:
        split: ``"train"`` (97,734 of the 130,831 molecules), ``"val"`` or ``"test"``.
        path: a folder with qm9pack's ``qm9_part1..3.csv`` or a ``qm9_xyz.csv[.gz]`` table
            (or that file); else the dataset cache, an installed qm9pack, or a download.
        vocabulary: default :meth:`ElementVocabulary.qm9` (H, C, N, O, F; 29 atoms);
            ``ElementVocabulary.qm9(hydrogens=False)`` leaves hydrogens out.
        properties: attach the six DFT properties (None: when the source has them).
        limit: the first ``limit`` molecules of the split, in split order (read without the cache).
        cache: keep the prepared tensors of the whole table in ``$SCIOGEN_CACHE/molecules3d/qm9``
            (or a folder given here), keyed by the files' SHA-256; False to rebuild.

    Raises:
        FileNotFoundError: no QM9 copy found (the message says how to get one).
        ValueError: ``properties=True`` and the source has none; a malformed row.
    """
    if split not in get_args(Split):
        raise ValueError(f"split={split!r}; allowed: {', '.join(get_args(Split))}")
    vocabulary = vocabulary or ElementVocabulary.qm9()
    kind, files = _qm9_source(path, download)
    order = qm9_split()[split].tolist()
    if limit is not None:
        wanted = set(order[: max(limit, 0) * 2 + 64])  # ~2.3% of QM9's rows are missing: twice the rows is ample
        data = _tensors(_read_source(kind, files, wanted), vocabulary, "qm9")
    else:
        data = _cached_tensors(kind, files, vocabulary, cache)
    position = {int(g): b for b, g in enumerate(data["ids"].tolist())}
    rows = [position[g] for g in order if g in position][:limit]
    index = torch.as_tensor(rows, dtype=torch.long)
    props = data.get("properties")
    if properties and props is None:
        raise ValueError(f"properties=True but {files[0]} has no properties (put qm9_properties.csv.gz beside it)")
    keep_props = props is not None and properties is not False
    skipped = [Skipped(int(g), s, r) for g, s, r in data["skipped"]]
    if skipped:
        warnings.warn(f"qm9 3D: left out {len(skipped)} molecules of the table (first: {skipped[0]}); see .skipped", stacklevel=2)
    return Molecules3DDataset(
        "qm9", split, vocabulary, data["types"][index], data["charges"][index], data["positions"][index], data["mask"][index],
        data["ids"][index], [data["smiles"][r] for r in rows],
        props[index] if keep_props else None, QM9_PROPERTIES if keep_props else (), skipped,
    )


# -- your own molecules -----------------------------------------------------------------------


def from_mols(mols: Sequence["Chem.Mol"], vocabulary: ElementVocabulary | None = None, *, name: str = "user",
              on_error: Literal["raise", "skip"] = "raise") -> Molecules3DDataset:
    """Mols with 3D conformers (e.g. from :func:`read_molecules3d`) as a padded dataset.

    Raises:
        MoleculeError: a molecule that :func:`~.representation.mol_to_arrays` rejects (its
            index named), with ``on_error="raise"``; ``"skip"`` lists it in ``skipped``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; allowed: raise, skip")
    vocabulary = vocabulary or ElementVocabulary.qm9()
    table: dict[str, Any] = {"gdb_index": [], "smiles": [], "elements": [], "positions": [], "charges": []}
    skipped = []
    for i, mol in enumerate(mols):
        try:
            m = mol_to_arrays(mol, vocabulary, index=i)
        except MoleculeError as err:
            if on_error == "raise":
                raise
            skipped.append(Skipped(i, None, err.reason))
            continue
        table["gdb_index"].append(i)
        table["smiles"].append(heavy_smiles(mol) or "")
        table["elements"].append([vocabulary.elements[k] for k in m.types.tolist()])
        table["positions"].append(m.positions.double().numpy())
        table["charges"].append(m.charges)
    n_max = vocabulary.max_atoms or max((len(e) for e in table["elements"]), default=0)
    m_ = len(table["smiles"])
    out = {k: torch.zeros(m_, n_max, dtype=torch.long) for k in ("types", "charges")}
    positions = torch.zeros(m_, n_max, 3)
    mask = torch.zeros(m_, n_max, dtype=torch.bool)
    for b, (el, x, q) in enumerate(zip(table["elements"], table["positions"], table["charges"])):
        n = len(el)
        out["types"][b, :n] = torch.tensor([vocabulary.index(e) for e in el])
        out["charges"][b, :n], mask[b, :n] = q, True
        positions[b, :n] = torch.as_tensor(x - x.mean(0), dtype=torch.float32)
    if skipped:
        warnings.warn(f"{name}: skipped {len(skipped)} of {len(mols)} molecules (first: {skipped[0]}); see .skipped", stacklevel=2)
    return Molecules3DDataset(name, "all", vocabulary, out["types"], out["charges"], positions, mask,
                              torch.tensor(table["gdb_index"], dtype=torch.long), table["smiles"], skipped=skipped)


def _xyz_frames(path: Path) -> Iterator[tuple[int, str]]:
    """(first line, 1-based; text) of each frame of a multi-frame XYZ file."""
    with _open_text(path) as handle:
        lines = handle.read().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = lines[i].strip()
        n = int(head) if head.isdigit() else -1
        if n < 0:  # not a count line: hand the rest to from_xyz_block, which names the problem
            yield i + 1, "\n".join(lines[i:])
            return
        yield i + 1, "\n".join(lines[i : i + n + 2])
        i += n + 2


def read_xyz(path: str | Path, *, on_error: OnError = "raise", method: BondMethod | None = "hueckel", charge: int = 0) -> MoleculeRecords:
    """An XYZ file of one or more frames (``.gz`` allowed); bonds perceived by ``method``.

    Raises:
        MoleculeError: a frame that does not parse or whose bonds cannot be perceived
            (file, record and line named), with ``on_error="raise"``.
    """
    path = Path(path)
    return _collect(path, ((k, line, lambda b=block, k=k: from_xyz_block(b, method=method, charge=charge, index=k))
                           for k, (line, block) in enumerate(_xyz_frames(path))), on_error)


def read_sdf3d(path: str | Path, *, on_error: OnError = "raise") -> MoleculeRecords:
    """An SDF file with 3D coordinates, hydrogens kept (``.gz`` allowed).

    Raises:
        MoleculeError: a record RDKit cannot read or without 3D coordinates (file, record
            and line named), with ``on_error="raise"``.
    """
    path = Path(path)

    def parse(block: str, k: int):
        mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        if mol is None or mol.GetNumAtoms() == 0:
            raise MoleculeError("RDKit cannot read this SDF record (empty, or a bad atom / bond / valence)", index=k,
                                item=block.splitlines()[0].strip() if block.strip() else None)
        if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
            raise NoConformerError("the record has 2D coordinates; 3D ones are needed", index=k, item=_title(mol))
        return mol

    return _collect(path, ((k, line, lambda b=block, k=k: parse(b, k)) for k, (line, block) in enumerate(_sdf_blocks(path))), on_error)


def _title(mol) -> str | None:
    return mol.GetProp("_Name") if mol.HasProp("_Name") and mol.GetProp("_Name") else None


def _collect(path: Path, records, on_error: str) -> MoleculeRecords:
    _check_on_error(on_error)
    out = MoleculeRecords(source=str(path))
    for k, line, parse in records:
        where = f"record {k} (line {line})"
        try:
            mol = parse()
        except MoleculeError as err:
            if on_error == "raise":
                raise type(err)(f"{err.reason} [{where}]", index=err.index, item=err.item, source=str(path)) from None
            out.skipped.append(Skipped(k, err.item, err.reason, where))
            if on_error == "skip":
                continue
            mol = None
        out.mols.append(mol)
        out.indices.append(k)
        out.smiles.append(None if mol is None else heavy_smiles(mol))
        out.where.append(where)
    if out.skipped:
        warnings.warn(f"{path}: could not use {len(out.skipped)} records (first: {out.skipped[0]}); see .skipped", stacklevel=3)
    return out


def read_molecules3d(path: str | Path, *, on_error: OnError = "raise", **kwargs) -> MoleculeRecords:
    """Read 3D molecules by suffix: ``.xyz`` (:func:`read_xyz`), ``.sdf`` / ``.sd`` / ``.mol``
    (:func:`read_sdf3d`), optionally gzipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = _base_suffix(path)
    if suffix == ".xyz":
        return read_xyz(path, on_error=on_error, **kwargs)
    if suffix in (".sdf", ".sd", ".mol"):
        if kwargs:
            raise TypeError(f"read_sdf3d takes no {sorted(kwargs)} (an SDF file has its own bonds)")
        return read_sdf3d(path, on_error=on_error)
    raise ValueError(f"{path}: unknown 3D molecule file type {suffix!r}; use .xyz, .sdf, .sd or .mol (optionally .gz)")
