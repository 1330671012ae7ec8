"""Crystals on your own data, end to end: `sciogen train crystals --data` on a CIF folder, a CDVAE CSV
(with a condition column) and an extxyz file, then `sciogen sample` and `sciogen evaluate`; a list of
Structures through sciogen.fit; unreadable records reported by file and index; clear refusals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from pymatgen.core import DummySpecies, Lattice, Structure  # noqa: E402
from pymatgen.io.cif import CifWriter  # noqa: E402

import sciogen  # noqa: E402
from sciogen.crystals import CrystalConfig, CrystalGenerator  # noqa: E402
from sciogen.crystals.network import CSPNet, CSPNetConfig  # noqa: E402
from sciogen.registry import prepare_run  # noqa: E402

from ..helpers import run_sciogen  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["train.steps=3", "train.checkpoint_every=3", "train.batch_size=8", "model.hidden=16", "model.layers=1",
        "model.frequencies=2", "model.time_dim=8", "sampling.steps=3", "sampling.batch_size=4"]
SET = [arg for item in TINY for arg in ("--set", item)]
PAIRS = [("Sr", "Ti"), ("Ba", "Zr"), ("Ca", "Ti"), ("K", "Nb")]


def perovskites(n: int = 8) -> list[Structure]:
    """Cubic ABO3 cells, a = 3.9 .. 4.2 Å, with a made-up property ``gap`` = a - 3."""
    out = []
    for i in range(n):
        a, b = PAIRS[i % len(PAIRS)]
        s = Structure(Lattice.cubic(3.9 + 0.3 * (i % 5) / 4), [a, b, "O", "O", "O"],
                      [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
        s.properties["gap"] = round(s.lattice.a - 3.0, 4)
        out.append(s)
    return out


def write_csv(path: Path, structures, extra_rows=()) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["material_id", "cif", "formation_energy"])
        writer.writeheader()
        for i, s in enumerate(structures):
            writer.writerow({"material_id": f"m{i}", "cif": str(CifWriter(s)),
                             "formation_energy": "" if i == 2 else -1.0 - 0.1 * i})  # row 3: no label
        writer.writerows(extra_rows)
    return path


def write_extxyz(path: Path, structures) -> Path:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for i, s in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info["energy_per_atom"] = -2.0 + 0.05 * i
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """An empty dataset cache for the subprocesses (tensor caches and downloads stay in the test)."""
    return {"SCIOGEN_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def cif_run(tmp_path_factory, env):
    """`sciogen train crystals --data FOLDER` on nested CIFs with one broken file, once for the module."""
    work = tmp_path_factory.mktemp("user")
    for i, s in enumerate(perovskites()):
        folder = work / "cifs" / ("sub" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        CifWriter(s).write_file(folder / f"c{i}.cif")
    (work / "cifs" / "broken.cif").write_text("data_broken\n_cell_length_a 4.0\nnot a CIF\n")
    res = run_sciogen("train", "crystals", "--data", "cifs", "--run-dir", "run", *SET, cwd=work, env=env)
    assert res.returncode == 0, res.stderr
    return work, res


def test_cif_folder_trains_samples_and_evaluates(cif_run, env):
    work, res = cif_run
    assert "kept 8 crystals" in res.stderr and "cifs/broken.cif [1]" in res.stderr
    rows = list(csv.DictReader((work / "run" / "skipped.csv").open()))
    assert [(r["source"], r["index"]) for r in rows] == [("cifs/broken.cif", "1")]
    assert "does not parse" in rows[0]["reason"]
    assert "sciogen sample run" in res.stdout
    out = run_sciogen("sample", "run", "-n", "4", "--out", "gen", "--seed", "0", cwd=work, env=env)
    assert out.returncode == 0, out.stderr
    assert len(list((work / "gen").glob("*.cif"))) + sum(
        1 for r in csv.DictReader((work / "gen" / "summary.csv").open()) if not r["file"]) == 4
    ev = run_sciogen("evaluate", "crystals", "gen", "--reference", "cifs", "--json", cwd=work, env=env)
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    assert 0.0 <= metrics["structural_validity"] <= 1.0 and math.isfinite(metrics["wdist_density"])
    assert "skipped 1" in ev.stderr  # the broken reference file is reported, not dropped silently


def test_evaluate_against_a_registered_dataset_in_the_cache(cif_run, tmp_path, env, monkeypatch):
    work, _ = cif_run
    structures = CrystalGenerator.read_samples(work / "gen")
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"perov_5 file test.csv is not in the dataset cache.*--download"):
        CrystalGenerator.evaluate_samples(structures, "perov_5")
    (tmp_path / "cache" / "perov_5").mkdir(parents=True)
    write_csv(tmp_path / "cache" / "perov_5" / "test.csv", perovskites(6))  # stands in for the registry's copy
    ev = run_sciogen("evaluate", "crystals", "gen", "--reference", "perov_5", "--json", cwd=work,
                     env={**env, "SCIOGEN_CACHE": str(tmp_path / "cache")})
    assert ev.returncode == 0, ev.stderr
    assert "wdist_num_elems" in json.loads(ev.stdout)


def test_csv_with_a_condition_column_trains_and_samples_with_guidance(tmp_path, env):
    garbage = {"material_id": "junk", "cif": "this is not a CIF", "formation_energy": "-1"}
    bad_label = {"material_id": "bad", "cif": str(CifWriter(perovskites(1)[0])), "formation_energy": "n/a"}
    write_csv(tmp_path / "my.csv", perovskites(), [garbage, bad_label])
    res = run_sciogen("train", "crystals", "--data", "my.csv", "--condition-on", "formation_energy", "--run-dir", "run",
                      *SET, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "1 of 8 training crystals have no value" in res.stderr
    rows = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    assert [(r["source"], r["index"]) for r in rows] == [("my.csv", "9"), ("my.csv", "10")]
    assert "does not parse" in rows[0]["reason"] and "'n/a' is not a number" in rows[1]["reason"]
    gen = CrystalGenerator.load(tmp_path / "run", device="cpu")
    assert gen.conditions == ["formation_energy"] and gen.model.cond_embed is not None
    labels = torch.tensor([-1.0 - 0.1 * i for i in range(8) if i != 2], dtype=torch.float64)
    assert float(gen.cond_mean[0]) == pytest.approx(float(labels.mean()))  # statistics in the checkpoint
    out = run_sciogen("sample", "run", "-n", "3", "--out", "cond.csv", "--condition", "formation_energy=-1.2",
                      "--guidance", "2", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "sampled 3 from" in out.stdout and (tmp_path / "cond.csv").is_file()
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['formation_enrgy'\]"):
        gen.sample(2, condition={"formation_enrgy": 1.0})
    samples = CrystalGenerator.read_samples(tmp_path / "cond.csv")
    metrics = CrystalGenerator.evaluate_samples(samples, str(tmp_path / "my.csv"))
    assert metrics["n"] == len(samples) and "wdist_density" in metrics


def test_extxyz_trains_with_an_info_key_as_condition(tmp_path, env):
    write_extxyz(tmp_path / "my.extxyz", perovskites())
    res = run_sciogen("train", "crystals", "--data", "my.extxyz", "--condition-on", "energy_per_atom",
                      "--run-dir", "run", *SET, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    gen = sciogen.load(tmp_path / "run", device="cpu")
    assert gen.config.data.path == "my.extxyz" and gen.conditions == ["energy_per_atom"]
    a = gen.sample(2, condition={"energy_per_atom": -1.9}, guidance=1.5, seed=0)
    b = gen.sample(2, condition={"energy_per_atom": [-1.9, -1.9]}, guidance=1.5, seed=0)  # one per sample
    assert [s.frac_coords.tolist() for s in a] == [s.frac_coords.tolist() for s in b]
    with pytest.raises(ValueError, match="must be a mapping"):
        gen.sample(2, condition=["energy_per_atom=-1.9"])  # the shell's strings: sciogen.cli parses them
    c = gen.sample(2, condition={"energy_per_atom": -1.5}, guidance=1.5, seed=0)
    assert [s.frac_coords.tolist() for s in a] != [s.frac_coords.tolist() for s in c]
    path = CrystalGenerator.write_samples(a, tmp_path / "gen")
    metrics = CrystalGenerator.evaluate_samples(CrystalGenerator.read_samples(path), str(tmp_path / "my.extxyz"))
    assert 0.0 <= metrics["structural_validity"] <= 1.0


def test_structures_through_sciogen_fit(tmp_path, sciogen_cache):
    structures = perovskites()
    structures[3] = Structure(Lattice.cubic(4.0), [{"Sr": 0.5, "Ba": 0.5}, "Ti", "O", "O", "O"],
                              [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    structures.append(Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    gen = sciogen.fit("crystals", data=structures, run_dir=tmp_path / "run", overrides=TINY, condition_on=["gap"])
    assert gen.trained_steps == 3 and gen.conditions == ["gap"]
    rows = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    assert [(r["source"], r["index"]) for r in rows] == [("structures", "3"), ("structures", "8")]
    assert "disordered" in rows[0]["reason"] and "unknown element(s) X" in rows[1]["reason"]
    out = gen.sample(3, condition={"gap": 1.0}, guidance=2.0, seed=1)
    assert len(out) == 3
    with pytest.raises(TypeError, match="not a pymatgen Structure"):
        sciogen.fit("crystals", data=[structures[0], "SrTiO3"], run_dir=tmp_path / "r2", overrides=TINY)
    with pytest.raises(ValueError, match=r"no Structure has a numeric properties\['band_gap'\]"):
        sciogen.fit("crystals", data=structures[:4], run_dir=tmp_path / "r3", overrides=TINY, condition_on=["band_gap"])


def test_bad_files_are_refused_with_the_reason(tmp_path, sciogen_cache):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="the file is empty"):
        prepare_run("crystals", str(tmp_path / "empty.csv"))
    write_csv(tmp_path / "my.csv", perovskites(3))
    with pytest.raises(ValueError, match=r"no 'structure' column \(columns: material_id, cif, formation_energy\)"):
        prepare_run("crystals", str(tmp_path / "my.csv"), column="structure")
    with pytest.raises(ValueError, match="no column 'gap' to condition on"):
        prepare_run("crystals", str(tmp_path / "my.csv"), condition_on=["gap"])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        prepare_run("crystals", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="--labels is not an option of the 'crystals' domain"):
        prepare_run("crystals", str(tmp_path / "my.csv"), labels="x")
    with pytest.raises(ValueError, match="implemented for CSPNet models only"):
        prepare_run("crystals/perov5_unigenx", str(tmp_path / "my.csv"), condition_on=["formation_energy"])
    folder = tmp_path / "cifs"
    folder.mkdir()
    CifWriter(perovskites(1)[0]).write_file(folder / "good.cif")
    (folder / "bad.cif").write_text("garbage")
    big = Structure(Lattice.cubic(6.0), ["Na"] * 4 + ["Cl"] * 4,
                    [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, .5, .5], [0, 0, .5], [0, .5, 0], [.5, 0, 0]])
    CifWriter(big).write_file(folder / "big.cif")
    with pytest.raises(ValueError, match=r"(?s)only 1 usable crystals \(at least 2.*bad.cif \[1\].*big.cif \[1\]: 8 atoms"):
        sciogen.fit("crystals", data=str(folder), run_dir=tmp_path / "run", overrides=TINY + ["data.max_atoms=5"])
    assert "8 atoms, the model supports at most 5" in (tmp_path / "run" / "skipped.csv").read_text()


def test_default_recipe_without_data_names_download(tmp_path, sciogen_cache):
    with pytest.raises(FileNotFoundError, match=r"perov_5 file val.csv is not in the dataset cache.*--download"):
        sciogen.fit("crystals", run_dir=tmp_path / "run", overrides=TINY)
    generator, _ = prepare_run("crystals", None, download=True)
    assert generator.config.data.download and generator.config.data.path is None
    with pytest.raises(ValueError, match="--download fetches the recipe's registered dataset"):
        prepare_run("crystals", str(tmp_path), download=True)


def test_unconditional_models_have_no_condition_parameters():
    plain = CSPNet(CSPNetConfig(10, hidden=16, layers=1, frequencies=2, time_dim=8))
    assert not any(k.startswith("cond_embed") for k in plain.state_dict())
    with pytest.raises(ValueError, match="this model was trained without conditions"):
        CrystalGenerator(CrystalConfig()).sample(1, condition={"x": 1.0})


def test_condition_embedding_uses_the_null_embedding_when_a_label_is_missing():
    torch.manual_seed(0)
    net = CSPNet(CSPNetConfig(10, hidden=16, layers=1, frequencies=2, time_dim=8, cond_dim=2)).eval()
    b, n = 3, 4
    args = (torch.randint(0, 10, (b, n)), torch.rand(b, n, 3), torch.eye(3).expand(b, 3, 3), torch.ones(b, n, dtype=torch.bool),
            torch.full((b,), 0.5), torch.full((b,), 0.5))
    given = torch.tensor([[True, False]] * b)
    one = net(*args, cond=torch.tensor([[1.0, 5.0]] * b), cond_mask=given)
    two = net(*args, cond=torch.tensor([[1.0, -7.0]] * b), cond_mask=given)  # the missing value is ignored
    other = net(*args, cond=torch.tensor([[-1.0, 5.0]] * b), cond_mask=given)
    null = net(*args)  # no condition: every null embedding
    assert torch.equal(one["frac"], two["frac"])
    assert not torch.allclose(one["frac"], other["frac"]) and not torch.allclose(one["frac"], null["frac"])


def test_tensors_are_cached_by_content_and_a_damaged_file_is_rebuilt(sciogen_cache, capsys):
    from sciogen.crystals.datasets import crystal_tensors, read_own_crystals, usable_tensors
    from sciogen.crystals.representation import CrystalSpec
    from sciogen.data.records import RecordLog

    recs = read_own_crystals(perovskites(4) + [perovskites(1)[0].copy()], RecordLog())
    recs.structures[-1].replace_species({"Sr": "Og"})  # outside the vocabulary: left out, with its reason
    spec = CrystalSpec.all_elements(5)
    log = RecordLog()
    tensors, kept = usable_tensors(recs, spec, log)
    files = list((sciogen_cache / "crystals" / "tensors").iterdir())
    assert kept == [0, 1, 2, 3] and len(files) == 1 and files[0].suffix == ".pt" and len(log.skipped) == 1
    log_again = RecordLog()
    again, kept_again = usable_tensors(recs, spec, log_again)  # from the file: same tensors, same report
    assert kept_again == kept and torch.equal(again.frac, tensors.frac) and log_again.skipped == log.skipped
    files[0].write_bytes(files[0].read_bytes()[:100])  # a copy cut short
    rebuilt, _ = usable_tensors(recs, spec, RecordLog())
    assert torch.equal(rebuilt.lattice, tensors.lattice) and "cannot be read" in capsys.readouterr().err
    good = read_own_crystals(perovskites(4), RecordLog())
    plain = crystal_tensors(good, spec)
    assert len(list((sciogen_cache / "crystals" / "tensors").iterdir())) == 2  # another content, another key
    assert torch.equal(crystal_tensors(good, spec).types, plain.types) and torch.equal(plain.types, tensors.types)
