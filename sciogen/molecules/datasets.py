"""Molecule datasets: QM9 (DiGress / PARD split, with properties), MOSES, ZINC250k, user files.

Every loader takes ``path=`` (a local copy, whose files are checked against the dataset
card's SHA-256 where one is known) or downloads into ``$SCIOGEN_CACHE`` with
``download=True`` (see ``sciogen/datasets/*.yaml`` for URLs, checksums, licences and
citations). Loaders return a :class:`MoleculeDataset`: graphs (torch-geometric ``Data``,
see :mod:`sciogen.molecules.representation`) with their canonical SMILES, ids and,
for QM9, the regression targets ``y``.

QM9 split (DiGress, Vignac et al. 2023; PARD): the 133,885-row QM9 table is shuffled with
pandas ``sample(frac=1, random_state=42)`` — the same permutation as
``numpy.random.RandomState(42).permutation(133885)`` — then the first 100,000 rows are
train, the last ``int(0.1 * 133885)`` = 13,388 test and the 20,497 between validation;
the 3,054 "uncharacterized" molecules are not in the table, leaving 97,734 / 20,042 /
13,055 molecules (measured on the 130,831-molecule copy). Row r is the molecule ``gdb_index = r + 1``.
"""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

import numpy as np
import torch
from torch_geometric.data import Data

from .io import OnError, Skipped, _check_on_error
from .representation import MoleculeError, MoleculeSpec, canonical_smiles, parse_smiles

__all__ = [
    "MoleculeDataset",
    "QM9_PROPERTIES",
    "QM9_PROPERTY_UNITS",
    "QM9_NUM_ROWS",
    "qm9_split",
    "read_qm9_table",
    "load_qm9",
    "load_moses",
    "load_zinc250k",
    "from_smiles",
]

Split = Literal["train", "val", "test"]
QM9_NUM_ROWS = 133_885
QM9_PROPERTIES = ("mu", "alpha", "homo", "lumo", "gap", "cv")
QM9_PROPERTY_UNITS = {"mu": "D", "alpha": "bohr^3", "homo": "hartree", "lumo": "hartree", "gap": "hartree", "cv": "cal/(mol K)"}
# qm9pack column of each property
_QM9PACK_COLUMNS = {
    "mu": "Dipole_debye", "alpha": "Polarizability_bohr3", "homo": "HOMO_au", "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au", "cv": "Heatcapacity_Cv_cal_mol_K",
}
_SHARED_COLUMNS = {
    "mu": "mu_debye", "alpha": "alpha_bohr3", "homo": "homo_hartree", "lumo": "lumo_hartree",
    "gap": "gap_hartree", "cv": "cv_cal_mol_k",
}


@dataclass
class MoleculeDataset:
    """Graphs of one split, with their canonical SMILES and ids.

    Attributes:
        name, split: e.g. ``"qm9"``, ``"train"``.
        spec: the :class:`MoleculeSpec` that made the graphs.
        graphs: ``Data(x, edge_index, edge_attr, [y (1, P)])`` per molecule (empty when
            loaded with ``graphs=False``).
        smiles: canonical SMILES (hydrogens implicit, no stereo).
        ids: the molecule's id in its source (QM9 ``gdb_index``, else the row).
        property_names: the columns of ``y`` (QM9: mu, alpha, homo, lumo, gap, cv).
        skipped: records left out (``on_error="skip"``).
    """

    name: str
    split: str
    spec: MoleculeSpec
    graphs: list[Data]
    smiles: list[str]
    ids: list[int]
    property_names: tuple[str, ...] = ()
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.smiles)

    def __getitem__(self, i: int) -> Data:
        return self.graphs[i]

    def __iter__(self):
        return iter(self.graphs)


def _build(
    name: str, split: str, spec: MoleculeSpec, smiles: Sequence[str], ids: Sequence[int],
    y: np.ndarray | None, property_names: tuple[str, ...], on_error: str, source: str, graphs: bool,
) -> MoleculeDataset:
    _check_on_error(on_error)
    if on_error == "keep":
        raise ValueError("datasets take on_error='raise' or 'skip' ('keep' is for sample files)")
    from sciogen.train.progress import preparing

    out_graphs, out_smiles, out_ids, skipped = [], [], [], []
    rows = preparing(enumerate(zip(smiles, ids)), len(smiles) if graphs else 0, f"{source} molecules as graphs")
    for k, (s, i) in rows:
        try:
            mol = parse_smiles(s, index=k)
            can = canonical_smiles(mol)
            if not graphs:
                out_smiles.append(can)
                out_ids.append(int(i))
                continue
            g = spec.to_graph(mol, index=k)
        except MoleculeError as err:
            if on_error == "raise":
                raise err.located(source) from None
            skipped.append(Skipped(k, s, err.reason))
            continue
        if y is not None:
            g.y = torch.as_tensor(y[k], dtype=torch.float32).view(1, -1)
        g.smiles = can
        g.idx = int(i)
        out_graphs.append(g)
        out_smiles.append(can)
        out_ids.append(int(i))
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} of {len(smiles)} molecules (first: {skipped[0]}); see .skipped", stacklevel=3)
    return MoleculeDataset(name, split, spec, out_graphs, out_smiles, out_ids, property_names, skipped)


# -- QM9 --------------------------------------------------------------------------------------


def qm9_split(num_rows: int = QM9_NUM_ROWS, seed: int = 42, num_train: int = 100_000) -> dict[str, np.ndarray]:
    """DiGress / PARD's QM9 split as ``gdb_index`` arrays (1-based) of the full table."""
    perm = np.random.RandomState(seed).permutation(num_rows)
    num_test = int(0.1 * num_rows)
    num_val = num_rows - num_train - num_test
    rows = {"train": perm[:num_train], "val": perm[num_train : num_train + num_val], "test": perm[num_train + num_val :]}
    return {k: v + 1 for k, v in rows.items()}


def _qm9_folder(path: str | Path | None, download: bool) -> Path:
    from sciogen.data import cache_dir, fetch

    if path is not None:
        return Path(path)
    for folder in (cache_dir() / "qm9",):
        if (folder / "qm9_part1.csv").is_file() or (folder / "qm9_smiles.csv").is_file():
            return folder
    try:  # qm9pack installed: its package data is the same table
        import importlib.resources

        data = importlib.resources.files("qm9pack") / "data"
        if (data / "qm9_part1.csv").is_file():
            return Path(str(data))
    except ModuleNotFoundError:
        pass
    if not download:
        raise FileNotFoundError(
            f"QM9 is not in the dataset cache ({cache_dir() / 'qm9'}): add --download to the sciogen command "
            "(download=True in Python) to fetch it (the qm9pack wheel, ~104 MB, checksummed), `pip install "
            "qm9pack`, or pass path= / --set data.path=FOLDER (a folder with qm9_smiles.csv "
            "[+ qm9_properties.csv.gz] or qm9pack's qm9_part1..3.csv)"
        )
    return fetch("qm9", files=["qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"])


def read_qm9_table(path: str | Path | None = None, *, download: bool = False) -> dict[str, Any]:
    """The QM9 table: ``gdb_index`` (n,), ``smiles`` (n,) and ``properties`` (n, 6) float64.

    ``path``: a folder with ``qm9_smiles.csv`` and optionally ``qm9_properties.csv.gz``
    (the shared copy's layout), or with qm9pack's ``qm9_part1..3.csv``.
    """
    folder = _qm9_folder(path, download)
    if (folder / "qm9_smiles.csv").is_file():
        with open(folder / "qm9_smiles.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        table: dict[str, Any] = {"gdb_index": np.array([int(r["gdb_index"]) for r in rows]), "smiles": [r["smiles"] for r in rows]}
        props_file = folder / "qm9_properties.csv.gz"
        if props_file.is_file():
            with gzip.open(props_file, "rt", newline="") as handle:
                prow = {int(r["gdb_index"]): r for r in csv.DictReader(handle)}
            table["properties"] = np.array(
                [[float(prow[i][_SHARED_COLUMNS[p]]) for p in QM9_PROPERTIES] for i in table["gdb_index"]], dtype=np.float64
            )
        return table
    parts = sorted(folder.glob("qm9_part*.csv"))
    if not parts:
        raise FileNotFoundError(f"{folder} holds neither qm9_smiles.csv nor qm9pack's qm9_part*.csv")
    ids, smiles, props = [], [], []
    csv.field_size_limit(1 << 26)
    for part in parts:
        with open(part, newline="") as handle:
            for r in csv.DictReader(handle):
                ids.append(int(r["Index"]))
                smiles.append(r["SMILES"])
                props.append([float(r[_QM9PACK_COLUMNS[p]]) for p in QM9_PROPERTIES])
    order = np.argsort(ids, kind="stable")
    return {
        "gdb_index": np.asarray(ids)[order],
        "smiles": [smiles[i] for i in order],
        "properties": np.asarray(props, dtype=np.float64)[order],
    }


def load_qm9(
    split: Split = "train",
    *,
    path: str | Path | None = None,
    spec: MoleculeSpec | None = None,
    explicit_hydrogens: bool = False,
    properties: bool = True,
    on_error: OnError = "raise",
    download: bool = False,
    limit: int | None = None,
    graphs: bool = True,
) -> MoleculeDataset:
    """One split of QM9 (DiGress / PARD split, see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        path: local copy (see :func:`read_qm9_table`); else the cache, an installed
            qm9pack, or a download with ``download=True``.
        spec: default :meth:`MoleculeSpec.qm9` (heavy atoms, with charges).
        properties: attach ``y`` (1, 6): mu (D), alpha (bohr^3), HOMO, LUMO, gap
            (hartree), Cv (cal/mol/K).
        limit: only the first ``limit`` molecules of the split (in split order).
        graphs: False skips the graph conversion (only SMILES and ids; fast).
    """
    if split not in get_args(Split):
        raise ValueError(f"split={split!r}; allowed: {', '.join(get_args(Split))}")
    spec = spec or MoleculeSpec.qm9(explicit_hydrogens=explicit_hydrogens)
    table = read_qm9_table(path, download=download)
    position = {int(g): k for k, g in enumerate(table["gdb_index"])}
    rows = [position[g] for g in qm9_split()[split].tolist() if g in position]
    if limit is not None:
        rows = rows[:limit]
    y = table["properties"][rows] if properties and "properties" in table else None
    return _build(
        "qm9", split, spec, [table["smiles"][r] for r in rows], [int(table["gdb_index"][r]) for r in rows],
        y, QM9_PROPERTIES if y is not None else (), on_error, "qm9", graphs,
    )


# -- MOSES and ZINC250k ------------------------------------------------------------------------


def _dataset_folder(name: str, files: list[str], path, download: bool, allow_unverified: bool = False) -> Path:
    from sciogen.data import cache_dir, fetch

    if path is not None:
        return fetch(name, path=path, files=files)
    folder = cache_dir() / name
    if all((folder / f).is_file() for f in files):
        return folder
    if not download:
        raise FileNotFoundError(f"{name} is not in the dataset cache ({folder}): add --download to the sciogen "
                                "command (download=True in Python) to fetch it (checksummed), or pass path= (a local copy)")
    return fetch(name, files=files, allow_unverified=allow_unverified)


def _read_smiles_column(path: Path, column: str) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        return [r[column].strip() for r in csv.DictReader(handle)]


def load_moses(
    split: Literal["train", "test", "test_scaffolds"] = "train",
    *,
    path: str | Path | None = None,
    spec: MoleculeSpec | None = None,
    on_error: OnError = "raise",
    download: bool = False,
    limit: int | None = None,
    graphs: bool = True,
) -> MoleculeDataset:
    """MOSES train (1,584,663), test (176,074) or test_scaffolds (176,225).

    ``spec`` defaults to :meth:`MoleculeSpec.moses` (kekulized); use
    ``MoleculeSpec.moses("aromatic")`` for DiGress's aromatic bonds.
    """
    splits = ("train", "test", "test_scaffolds")
    if split not in splits:
        raise ValueError(f"split={split!r}; allowed: {', '.join(splits)}")
    file = f"{split}.csv.gz"
    folder = _dataset_folder("moses", [file], path, download)
    smiles = _read_smiles_column(folder / file, "SMILES")[:limit]
    return _build("moses", split, spec or MoleculeSpec.moses(), smiles, list(range(len(smiles))), None, (), on_error,
                  str(folder / file), graphs)


ZINC250K_ATOM_TYPES = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I", "[N+]", "[O-]", "[N-]", "[S-]", "[C-]", "[S+]", "[P+]", "[O+]")


def load_zinc250k(
    split: Literal["train", "test"] = "train",
    *,
    path: str | Path | None = None,
    spec: MoleculeSpec | None = None,
    on_error: OnError = "raise",
    download: bool = False,
    allow_unverified: bool = False,
    limit: int | None = None,
    graphs: bool = True,
) -> MoleculeDataset:
    """ZINC250k with the MoFlow / GDSS split (test = the 24,887 rows of ``valid_idx_zinc.json``).

    No copy is stored with sciogen; ``download=True`` fetches the chemical VAE's CSV from a
    pinned commit and checks it against the Git blob id that commit's tree lists (the file
    itself was not available to compute its SHA-256).
    ``spec`` defaults to C N O F P S Cl Br I with the charged forms ZINC250k uses, up to 38 heavy atoms.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; allowed: train, test")
    files = ["250k_rndm_zinc_drugs_clean_3.csv", "moflow_valid_idx_zinc250k.json"]
    folder = _dataset_folder("zinc250k", files, path, download, allow_unverified)
    smiles = _read_smiles_column(folder / files[0], "smiles")
    test = set(int(i) for i in json.loads((folder / files[1]).read_text()))
    rows = [i for i in range(len(smiles)) if (i in test) == (split == "test")][:limit]
    spec = spec or MoleculeSpec(ZINC250K_ATOM_TYPES, max_atoms=38)
    return _build("zinc250k", split, spec, [smiles[i] for i in rows], rows, None, (), on_error, str(folder / files[0]), graphs)


def from_smiles(
    smiles: Sequence[str], spec: MoleculeSpec | None = None, *, name: str = "user", on_error: OnError = "raise"
) -> MoleculeDataset:
    """A dataset from a list of SMILES (``spec`` inferred from them when not given)."""
    if spec is None:
        good = [s for s in smiles if isinstance(s, str) and _parses(s)]
        spec = MoleculeSpec.infer(good)
    return _build(name, "all", spec, list(smiles), list(range(len(smiles))), None, (), on_error, name, True)


def _parses(s: str) -> bool:
    from rdkit import Chem

    return Chem.MolFromSmiles(s) is not None
