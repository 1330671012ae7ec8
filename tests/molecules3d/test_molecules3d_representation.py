"""3D molecules <-> tensors / RDKit / PyG / XYZ / SDF: round trips on QM9 DFT geometries, bond perception, bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from sciogen.molecules import MoleculeTooLargeError, UnknownAtomTypeError, UnrepresentableMoleculeError
from sciogen.molecules3d import (
    BondPerceptionError,
    ElementVocabulary,
    NoConformerError,
    arrays_to_mol,
    edm_bond_orders,
    from_xyz_block,
    heavy_smiles,
    mol_to_arrays,
    read_molecules3d,
    to_pyg,
    to_sdf,
)

QM9 = ElementVocabulary.qm9()


def _dataset_smiles(smiles: str) -> str:
    return heavy_smiles(Chem.MolFromSmiles(smiles))


def _agreement(ds, method: str, n: int) -> float:
    ok = 0
    for i in range(n):
        try:
            ok += heavy_smiles(ds.to_mol(i, method=method)) == _dataset_smiles(ds.smiles[i])
        except BondPerceptionError:
            pass
    return ok / n


def _embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


# -- vocabulary -------------------------------------------------------------------------------


def test_vocabulary():
    assert QM9.elements == ("H", "C", "N", "O", "F") and QM9.max_atoms == 29 and QM9.hydrogens
    assert ElementVocabulary.qm9(hydrogens=False).elements == ("C", "N", "O", "F")
    assert QM9.atomic_numbers == (1, 6, 7, 8, 9)
    assert ElementVocabulary.from_dict(QM9.to_dict()) == QM9
    with pytest.raises(UnknownAtomTypeError, match="Cl is outside the vocabulary"):
        QM9.index("Cl")
    with pytest.raises(ValueError, match="'Xx' is not an element"):
        ElementVocabulary(("C", "Xx"))
    with pytest.raises(ValueError, match="repeated"):
        ElementVocabulary(("C", "C"))
    with pytest.raises(ValueError, match="max_atoms=0"):
        ElementVocabulary(("C",), 0)


# -- QM9 round trips --------------------------------------------------------------------------


def test_round_trip_keeps_types_charges_and_positions(qm9_1000):
    for i in range(0, 200, 7):
        m = qm9_1000.molecule(i)
        mol = arrays_to_mol(m.types, m.positions, m.charges, QM9, method="hueckel")
        back = mol_to_arrays(mol, QM9)
        assert torch.equal(back.types, m.types)
        assert torch.equal(back.positions, m.positions)  # float32 -> float64 conformer -> float32 is exact
        # charges are re-derived from the geometry: the same ones, up to resonance (which nitro O is [O-])
        assert sorted(back.charges.tolist()) == sorted(m.charges.tolist())


def test_smiles_recovered_from_dft_geometries(qm9_1000):
    # measured on all 130,831 molecules: hueckel 99.9 %, tables 99.2 %, edm 95.6 %, rdkit 94.9 %
    hueckel = _agreement(qm9_1000, "hueckel", 300)
    tables = _agreement(qm9_1000, "tables", 1000)
    edm = _agreement(qm9_1000, "edm", 1000)
    assert hueckel >= 0.995
    assert tables >= 0.985
    assert 0.93 <= edm < tables


def test_charged_qm9_molecules_round_trip(qm9_folder):
    from sciogen.molecules3d import read_qm9_xyz
    from sciogen.molecules3d.datasets import formal_charges

    table = read_qm9_xyz(qm9_folder / "qm9_xyz.csv.gz", ids=set(range(1, 4000)))
    charged = [k for k, s in enumerate(table["smiles"]) if "+" in s]
    assert len(charged) >= 5
    for k in charged[:5]:
        symbols, xyz = table["elements"][k], table["positions"][k]
        q = formal_charges(table["smiles"][k], symbols, xyz)
        assert q.sum() == 0 and (q != 0).any()
        mol = arrays_to_mol([QM9.index(s) for s in symbols], xyz, q, QM9, method="hueckel")
        # the same molecule, perhaps another resonance form ('CNC(=[NH2+])C(=O)[O-]' for 'C[NH+]=C(N)C(=O)[O-]')
        assert Chem.MolToInchi(mol, options="-SNon") == Chem.MolToInchi(Chem.MolFromSmiles(table["smiles"][k]), options="-SNon")
        assert sorted(mol_to_arrays(mol, QM9).charges.tolist()) == sorted(q.tolist())
        edm = arrays_to_mol([QM9.index(s) for s in symbols], xyz, q, QM9, method="edm", sanitize=False)
        assert [a.GetFormalCharge() for a in edm.GetAtoms()] == q.tolist()  # "edm" keeps the given charges


def test_vocabulary_without_hydrogens_drops_them():
    mol = _embedded("CC(=O)N")
    m = mol_to_arrays(mol, ElementVocabulary.qm9(hydrogens=False))
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    assert m.types.tolist() == [0, 0, 2, 1]
    assert torch.allclose(m.positions.double(), torch.as_tensor(mol.GetConformer().GetPositions()[heavy]))


# -- errors -----------------------------------------------------------------------------------


def test_mol_to_arrays_errors():
    with pytest.raises(NoConformerError, match="no conformer"):
        mol_to_arrays(Chem.AddHs(Chem.MolFromSmiles("CCO")))
    flat = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.Compute2DCoords(flat)
    with pytest.raises(NoConformerError, match="2D"):
        mol_to_arrays(flat)
    with pytest.raises(UnknownAtomTypeError, match=r"atom 1 is Cl, outside the vocabulary \(H, C, N, O, F\)"):
        mol_to_arrays(_embedded("CCl"), index=3)
    with pytest.raises(UnknownAtomTypeError, match="molecule 3"):
        mol_to_arrays(_embedded("CCl"), index=3)
    with pytest.raises(MoleculeTooLargeError, match="more than max_atoms=5"):
        mol_to_arrays(_embedded("CCO"), ElementVocabulary(QM9.elements, 5))
    implicit = _embedded("CCO")
    implicit = Chem.RemoveHs(implicit)
    with pytest.raises(UnrepresentableMoleculeError, match=r"atom 0 \(C\) carries 3 hydrogen.*AddHs"):
        mol_to_arrays(implicit)
    with pytest.raises(TypeError, match="RDKit Mol"):
        mol_to_arrays("CCO")


def test_arrays_to_mol_errors():
    x = torch.zeros(2, 3)
    x[1, 0] = 1.5
    with pytest.raises(UnknownAtomTypeError, match="atom 1 has type 7, outside 0..4"):
        arrays_to_mol([1, 7], x)
    with pytest.raises(ValueError, match=r"positions have shape \(2, 3\), expected \(3, 3\)"):
        arrays_to_mol([1, 1, 1], x)
    bad = x.clone()
    bad[0, 2] = float("nan")
    with pytest.raises(NoConformerError, match="atom 0 has NaN"):
        arrays_to_mol([1, 1], bad)
    with pytest.raises(ValueError, match="method='magic'"):
        arrays_to_mol([1, 1], x, method="magic")
    # a carbon with five hydrogens at 1.09 A: EDM's orders give it valence 5, which RDKit rejects
    d = np.eye(3) * 1.09
    pos = np.concatenate([[[0.0, 0, 0]], d, -d[:2]])
    with pytest.raises(BondPerceptionError, match="method='edm'"):
        arrays_to_mol([1, 0, 0, 0, 0, 0], pos, method="edm", index=4)


# -- bonds ------------------------------------------------------------------------------------


def test_edm_bond_orders_batched_and_permuted(qm9_1000):
    t, x, m = qm9_1000.types[:16], qm9_1000.positions[:16], qm9_1000.mask[:16]
    batched = edm_bond_orders(t, x, QM9, mask=m)
    for b in range(16):
        n = int(m[b].sum())
        single = edm_bond_orders(t[b, :n], x[b, :n], QM9)
        assert torch.equal(batched[b, :n, :n], single)
        assert batched[b, n:].abs().sum() == 0 and batched[b, :, n:].abs().sum() == 0
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(b))
        assert torch.equal(edm_bond_orders(t[b, perm], x[b, perm], QM9), single[perm][:, perm])
    ethyne = edm_bond_orders(torch.tensor([1, 1]), torch.tensor([[0.0, 0, 0], [1.20, 0, 0]]), QM9)
    assert ethyne[0, 1] == 3  # 120 pm < 120 + 3 (triple)


def test_to_pyg():
    mol = _embedded("OCC#N")
    m = mol_to_arrays(mol, QM9)
    data = to_pyg(m.types, m.positions, m.charges, QM9)
    n = mol.GetNumAtoms()
    assert data.x.shape == (n, 5) and data.pos.shape == (n, 3) and data.x.sum() == n
    assert data.z.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
    assert torch.equal(data.x.argmax(1), m.types)


# -- files ------------------------------------------------------------------------------------


def test_xyz_block_and_file(tmp_path):
    block = "3\nwater\nO 0.0 0.0 0.0\nH 0.9572 0.0 0.0\nH -0.2399 0.9266 0.0\n"
    mol = from_xyz_block(block)
    assert heavy_smiles(mol) == "O" and mol.GetNumAtoms() == 3 and mol.GetProp("_Name") == "water"
    with pytest.raises(NoConformerError, match="header says 3 atoms, 2 atom lines"):
        from_xyz_block("3\n\nO 0 0 0\nH 1 0 0\n")
    path = tmp_path / "mols.xyz"
    path.write_text(block + "2\nbroken\nC 0 0 zero\nC 1.2 0 0\n" + block)
    with pytest.raises(NoConformerError, match=r"mols\.xyz: molecule 1.*coordinates are not numbers \[record 1 \(line 6\)\]"):
        read_molecules3d(path)
    with pytest.warns(UserWarning, match="could not use 1 records"):
        recs = read_molecules3d(path, on_error="skip")
    assert recs.indices == [0, 2] and recs.smiles == ["O", "O"] and recs.skipped[0].where == "record 1 (line 6)"


def test_sdf_round_trip_keeps_3d_and_hydrogens(tmp_path, qm9_1000):
    mols = [qm9_1000.to_mol(i, method="hueckel") for i in range(5)]
    path = to_sdf([mols[0], None, *mols[1:]], tmp_path / "out.sdf.gz", columns={"i": list(range(6))})
    with gzip.open(path, "rt") as handle:
        assert handle.read().count("$$$$") == 5
    recs = read_molecules3d(path)
    assert len(recs) == 5 and recs.columns == {}
    for mol, back in zip(mols, recs.mols):
        assert back.GetNumAtoms() == mol.GetNumAtoms()
        assert np.allclose(back.GetConformer().GetPositions(), mol.GetConformer().GetPositions(), atol=1e-4)
        assert heavy_smiles(back) == heavy_smiles(mol)


def test_sdf_errors(tmp_path):
    flat = Chem.MolFromSmiles("CCO")
    with pytest.raises(NoConformerError, match="molecule 1"):
        to_sdf([_embedded("C"), flat], tmp_path / "x.sdf")
    with pytest.raises(TypeError, match="entry 0 is a str"):
        to_sdf(["CCO"], tmp_path / "x.sdf")
    AllChem.Compute2DCoords(flat)
    flat.SetProp("_Name", "flat one")
    path = tmp_path / "two.sdf"
    writer = Chem.SDWriter(str(path))
    writer.write(_embedded("CC"))
    writer.write(flat)
    writer.close()
    with pytest.raises(NoConformerError, match=r"two\.sdf: molecule 1 \('flat one'\): the record has 2D coordinates.*record 1"):
        read_molecules3d(path)
    with pytest.raises(ValueError, match="unknown 3D molecule file type '.pdb'"):
        (tmp_path / "a.pdb").write_text("")
        read_molecules3d(tmp_path / "a.pdb")
