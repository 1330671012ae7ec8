"""Crystals never give silently wrong results (issue 22): unreadable sample files count as
invalid, NaN network output stops sampling with the step, compositions and sampling options
are checked before any work, and every output format is one rule and reads back."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from pymatgen.core import Lattice, Structure  # noqa: E402
from pymatgen.io.cif import CifWriter  # noqa: E402

from sciogen.crystals import CrystalConfig, CrystalError, CrystalGenerator  # noqa: E402
from sciogen.crystals.config import CrystalDataConfig, CrystalModelConfig, CrystalSamplingConfig  # noqa: E402
from sciogen.crystals.io import read_structures, write_structures  # noqa: E402
from sciogen.crystals.representation import CrystalTooLargeError, parse_composition  # noqa: E402
from sciogen.data.output import check_destination, write_atomically  # noqa: E402

from ..helpers import run_sciogen  # noqa: E402

SITES = [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]


def _perovskite(a: float = 3.9, elements=("Sr", "Ti")) -> Structure:
    return Structure(Lattice.cubic(a), [*elements, "O", "O", "O"], SITES)


def _generator(kind: str) -> CrystalGenerator:
    """An untrained tiny model: sampling runs end to end, the weights do not matter here."""
    torch.manual_seed(0)
    if kind == "cspnet":
        model = CrystalModelConfig(hidden=16, layers=1, frequencies=4, time_dim=8)
        sampling = CrystalSamplingConfig(steps=3, batch_size=4)
    else:
        model = CrystalModelConfig(kind="unigenx", hidden=16, layers=1, heads=2, head_width=16, head_depth=1)
        sampling = CrystalSamplingConfig(steps=3, batch_size=4, solver="ddim")
    config = CrystalConfig(data=CrystalDataConfig(dataset="file", path="unused", max_atoms=6), model=model,
                           sampling=sampling)
    gen = CrystalGenerator(config)
    gen.model.eval()
    return gen


@pytest.fixture(scope="module")
def cspnet():
    return _generator("cspnet")


@pytest.fixture(scope="module")
def unigenx():
    return _generator("unigenx")


# -- item 4: evaluation never drops input silently ------------------------------------------------


def test_evaluate_scores_unreadable_cifs_as_invalid_and_names_them(tmp_path):
    folder = tmp_path / "gen"
    folder.mkdir()
    (folder / "good.cif").write_text(str(CifWriter(_perovskite())))
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 3\nthis is not a CIF\n")
    disordered = Structure(Lattice.cubic(4.0), [{"Sr": 0.5, "Ba": 0.5}, "Ti", "O", "O", "O"], SITES)
    (folder / "partial.cif").write_text(str(CifWriter(disordered)))
    res = run_sciogen("evaluate", "crystals", "gen", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["n"] == 3 and metrics["unreadable"] == 2
    assert metrics["validity"] == pytest.approx(1 / 3) and metrics["structural_validity"] == pytest.approx(1 / 3)
    assert "2 of 3 samples could not be read" in res.stderr
    assert "broken.cif: the CIF does not parse" in res.stderr and "partial.cif: site 0 is disordered" in res.stderr


def test_failed_samples_read_back_as_invalid_from_a_folder_and_a_csv(tmp_path):
    samples = [_perovskite(), None, _perovskite(4.1, ("Ba", "Zr"))]
    for out in (tmp_path / "gen", tmp_path / "gen.csv"):
        back = CrystalGenerator.read_samples(write_structures(samples, out))
        assert len(back) == 3 and back.count(None) == 1 and len(back.unreadable) == 1
        metrics = CrystalGenerator.evaluate_samples(back)
        assert metrics["n"] == 3 and metrics["unreadable"] == 1 and metrics["validity"] <= 2 / 3


def test_only_unreadable_samples_raise_with_the_reason(tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "bad.cif").write_text("nonsense\n")
    with pytest.raises(ValueError, match=r"none of the 1 samples is a structure \(.*bad.cif"):
        CrystalGenerator.evaluate_samples(CrystalGenerator.read_samples(tmp_path / "gen"))


# -- item 3: NaN network output never reaches a Structure -------------------------------------------


def _poison(module: torch.nn.Module, key: str | None = None, after: int = 0):
    """A forward hook that turns ``module``'s output (or its ``key``) NaN from call ``after`` on."""
    calls = {"n": 0}

    def hook(_, __, out):
        calls["n"] += 1
        if calls["n"] <= after:
            return out
        if key is None:
            return out * float("nan")
        out = dict(out)
        bad = out[key].clone()
        bad.view(bad.shape[0], -1)[:, 0] = float("nan")  # one number per crystal
        out[key] = bad
        return out

    return module.register_forward_hook(hook)


@pytest.mark.parametrize("key, after, composition, step", [
    ("lattice", 0, "SrTiO3", r"network output \(lattice\) at predictor-corrector step 0 \(t = 1\.00000\)"),
    ("frac", 2, "SrTiO3", r"network output \(frac\) at predictor-corrector step 1 \(t = 0\.66667\)"),
    ("frac", 1, None, r"network output \(frac\) at predictor-corrector step 0 \(corrector 1\)"),
    ("types", 0, None, r"network output \(types\) at predictor-corrector step 0"),
])
def test_cspnet_sampling_raises_on_nan_network_output(cspnet, key, after, composition, step):
    handle = _poison(cspnet.model, key, after)
    try:
        with pytest.raises(FloatingPointError, match=step):
            cspnet.sample(2, composition=composition, seed=0)
    finally:
        handle.remove()
    assert all(s is not None for s in cspnet.sample(2, composition="SrTiO3", seed=0))  # healthy again


@pytest.mark.parametrize("part, message", [
    ("lm_head", r"non-finite token logits at UniGenX sequence position 1"),
    ("head", r"UniGenX sequence position \d+ \(a number's diffusion head\): non-finite values appeared at solver step"),
])
def test_unigenx_sampling_raises_on_nan_network_output(unigenx, part, message):
    handle = _poison(getattr(unigenx.model, part))
    try:
        with pytest.raises(FloatingPointError, match=message):
            unigenx.sample(2, seed=0)
    finally:
        handle.remove()


# -- item 9: compositions ----------------------------------------------------------------------------


@pytest.mark.parametrize("composition, message", [
    ("Xx2O3", r"composition 'Xx2O3': 'Xx' is not a chemical element symbol"),
    ("", r"the composition is empty"),
    ("   ", r"the composition is empty"),
    ("Sr0.5TiO3", r"Sr has a non-integer amount 0.5"),
    ("Sr-1TiO3", r"Sr has amount -1; amounts must be positive"),
    ("Sr0TiO3", r"Sr has amount 0; amounts must be positive"),
    ("srtio3", r"'Srtio' is not a chemical element symbol|cannot parse the composition 'srtio3'"),
])
def test_bad_compositions_name_the_fault(composition, message):
    with pytest.raises(CrystalError, match=message):
        parse_composition(composition)


def test_compositions_checked_against_the_model(cspnet):
    with pytest.raises(CrystalTooLargeError, match=r"'Sr2Ti2O6' has 10 atoms, the model supports at most 6"):
        cspnet.sample(1, composition="Sr2Ti2O6")
    assert parse_composition("Sr(TiO3)1") == [8, 8, 8, 22, 38]


def test_cli_composition_with_an_unknown_element(cspnet, tmp_path):
    model = cspnet.save(tmp_path / "m.pt")
    res = run_sciogen("sample", str(model), "-n", "2", "--out", "x.cif", "--composition", "Xx2O3", cwd=tmp_path)
    assert res.returncode != 0 and "'Xx' is not a chemical element symbol" in res.stderr
    assert "Unexpected atomic number" not in res.stderr and not (tmp_path / "x.cif").exists()


# -- item 2: sampling options checked before work -----------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (dict(n=2.5), r"n must be >= 1 \(an integer\), got 2.5"),
    (dict(n=0, composition="SrTiO3"), r"n must be >= 1"),
    (dict(steps=0), r"steps must be >= 1"),
    (dict(batch_size=-5), r"batch_size must be >= 1"),
    (dict(corrector_steps=-1), r"corrector_steps must be >= 0 \(an integer\), got -1"),
    (dict(corrector_steps=1.5), r"corrector_steps must be >= 0 \(an integer\), got 1.5"),
    (dict(step_lr=float("nan")), r"step_lr must be finite, got nan"),
    (dict(step_lr=0.0), r"step_lr must be > 0"),
    (dict(temperature=float("inf")), r"temperature must be finite"),
    (dict(token_temperature=-1.0), r"token_temperature must be >= 0"),
    (dict(temperature="hot"), r"temperature must be a real number, got 'hot'"),
])
def test_sampling_options_are_checked_first(cspnet, options, message, monkeypatch):
    monkeypatch.setattr(type(cspnet), "sample_batch", lambda *a, **k: pytest.fail("sampled before checking"))
    options = {"n": 2, **options}
    with pytest.raises(ValueError, match=message):
        cspnet.sample(options.pop("n"), **options)


def test_guidance_and_conditions_are_checked(cspnet):
    with pytest.raises(ValueError, match="trained without any"):
        cspnet.sample(1, guidance=float("nan"))


# -- item 5: one rule for files and folders -----------------------------------------------------------


@pytest.mark.parametrize("name", ["gen.cif", "gen.csv", "gen.extxyz", "gen"])
def test_every_output_format_is_one_destination_and_reads_back(tmp_path, name):
    samples = [_perovskite(), _perovskite(4.1, ("Ba", "Zr")), _perovskite(4.0, ("K", "Nb"))]
    out = check_destination(tmp_path / name, CrystalGenerator.output_formats)
    path = write_atomically(CrystalGenerator.write_samples, samples, out)
    assert path == out and sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing beside it
    assert path.is_dir() == (name == "gen")
    back = CrystalGenerator.read_samples(path)
    assert [s.composition.reduced_formula for s in back] == ["SrTiO3", "BaZrO3", "KNbO3"]
    assert back.unreadable == []
    assert CrystalGenerator.evaluate_samples(back)["n"] == 3


def test_a_multi_structure_cif_keeps_one_block_per_sample(tmp_path):
    path = write_structures([_perovskite(), None, _perovskite(4.1, ("Ba", "Zr"))], tmp_path / "all.cif")
    text = path.read_text()
    assert text.count("data_") == 2 and "data_sample_00000_" in text and "data_sample_00002_" in text
    assert len(read_structures(path)) == 2


@pytest.mark.parametrize("name", ["a.xyz", "a.pdb", "a.cif.gz"])
def test_unknown_suffixes_list_the_known_ones(tmp_path, name):
    with pytest.raises(ValueError, match=r"use a file ending in \.cif, \.csv, \.extxyz or a folder"):
        check_destination(tmp_path / name, CrystalGenerator.output_formats)
    with pytest.raises(ValueError, match=r"\.cif, \.csv, \.extxyz or a folder"):
        write_structures([_perovskite()], tmp_path / name)


def test_cli_out_cif_writes_one_file(cspnet, tmp_path):
    model = cspnet.save(tmp_path / "m.pt")
    res = run_sciogen("sample", str(model), "-n", "3", "--out", "a.cif", "--composition", "SrTiO3", "--seed", "0",
                      cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "a.cif").is_file()
    back = read_structures(tmp_path / "a.cif")
    assert len(back) == 3 and {s.composition.reduced_formula for s in back.structures} == {"SrTiO3"}


def test_the_writer_does_not_mix_into_an_existing_sample_folder(tmp_path):
    write_structures([_perovskite()], tmp_path / "gen")
    with pytest.raises(FileExistsError, match="already holds samples"):
        write_structures([_perovskite()], tmp_path / "gen")


def test_csv_rows_keep_failed_samples(tmp_path):
    path = write_structures([_perovskite(), None], tmp_path / "s.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["material_id"] for r in rows] == ["0", "1"] and rows[1]["cif"] == ""


def test_guidance_of_a_conditioned_model_must_be_finite():
    torch.manual_seed(0)
    config = CrystalConfig(data=CrystalDataConfig(dataset="file", path="unused", max_atoms=6),
                           model=CrystalModelConfig(hidden=16, layers=1, frequencies=4, time_dim=8, conditions=["gap"]),
                           sampling=CrystalSamplingConfig(steps=2, batch_size=4))
    gen = CrystalGenerator(config)
    with pytest.raises(ValueError, match="guidance must be finite, got nan"):
        gen.sample(1, condition={"gap": 1.0}, guidance=float("nan"))
    with pytest.raises(ValueError, match="condition gap: give one finite number"):
        gen.sample(1, condition={"gap": float("inf")})
