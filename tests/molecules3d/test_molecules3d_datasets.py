"""QM9 3D loader (split, centring, properties, charges, histogram, cache), qm9pack format, own molecules."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from sciogen.molecules.datasets import qm9_split
from sciogen.molecules3d import (
    ElementVocabulary,
    atom_count_histogram,
    from_mols,
    load_qm9_3d,
    read_molecules3d,
    read_qm9_properties,
    read_qm9_xyz,
    read_qm9pack,
    sample_atom_counts,
    to_sdf,
)
from sciogen.molecules3d import datasets as datasets3d


def _rows(qm9_folder, ids):
    table = read_qm9_xyz(qm9_folder / "qm9_xyz.csv.gz", ids=set(ids))
    return table


def _write_xyz_table(path, table, rows=None):
    rows = range(len(table["smiles"])) if rows is None else rows
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["gdb_index", "smiles", "elements", "xyz_angstrom"])
        for k in rows:
            w.writerow([int(table["gdb_index"][k]), table["smiles"][k], " ".join(table["elements"][k]),
                        " ".join(f"{v:.5f}" for v in table["positions"][k].reshape(-1))])


def test_qm9_test_split(qm9_1000, qm9_folder):
    ds = qm9_1000
    assert len(ds) == 1000 and ds.types.shape == (1000, 29) and ds.positions.shape == (1000, 29, 3)
    assert ds.positions.dtype == torch.float32 and ds.mask.dtype == torch.bool
    order = qm9_split()["test"].tolist()
    props = read_qm9_properties(qm9_folder / "qm9_properties.csv.gz")
    assert ds.ids.tolist() == [g for g in order if g in props][:1000]
    centre = (ds.positions * ds.mask[..., None]).sum(1) / ds.num_atoms[:, None]
    assert centre.abs().max() < 1e-5
    assert (ds.positions[~ds.mask] == 0).all() and (ds.types[~ds.mask] == 0).all()
    assert ds.property_names == ("mu", "alpha", "homo", "lumo", "gap", "cv")
    assert np.array_equal(ds.properties[:5].numpy(), np.stack([props[g] for g in ds.ids[:5].tolist()]))
    # element counts match the SMILES with hydrogens
    for i in range(0, 1000, 97):
        mol = Chem.AddHs(Chem.MolFromSmiles(ds.smiles[i]))
        assert sorted(ds.vocabulary.elements[t] for t in ds.molecule(i).types.tolist()) == sorted(a.GetSymbol() for a in mol.GetAtoms())
    data = ds[0]
    assert data.pos.shape == (int(ds.num_atoms[0]), 3) and data.y.shape == (1, 6) and data.idx == int(ds.ids[0])


def test_positions_are_the_dft_geometry_centred(qm9_folder, qm9_1000):
    raw = _rows(qm9_folder, qm9_1000.ids[:3].tolist())
    for k, gdb in enumerate(raw["gdb_index"].tolist()):
        i = qm9_1000.ids.tolist().index(gdb)
        x = raw["positions"][k]
        assert np.allclose(qm9_1000.molecule(i).positions.numpy(), x - x.mean(0), atol=1e-5)


def test_atom_count_histogram(qm9_1000):
    h = qm9_1000.atom_count_histogram()
    assert h.shape == (30,) and h.sum() == 1000 and h[:3].sum() == 0
    assert int(h.argmax()) == int(torch.mode(qm9_1000.num_atoms).values)
    g = torch.Generator().manual_seed(0)
    n = sample_atom_counts(h, 5000, generator=g)
    assert torch.equal(n, sample_atom_counts(h, 5000, generator=torch.Generator().manual_seed(0)))
    assert set(n.tolist()) <= set(torch.nonzero(h).view(-1).tolist())
    assert abs(n.float().mean() - qm9_1000.num_atoms.float().mean()) < 0.2
    with pytest.raises(ValueError, match="non-negative counts"):
        sample_atom_counts(torch.zeros(5), 3)
    with pytest.raises(ValueError, match="more than max_atoms=3"):
        atom_count_histogram([2, 4], 3)


def test_charges_come_from_the_smiles(qm9_folder):
    table = read_qm9_xyz(qm9_folder / "qm9_xyz.csv.gz", ids=set(range(1, 3000)))
    charged = [k for k, s in enumerate(table["smiles"]) if "+" in s][:3]
    plain = [k for k, s in enumerate(table["smiles"]) if "+" not in s and "-" not in s][:3]
    out = datasets3d._tensors({k: (v[charged + plain] if isinstance(v, np.ndarray) else [v[i] for i in charged + plain])
                               for k, v in table.items()}, ElementVocabulary.qm9(), "test")
    assert (out["charges"][:3] != 0).any(1).all() and (out["charges"][3:] == 0).all()
    assert (out["charges"].sum(1) == 0).all()
    voc = ElementVocabulary.qm9()
    for b in range(3):
        q = out["charges"][b][out["mask"][b]]
        symbols = [voc.elements[t] for t in out["types"][b][out["mask"][b]].tolist()]
        assert {symbols[i] for i in torch.nonzero(q).view(-1).tolist()} <= {"N", "O", "C"}


def test_formal_charges_errors():
    with pytest.raises(ValueError, match="does not parse"):
        datasets3d.formal_charges("C1CC", ["C"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="has 8 atoms with hydrogens, the geometry 2"):
        datasets3d.formal_charges("C[NH3+]", ["C", "N"], np.zeros((2, 3)))
    far = np.arange(24.0).reshape(8, 3) * 3  # no bonds at all
    with pytest.raises(ValueError, match="do not match the bonds"):
        datasets3d.formal_charges("C[NH3+]", ["C", "N"] + ["H"] * 6, far)


def test_without_hydrogens_and_the_cache(qm9_folder, tmp_path, monkeypatch):
    wanted = qm9_split()["val"][:40].tolist()
    table = _rows(qm9_folder, wanted)
    _write_xyz_table(tmp_path / "qm9_xyz.csv", table)
    cache = tmp_path / "cache"
    ds = load_qm9_3d("val", path=tmp_path, cache=cache, vocabulary=ElementVocabulary.qm9(hydrogens=False))
    assert len(ds) == len(table["smiles"]) and ds.types.shape[1] == 9 and ds.properties is None
    assert int(ds.num_atoms.max()) <= 9 and set(ds.types[ds.mask].tolist()) <= {0, 1, 2, 3}
    assert len(list(cache.rglob("*.pt"))) == 1
    monkeypatch.setattr(datasets3d, "_tensors", lambda *a, **k: pytest.fail("the cache was not used"))
    again = load_qm9_3d("val", path=tmp_path / "qm9_xyz.csv", cache=cache, vocabulary=ElementVocabulary.qm9(hydrogens=False))
    assert torch.equal(again.positions, ds.positions) and again.smiles == ds.smiles
    with pytest.raises(ValueError, match="properties=True but"):
        load_qm9_3d("val", path=tmp_path, cache=cache, properties=True, vocabulary=ElementVocabulary.qm9(hydrogens=False))


def test_qm9pack_format_reads_like_the_derived_table(qm9_folder, tmp_path):
    table = _rows(qm9_folder, [1, 6, 23, 1642])
    props = read_qm9_properties(qm9_folder / "qm9_properties.csv.gz")
    columns = ["XYZ_file", "Index", "SMILES", "Elements", "XYZ_Ang", "Dipole_debye", "Polarizability_bohr3", "HOMO_au",
               "LUMO_au", "HOMO_LUMO_gap_au", "Heatcapacity_Cv_cal_mol_K"]
    with open(tmp_path / "qm9_part1.csv", "w", newline="") as handle:  # qm9pack 1.0.3's cell formats
        w = csv.writer(handle)
        w.writerow(columns)
        for k, g in enumerate(table["gdb_index"].tolist()):
            elements = "[" + ",".join(f"'{e}'" for e in table["elements"][k]) + "]"
            xyz = "[" + ",".join("[" + ",".join(repr(float(v)) for v in row) + "]" for row in table["positions"][k]) + "]"
            w.writerow([f"dsgdb9nsd_{g:06d}.xyz", g, table["smiles"][k], elements, xyz, *props[g].tolist()])
    pack = read_qm9pack(tmp_path)
    assert pack["gdb_index"].tolist() == table["gdb_index"].tolist() and pack["elements"] == table["elements"]
    assert all(np.array_equal(a, b) for a, b in zip(pack["positions"], table["positions"]))
    assert np.array_equal(pack["properties"], np.stack([props[g] for g in table["gdb_index"].tolist()]))
    ds = load_qm9_3d("train", path=tmp_path, cache=False)
    assert set(ds.ids.tolist()) == {g for g in table["gdb_index"].tolist() if g in set(qm9_split()["train"].tolist())}


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="split='dev'"):
        load_qm9_3d("dev", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="neither qm9_xyz.csv"):
        load_qm9_3d("train", path=tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_qm9_3d("train", path=tmp_path / "missing")
    bad = tmp_path / "qm9_xyz.csv.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write("gdb_index,smiles,elements\n1,C,C H H H H\n")
    with pytest.raises(ValueError, match="missing column.*xyz_angstrom"):
        load_qm9_3d("train", path=bad, cache=False)
    with gzip.open(bad, "wt") as handle:
        handle.write("gdb_index,smiles,elements,xyz_angstrom\n1,C,C H H H H,0 0 0 1 1 1\n")
    with pytest.raises(ValueError, match=r"qm9_xyz\.csv\.gz, line 2 \(gdb_index 1\): 5 elements but 2 positions"):
        load_qm9_3d("train", path=bad, cache=False)


def test_own_molecules(tmp_path):
    mols = []
    for k, s in enumerate(["CCO", "c1ccccc1", "CCCl", "OC(=O)CN"]):
        m = Chem.AddHs(Chem.MolFromSmiles(s))
        AllChem.EmbedMolecule(m, randomSeed=k)
        mols.append(m)
    with pytest.raises(Exception, match="molecule 2.*Cl"):
        from_mols(mols)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        ds = from_mols(mols, on_error="skip")
    assert len(ds) == 3 and ds.smiles == ["CCO", "c1ccccc1", "NCC(=O)O"] and ds.skipped[0].index == 2
    assert ds.types.shape == (3, 29) and int(ds.num_atoms[1]) == 12
    path = to_sdf(mols, tmp_path / "mine.sdf")
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        back = from_mols(read_molecules3d(path).mols, on_error="skip")
    assert len(back) == 3 and torch.allclose(back.positions, ds.positions, atol=1e-3)
