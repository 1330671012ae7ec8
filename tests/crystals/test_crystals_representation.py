"""Structures <-> tensors, CIF / CSV in and out, and the errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402

from sciogen.crystals import (  # noqa: E402
    CifParseError,
    CrystalSpec,
    CrystalTooLargeError,
    PartialOccupancyError,
    UnknownElementError,
    from_tensors,
    read_cdvae_csv,
    read_cif,
    read_structures,
    to_tensors,
    write_cif,
    write_structures,
)
from sciogen.crystals.representation import CrystalError, canonical_structure, lattice_parameters, parse_composition  # noqa: E402

PEROV = Path(__file__).resolve().parents[2] / "../shared/datasets/crystals/perov_5"


def _perov(limit=30):
    if not (PEROV / "test.csv").is_file():
        pytest.skip(f"Perov-5 is not at {PEROV} (the shared datasets folder)")
    return read_cdvae_csv(PEROV / "test.csv", limit=limit)


def _rocksalt():
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_perov5_round_trip_through_tensors():
    recs = _perov()
    assert len(recs) == 30 and not recs.skipped and "heat_ref" in recs.properties
    spec = CrystalSpec.infer(recs.structures)
    t = to_tensors(recs.structures, spec)
    assert t.types.shape == (30, 5) and t.frac.shape == (30, 5, 3) and bool(t.mask.all())
    back = from_tensors(t.types, t.frac, t.lattice, t.num_atoms, spec)
    matcher = StructureMatcher(stol=0.05, ltol=0.01, angle_tol=0.5)
    for s, b in zip(recs.structures, back):
        assert s.composition == b.composition
        assert matcher.fit(s, b)
        assert np.allclose(s.volume, b.volume, rtol=1e-5)


def test_canonical_structure_matches_cdvae_form():
    s = _rocksalt()
    s.apply_strain([0.0, 0.0, 0.0])
    skewed = Structure(Lattice([[5.64, 0, 0], [5.64, 5.64, 0], [0, 0, 5.64]]), ["Na", "Cl"], [[0, 0, 0], [0.25, 0.5, 0.5]])
    c = canonical_structure(skewed)
    a, b, _ = c.lattice.matrix
    assert abs(a[1]) < 1e-9 and abs(a[2]) < 1e-9 and abs(b[2]) < 1e-9  # a along x, b in the xy plane
    assert np.all(c.frac_coords >= 0) and np.all(c.frac_coords < 1)
    assert StructureMatcher().fit(c, skewed)
    lengths, angles = lattice_parameters(torch.tensor(c.lattice.matrix))
    assert torch.allclose(lengths, torch.tensor(c.lattice.abc, dtype=lengths.dtype), atol=1e-6)
    assert torch.allclose(angles, torch.tensor(c.lattice.angles, dtype=angles.dtype), atol=1e-6)


def test_padding_and_sizes():
    s1, s2 = _rocksalt(), Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])
    spec = CrystalSpec.infer([s1, s2], max_atoms=4)
    t = to_tensors([s1, s2], spec)
    assert t.num_atoms.tolist() == [2, 1]
    assert t.types[1].tolist() == [spec.index(26), -1, -1, -1]
    back = from_tensors(t.types, t.frac, t.lattice, t.num_atoms, spec)
    assert [len(b) for b in back] == [2, 1]
    bad = t.lattice.clone()
    bad[0] = 0.0
    assert from_tensors(t.types, t.frac, bad, t.num_atoms, spec)[0] is None


def test_errors_name_the_structure():
    spec = CrystalSpec.infer([_rocksalt()])
    with pytest.raises(UnknownElementError, match="structure 0.*Fe"):
        to_tensors([Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])], spec)
    with pytest.raises(CrystalTooLargeError, match="3 atoms"):
        to_tensors([Structure(Lattice.cubic(6.0), ["Na", "Cl", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]])], spec)
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "Cl": 0.5}], [[0, 0, 0]])
    with pytest.raises(PartialOccupancyError, match="site 0"):
        to_tensors([disordered], CrystalSpec.all_elements())
    assert parse_composition("SrTiO3") == [8, 8, 8, 22, 38]
    with pytest.raises(CrystalError, match="non-integer"):
        parse_composition("SrTiO2.5")
    with pytest.raises(UnknownElementError):
        parse_composition("Fe2O3", spec)


def test_cif_round_trip_and_bad_cif(tmp_path):
    s = _rocksalt()
    path = write_cif(s, tmp_path / "nacl.cif")
    back = read_cif(path)
    assert StructureMatcher().fit(s, back)
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 4.0\nthis is not a cif\n")
    with pytest.raises(CifParseError, match="broken.cif"):
        read_cif(tmp_path / "broken.cif")
    with pytest.raises(FileNotFoundError):
        read_cif(tmp_path / "missing.cif")


def test_csv_skip_and_report(tmp_path):
    recs = _perov(limit=3)
    import csv

    with open(PEROV / "test.csv", newline="") as handle:
        rows = [r for _, r in zip(range(3), csv.DictReader(handle))]
    rows[1]["cif"] = "garbage"
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CifParseError, match="row 2"):
        read_cdvae_csv(bad)
    skipped = read_cdvae_csv(bad, on_error="skip")
    assert len(skipped) == 2 and skipped.skipped[0][0] == 2 and skipped.skipped[0][1] == rows[1]["material_id"]
    assert skipped.ids == [rows[0]["material_id"], rows[2]["material_id"]]
    assert recs.ids[0] == rows[0]["material_id"]


def test_write_structures_folder_and_csv(tmp_path):
    structures = [_rocksalt(), None, Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])]
    folder = write_structures(structures, tmp_path / "out")
    assert sorted(p.name for p in folder.glob("*.cif")) == ["sample_00000.cif", "sample_00002.cif"]
    summary = (folder / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and "NaCl" in summary[1] and summary[2].startswith("1,,")
    recs = read_structures(folder)
    assert [r.composition.reduced_formula for r in recs.structures] == ["NaCl", "Fe"]
    csv_path = write_structures(structures, tmp_path / "out.csv")  # a row per sample, the failed one empty
    recs = read_structures(csv_path, on_error="skip")
    assert len(recs) == 2 and [r[0] for r in recs.skipped] == [2]
    assert not list(tmp_path.rglob("*.part"))


def test_unigenx_jsonl_records(tmp_path):
    path = PEROV.parent / "mp_20_unigenx_example" / "mp20_10.jsonl"
    if not path.is_file():
        pytest.skip(f"UniGenX's example records are not at {path}")
    recs = read_structures(path)
    assert len(recs) == 10 and recs.ids[0] == "mp-10009"
    assert recs.structures[0].composition.reduced_formula == "GaTe"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().splitlines()[0] + "\n{\"material_id\": \"x\", \"lattice\": [[1, 0, 0]]}\n")
    with pytest.raises(CrystalError, match="line 2"):
        read_structures(bad)
    assert len(read_structures(bad, on_error="skip")) == 1
