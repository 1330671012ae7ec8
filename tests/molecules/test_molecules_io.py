"""SMILES / CSV / SDF reading and writing; bad rows raise with their index or are reported."""

from __future__ import annotations

import pytest

from sciogen.molecules import (  # noqa: E402
    MoleculeSpec,
    SmilesParseError,
    UnknownAtomTypeError,
    read_molecules,
    write_molecules,
)


def test_smiles_file_raise_skip_keep(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("CCO ethanol\n\nC1CC broken\nc1ccccc1\n")
    with pytest.raises(SmilesParseError, match=r"mols.smi: molecule 1 \('C1CC'\)"):
        read_molecules(path)
    with pytest.warns(UserWarning, match="skipped 1 of 3 records"):
        recs = read_molecules(path, on_error="skip")
    assert recs.smiles == ["CCO", "c1ccccc1"] and recs.indices == [0, 2]
    assert [(s.index, s.item) for s in recs.skipped] == [(1, "C1CC")]
    assert "record 1 ('C1CC')" in recs.report()
    assert recs.columns["name"] == ["ethanol", None]
    kept = read_molecules(path, on_error="keep")
    assert kept.smiles == ["CCO", None, "c1ccccc1"] and not kept.skipped


def test_csv_with_spec_checks_vocabulary_and_size(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("id,SMILES,score\n0,CCO,1.5\n1,CCCl,2\n2,CCCCCCCCCCC,3\n3,C[NH3+],4\n")
    with pytest.raises(UnknownAtomTypeError, match=r"mols.csv: molecule 1 \('CCCl'\)"):
        read_molecules(path, spec=MoleculeSpec.qm9())
    with pytest.warns(UserWarning, match="skipped 2 of 4"):
        recs = read_molecules(path, spec=MoleculeSpec.qm9(), on_error="skip")
    assert recs.indices == [0, 3] and len(recs.graphs) == 2
    assert recs.columns["score"] == [1.5, 4.0]
    assert {s.index for s in recs.skipped} == {1, 2}
    assert "max_atoms=9" in recs.skipped[1].reason


def test_csv_needs_a_smiles_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no SMILES column"):
        read_molecules(path)


@pytest.mark.parametrize("suffix", [".smi", ".csv", ".sdf", ".csv.gz", ".sdf.gz"])
def test_write_read_round_trip(tmp_path, suffix):
    smiles = ["CCO", None, "C[NH3+]", "c1ccccc1O"]
    path = write_molecules(smiles, tmp_path / f"out{suffix}")
    recs = read_molecules(path, on_error="keep")
    if ".csv" in suffix:  # one row per molecule, the invalid one kept as invalid
        assert recs.smiles == ["CCO", None, "C[NH3+]", "Oc1ccccc1"]
        assert recs.columns["valid"] == [1, 0, 1, 1]
    else:  # SMILES / SDF files hold the valid molecules only
        assert recs.smiles == ["CCO", "C[NH3+]", "Oc1ccccc1"]


def test_unknown_suffix(tmp_path):
    path = tmp_path / "x.xyz"
    path.write_text("1\n")
    with pytest.raises(ValueError, match="unknown molecule file type"):
        read_molecules(path)
