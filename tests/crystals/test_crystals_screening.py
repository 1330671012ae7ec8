"""Screening output (sciogen.crystals.screening): the per-crystal table, the folder that
CrystalGenerator.write_samples writes, and `sciogen sample --space-group ... --out hits/` end to end."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from sciogen.crystals import CrystalGenerator
from sciogen.crystals.io import read_samples
from sciogen.crystals.screening import CrystalSamples, screening_table


def _perovskite(a=3.9, shift=0.0, elements=("Sr", "Ti", "O", "O", "O")):
    return Structure(Lattice.cubic(a), list(elements),
                     [[0, 0, 0], [0.5, 0.5, 0.5 + shift], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _crowded():
    """Two atoms 0.2 Å apart: structurally invalid; Na2Cl2: compositionally valid."""
    return Structure(Lattice.cubic(5.0), ["Na", "Na", "Cl", "Cl"], [[0, 0, 0], [0.04, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])


def test_screening_table_columns_and_values():
    srtio3, polar, bad = _perovskite(), _perovskite(shift=0.1, elements=("Ba", "Ti", "O", "O", "O")), _crowded()
    reference = [_perovskite(a=3.95)]  # the same crystal as srtio3 up to 1 % strain: not novel
    table = screening_table([srtio3, polar, None, bad], reference=reference,
                            requested={"space_group": 221, "condition": {"dir_gap": [2.0, 2.0, 2.5, 2.5]}, "guidance": 2.0},
                            templates=["Sr:1a Ti:1b O:3c", "", "", ""],
                            predictors={"volume": lambda structures: [s.volume for s in structures]})
    assert list(table.columns) == ["index", "formula", "space_group", "space_group_number", "structurally_valid",
                                   "compositionally_valid", "novel", "requested_space_group", "in_requested_group",
                                   "wyckoff", "requested_dir_gap", "guidance", "predicted_dir_gap", "predicted_volume"]
    assert table["formula"].tolist()[:2] == ["SrTiO3", "BaTiO3"] and pd.isna(table["formula"][2])
    assert table["space_group"].tolist()[:2] == ["Pm-3m", "P4mm"]
    assert table["space_group_number"].tolist()[:2] == [221, 99] and pd.isna(table["space_group_number"][2])
    assert table["structurally_valid"].tolist()[:2] == [True, True] and not bool(table["structurally_valid"][3])
    assert bool(table["compositionally_valid"][0]) and bool(table["compositionally_valid"][3])
    assert table["novel"].tolist()[:2] == [False, True] and pd.isna(table["novel"][2])
    assert table["in_requested_group"].tolist()[:2] == [True, False]
    assert table["requested_dir_gap"].tolist() == [2.0, 2.0, 2.5, 2.5] and table["guidance"].tolist() == [2.0] * 4
    assert table["predicted_dir_gap"].isna().all()  # asked for, no predictor yet: an empty column to fill
    assert table["predicted_volume"][0] == pytest.approx(3.9**3) and pd.isna(table["predicted_volume"][2])


def test_screening_table_without_requests_or_reference_and_bad_input():
    table = screening_table([_perovskite()])
    assert list(table.columns) == ["index", "formula", "space_group", "space_group_number", "structurally_valid",
                                   "compositionally_valid", "novel"]
    assert table["novel"].isna().all()
    with pytest.raises(TypeError, match="structure 1 is a str"):
        screening_table([_perovskite(), "SrTiO3"])
    with pytest.raises(ValueError, match="predictor 'gap' returned 0 values for 1 structures"):
        screening_table([_perovskite()], predictors={"gap": lambda structures: []})
    with pytest.raises(ValueError, match="condition dir_gap: 2 values for 1 structures"):
        screening_table([_perovskite()], requested={"condition": {"dir_gap": [1.0, 2.0]}})


def test_write_samples_folder_holds_cifs_and_the_screening_table(tmp_path):
    polar = _perovskite(shift=0.1, elements=("Ba", "Ti", "O", "O", "O"))
    samples = CrystalSamples([_perovskite(), None, polar], requested={"space_group": [221, 221, 99]},
                             templates=["Sr:1a Ti:1b O:3c", "Sr:1a Ti:1b O:3c", "Ba:1a Ti:1b O:1b O:2c"],
                             reference=lambda: [_perovskite()])
    out = CrystalGenerator.write_samples(samples, tmp_path / "hits")
    assert sorted(p.name for p in out.iterdir()) == ["sample_00000.cif", "sample_00002.cif", "summary.csv"]
    table = pd.read_csv(out / "summary.csv", dtype_backend="numpy_nullable")
    assert list(table.columns[:6]) == ["index", "file", "formula", "atoms", "volume", "density"]
    assert table["file"].fillna("").tolist() == ["sample_00000.cif", "", "sample_00002.cif"]
    assert table["space_group_number"].tolist()[::2] == [221, 99] and pd.isna(table["space_group_number"][1])
    assert table["in_requested_group"].tolist()[::2] == [True, True] and pd.isna(table["in_requested_group"][1])
    assert table["novel"].tolist()[::2] == [False, True]
    assert table["wyckoff"].tolist()[2] == "Ba:1a Ti:1b O:1b O:2c"
    back = read_samples(out)  # the reader still finds the failed sample through summary.csv
    assert len(back) == 3 and back.count(None) == 1
    plain = CrystalGenerator.write_samples([_perovskite()], tmp_path / "plain")  # a plain list: no request columns
    assert pd.read_csv(plain / "summary.csv").columns[-1] == "novel"
    single = CrystalGenerator.write_samples(samples, tmp_path / "hits.csv")  # a file keeps its own format
    assert single.is_file() and "space_group" not in single.read_text().splitlines()[0]


@pytest.fixture(scope="module")
def perov5():
    import torch

    import sciogen

    torch.set_num_threads(1)
    return sciogen.load("crystals/perov5")


def test_sample_remembers_the_request(perov5, tmp_path):
    reference = [_perovskite(), _perovskite(elements=("Ba", "Zr", "O", "O", "O"))]
    hits = perov5.sample(3, composition="SrTiO3", space_group=221, steps=10, seed=0, reference=reference)
    assert isinstance(hits, CrystalSamples) and hits.requested["space_group"] == [221] * 3
    assert "2 crystals of the reference crystals" in hits.requested["wyckoff_prior"]
    assert hits.reference is not None and len(hits.reference) == 2
    table = screening_table(hits)
    assert table["in_requested_group"].all() and table["formula"].eq("SrTiO3").all()
    assert table["novel"].notna().all()


def test_cli_sample_space_group_to_a_screening_folder(tmp_path):
    from sciogen.cli import main

    ref = tmp_path / "ref"
    CrystalGenerator.write_samples([_perovskite(), _perovskite(a=4.1, elements=("Ba", "Zr", "O", "O", "O"))], ref)
    out = tmp_path / "hits"
    code = main(["sample", "crystals/perov5", "-n", "3", "--steps", "8", "--seed", "2", "--space-group", "Pm-3m",
                 "--reference", str(ref), "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.cif")) == [f"sample_0000{i}.cif" for i in range(3)]
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 3 and table["requested_space_group"].eq(221).all()
    assert table["space_group_number"].eq(221).all() and table["in_requested_group"].all()
    assert table["novel"].isin([True, False]).all() and not table["wyckoff"].isna().any()
    assert {"structurally_valid", "compositionally_valid", "formula", "space_group"} <= set(table.columns)
    assert all(math.isfinite(v) for v in table["density"])
