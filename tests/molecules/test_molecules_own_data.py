"""Your own molecules end to end: `sciogen train molecules --data FILE` in every accepted format,
then `sciogen sample` and `sciogen evaluate`; conditions on your columns; bad files refused or
reported by line / row / record; QM9 and MOSES references through the dataset registry's cache.

One run goes through the shell (subprocesses, as a user types it); the others call the same
command line in-process (`sciogen.cli.main`), which saves the ~10 s import per command.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
import torch  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem, Crippen  # noqa: E402

import sciogen  # noqa: E402
from sciogen.cli import main  # noqa: E402

from ..helpers import run_sciogen  # noqa: E402

SMILES = ["CC(=O)NC1CC1", "OCC#N", "C1=CC=CN=C1", "CC(C)(C)O", "O=C1C=CC(=O)N1", "C[NH3+]", "CC1(C)OC1C#C",
          "CCOC(C)=O", "N#CC1CCC1", "CC1=CC=CO1", "OC1CCOC1", "CC(N)C#N", "Clc1ccccc1", "CC(=O)[O-]", "OCCBr",
          "CS(C)(=O)=O"]
#: bad records and the words their reason must contain
GARBAGE = {"C1CC": "unclosed ring", "xyz": "syntax error", "c1cccc1": "kekulize", "*CC": "dummy", "[CH3]": "radical"}
TINY = ["--set", "train.steps=2", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
        "--set", "model.node_dim=16", "--set", "model.edge_dim=8", "--set", "model.layers=1",
        "--set", "sampling.steps=2", "--set", "sampling.batch_size=8"]


def logp(smiles: str) -> float:
    return round(Crippen.MolLogP(Chem.MolFromSmiles(smiles)), 3)


def write_smi(path: Path, garbage: bool = True) -> Path:
    lines = ["SMILES name"] + [f"{s} mol{i}" for i, s in enumerate(SMILES)] + [""]
    lines += [f"{s} bad{i}" for i, s in enumerate(GARBAGE)] if garbage else []
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table(path: Path, sep: str = ",") -> Path:
    """SMILES in a `Smiles` column, a numeric `pIC50` (one cell empty, one not a number), a text column."""
    rows = [["id", "Smiles", "pIC50", "series"]]
    for i, s in enumerate(SMILES):
        value = "" if i == 3 else ("high" if i == 5 else str(logp(s)))
        rows.append([str(i), s, value, "A"])
    path.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    return path


def write_sdf(path: Path) -> Path:
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(SMILES):
        mol = Chem.MolFromSmiles(s)
        mol.SetProp("_Name", f"mol{i}")
        mol.SetProp("pIC50", str(logp(s)))
        AllChem.Compute2DCoords(mol)
        writer.write(mol)
    writer.close()
    with open(path, "a") as handle:  # a broken record (a bond line is missing)
        handle.write("broken\n  RDKit\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n"
                     "    0.0000    0.0000    0.0000 C   0  0\n$$$$\n")
    return path


def write_smi_gz(path: Path) -> Path:
    path.write_bytes(gzip.compress(write_smi(path.with_name("plain.smi")).read_bytes()))
    return path


def write_parquet(path: Path) -> Path:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame({"canonical_smiles": SMILES + [None, "C1CC"],
                  "pIC50": [logp(s) for s in SMILES] + [1.0, 2.0]}).to_parquet(path)
    return path


def skipped(run: Path) -> list[dict]:
    path = run / "skipped.csv"
    return list(csv.DictReader(path.open())) if path.is_file() else []


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty dataset / tensor cache for the module ($SCIOGEN_CACHE)."""
    folder = tmp_path_factory.mktemp("sciogen-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SCIOGEN_CACHE", str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def csv_run(cache, tmp_path_factory):
    """A model trained on a CSV, conditioned on its `pIC50` column and RDKit's QED."""
    folder = tmp_path_factory.mktemp("csv")
    data = write_table(folder / "actives.csv")
    run = folder / "run"
    assert cli("train", "molecules", "--data", data, "--condition-on", "pIC50,qed", "--run-dir", run, *TINY) == 0
    return data, run


# -- the shell, as a user types it ----------------------------------------------------------------


def test_a_smiles_file_trains_samples_and_evaluates_from_the_shell(tmp_path):
    data = write_smi(tmp_path / "my molecules.smi")
    run = tmp_path / "run"
    env = {"SCIOGEN_CACHE": str(tmp_path / "cache")}
    done = run_sciogen("train", "molecules", "--data", data.name, "--run-dir", "run", *TINY, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"kept {len(SMILES)} " in done.stderr and "skipped.csv" in done.stderr
    rows = skipped(run)
    first_bad_line = len(SMILES) + 3  # header, the molecules, one blank line
    assert [r["index"] for r in rows] == [f"line {first_bad_line + k}" for k in range(len(GARBAGE))]
    for row, (smiles, words) in zip(rows, GARBAGE.items()):
        assert smiles in row["reason"] and words in row["reason"], row
    done = run_sciogen("sample", "run", "-n", "12", "--out", "samples.csv", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "samples.csv").read_text().splitlines()) == 13  # a header, then every sample, valid or not
    done = run_sciogen("evaluate", "molecules", "samples.csv", "--reference", data.name, "--json",
                       cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["num_samples"] == 12 and "novelty" in metrics and "qed_w1" in metrics


# -- every format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tsv", "parquet", "sdf", "smi.gz"])
def test_each_format_trains_samples_and_evaluates(fmt, cache, tmp_path, capsys):
    writers = {"tsv": lambda p: write_table(p, "\t"), "parquet": write_parquet, "sdf": write_sdf, "smi.gz": write_smi_gz}
    data = writers[fmt](tmp_path / f"mols.{fmt}")
    run = tmp_path / "run"
    condition = [] if fmt == "smi.gz" else ["--condition-on", "pIC50"]
    assert cli("train", "molecules", "--data", data, *condition, "--run-dir", run, *TINY) == 0, capsys.readouterr().err
    ends = [n for n, line in enumerate(data.read_text().splitlines(), 1) if line.startswith("$$$$")] if fmt == "sdf" else [0]
    sdf_line = ends[len(SMILES) - 1] + 1 if fmt == "sdf" else None  # the broken record follows the good ones
    expected = {"tsv": ["line 7"], "parquet": ["row 16", "row 17"], "sdf": [f"record 16 (line {sdf_line})"],
                "smi.gz": [f"line {len(SMILES) + 3 + k}" for k in range(len(GARBAGE))]}[fmt]
    assert [r["index"] for r in skipped(run)] == expected
    gen = sciogen.load(run, device="cpu")
    assert gen.conditions == ([] if fmt == "smi.gz" else ["pIC50"])
    assert set(gen.spec.atom_types) == {"C", "O", "N", "[N+]", "Cl", "[O-]", "Br", "S"}
    # .csv keeps invalid samples (an .sdf holds the valid ones only, none from so short a training)
    assert cli("sample", run, "-n", "6", "--out", tmp_path / "s.csv") == 0
    capsys.readouterr()
    assert cli("evaluate", "molecules", tmp_path / "s.csv", "--reference", data, "--json") == 0
    assert json.loads(capsys.readouterr().out)["num_samples"] == 6


def test_a_folder_or_glob_of_files_is_one_training_set(cache, tmp_path):
    (tmp_path / "set").mkdir()
    write_smi(tmp_path / "set" / "a.smi", garbage=False)
    write_table(tmp_path / "set" / "b.csv")
    run = tmp_path / "run"
    assert cli("train", "molecules", "--data", tmp_path / "set", "--run-dir", run, *TINY) == 0
    assert [(Path(r["source"]).name, r["index"]) for r in skipped(run)] == []  # pIC50 is not a condition here
    assert cli("train", "molecules", "--data", str(tmp_path / "set" / "*.smi"), "--run-dir", tmp_path / "r2", *TINY) == 0


# -- conditions on your own columns -------------------------------------------------------------------


def test_condition_on_a_csv_column_then_sample_with_it(csv_run, tmp_path):
    data, run = csv_run
    rows = skipped(run)
    assert [(r["index"], r["reason"]) for r in rows] == [
        ("line 7", "pIC50='high' is not a number (leave the cell empty or write NA for an unknown value)")]
    gen = sciogen.load(run, device="cpu")
    assert gen.conditions == ["pIC50", "qed"]
    stats = gen.condition_stats["pIC50"]
    values = [logp(s) for i, s in enumerate(SMILES) if i not in (3, 5)]
    assert stats["known"] == len(values)  # the empty cell is kept, as an unknown value
    assert stats["min"] == pytest.approx(min(values), abs=1e-4) and stats["max"] == pytest.approx(max(values), abs=1e-4)
    assert float(gen.cond_mean[0]) == pytest.approx(sum(values) / len(values), abs=1e-4)
    mols = gen.sample(5, condition={"pIC50": 1.2}, guidance=2.0, seed=0)
    assert len(mols) == 5
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['logp'\]; this model was trained on \['pIC50', 'qed'\]"):
        gen.sample(2, condition={"logp": 1.0})
    assert cli("sample", run, "-n", "4", "--out", tmp_path / "c.csv", "--condition", "pIC50=1.2", "--guidance", "2") == 0
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 5


def test_condition_names_are_checked_before_training(csv_run, tmp_path, capsys):
    data, _ = csv_run
    assert cli("train", "molecules", "--data", data, "--condition-on", "pic50", "--run-dir", tmp_path / "r") == 1
    assert "no column or SD tag named 'pic50' to condition on; did you mean 'pIC50'?" in capsys.readouterr().err
    assert cli("train", "molecules", "--data", data, "--condition-on", "series", "--run-dir", tmp_path / "r") == 1
    assert "column 'series' holds no numbers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_python_one_liner_and_a_list_of_molecules(cache, tmp_path):
    data = write_table(tmp_path / "actives.csv")
    gen = sciogen.fit("molecules", data=str(data), run_dir=tmp_path / "run", condition_on=["pIC50"],
                      overrides=[a for a in TINY if a != "--set"])
    assert gen.sample(3, condition={"pIC50": 0.5}, seed=0) and gen.data_log.kept == len(SMILES) - 1
    from sciogen.registry import prepare_run

    mols = [Chem.MolFromSmiles(s) for s in SMILES] + [None, "C1CC"]
    gen, _ = prepare_run("molecules", mols, [a for a in TINY if a != "--set"])
    assert gen.config.data.dataset == "custom" and gen.conditions == []
    gen.fit(mols, run_dir=tmp_path / "run2")
    assert [(r.index, r.reason) for r in gen.data_log.skipped] == [
        ("item 16", "a NoneType, not a SMILES string or an RDKit Mol"),
        ("item 17", "'C1CC': RDKit cannot read this SMILES: unclosed ring")]


# -- what the model cannot represent --------------------------------------------------------------------


def test_vocabulary_and_size_are_inferred_and_can_be_fixed(cache, tmp_path):
    data = write_smi(tmp_path / "m.smi", garbage=False)
    run = tmp_path / "run"
    assert cli("train", "molecules", "--data", data, "--run-dir", run, *TINY,
               "--set", "data.atom_types=[C,N,O,'[N+]','[O-]']", "--set", "data.max_atoms=6") == 0
    reasons = {r["index"]: r["reason"] for r in skipped(run)}
    assert "atom 3 has type 'Br', not in the vocabulary" in reasons["line 16"]  # OCCBr
    assert "has 7 heavy atoms, more than max_atoms=6" in reasons["line 2"] and "--set data.max_atoms=N" in reasons["line 2"]
    spec = sciogen.load(run, device="cpu").spec
    assert spec.atom_types == ("C", "N", "O", "[N+]", "[O-]") and spec.max_atoms == 6


# -- bad files ---------------------------------------------------------------------------------------------


def test_bad_files_are_refused_with_the_reason(cache, tmp_path, capsys):
    def error(path) -> str:
        assert cli("train", "molecules", "--data", path, "--run-dir", tmp_path / "never", *TINY) == 1
        return capsys.readouterr().err

    (tmp_path / "empty.smi").write_text("\n\n")
    assert "empty.smi: no molecule records (an empty file, or only blank lines)" in error(tmp_path / "empty.smi")
    (tmp_path / "nocol.csv").write_text("name,value\na,1\n")
    assert "no SMILES column among ['name', 'value']" in error(tmp_path / "nocol.csv")
    (tmp_path / "empty.csv").write_text("")
    assert "empty.csv: the file is empty" in error(tmp_path / "empty.csv")
    (tmp_path / "junk.smi").write_text("hello world\nC1CC\n")
    message = error(tmp_path / "junk.smi")
    assert "no usable molecule among 2 records" in message and "[line 2]: 'C1CC'" in message
    (tmp_path / "few.smi").write_text("\n".join(SMILES[:4] + ["C1CC"]) + "\n")
    message = error(tmp_path / "few.smi")
    assert "only 4 usable molecules (at least 10 are needed to train); 1 could not be used" in message
    assert "[line 5]: 'C1CC'" in message
    (tmp_path / "mols.xyz").write_text("3\n")
    assert "mols.xyz: unknown file type; molecule files end in .smi" in error(tmp_path / "mols.xyz")
    assert "no such file or folder" in error(tmp_path / "typo.smi")
    assert cli("train", "molecules", "--data", write_smi(tmp_path / "ok.smi"), "--column", "smiles") == 1
    assert "--column) applies to .csv, .tsv and .parquet files" in capsys.readouterr().err
    assert not (tmp_path / "never" / "checkpoints").exists()  # nothing trained


# -- the dataset registry: QM9 and MOSES from the cache ------------------------------------------------------


def test_registered_references_come_from_the_cache_or_name_download(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path / "empty-cache"))
    assert cli("train", "molecules", "--run-dir", tmp_path / "r", *TINY) == 1
    assert "QM9 is not in the dataset cache" in capsys.readouterr().err
    samples = tmp_path / "s.smi"
    samples.write_text("\n".join(SMILES[:6] + ["None"]) + "\n")
    for name in ("qm9", "moses"):
        assert cli("evaluate", "molecules", samples, "--reference", name) == 1
        assert "add --download to the sciogen command" in capsys.readouterr().err
    assert cli("evaluate", "molecules", samples, "--reference", "qm8") == 1
    assert "neither a file, a folder nor a dataset name (qm9, moses)" in capsys.readouterr().err
    # a cache as a download leaves it (tiny stand-ins of the tables)
    cache = tmp_path / "cache"
    (cache / "qm9").mkdir(parents=True)
    rows = ["gdb_index,smiles"] + [f"{i + 1},{s}" for i, s in enumerate(SMILES * 12)]
    (cache / "qm9" / "qm9_smiles.csv").write_text("\n".join(rows) + "\n")
    (cache / "moses").mkdir()
    for split in ("train", "test"):
        with gzip.open(cache / "moses" / f"{split}.csv.gz", "wt") as handle:
            handle.write("SMILES,SPLIT\n" + "".join(f"{s},{split}\n" for s in SMILES))
    monkeypatch.setenv("SCIOGEN_CACHE", str(cache))
    for name in ("qm9", "moses"):
        capsys.readouterr()
        assert cli("evaluate", "molecules", samples, "--reference", name, "--json") == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["validity"] == pytest.approx(6 / 7) and metrics["novelty"] == 0.0


def test_qm9_recipe_trains_from_the_registry_cache(shared_datasets, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "qm9").symlink_to(shared_datasets / "molecules" / "qm9", target_is_directory=True)
    monkeypatch.setenv("SCIOGEN_CACHE", str(cache))
    run = tmp_path / "run"
    assert cli("train", "molecules", "--run-dir", run, *TINY, "--set", "data.limit=24") == 0
    gen = sciogen.load(run, device="cpu")
    assert gen.conditions == ["qed", "logp", "gap", "mu"] and gen.spec.atom_types[:4] == ("C", "N", "O", "F")
    assert torch.isfinite(gen.cond_std).all()
