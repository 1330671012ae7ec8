"""The shared own-data path: packaged recipes, `sciogen train DOMAIN --data`, sciogen.fit, RecordLog."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

import sciogen
from sciogen.config import ConfigError
from sciogen.data.records import RecordLog, expand_paths
from sciogen.recipes import load_recipe, merge, recipe_names, recipe_text, resolve_recipe
from sciogen.registry import domains, load_run_config

from ..helpers import run_sciogen

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "train.steps=3", "--set", "train.validate_every=0", "--set", "train.checkpoint_every=3"]


def test_every_domain_has_a_packaged_default_recipe():
    names = recipe_names()
    for spec in domains():
        assert spec.recipe in names, spec.name
        assert yaml.safe_load(recipe_text(spec.recipe))["domain"] == spec.name


@pytest.mark.parametrize("name", recipe_names())
def test_packaged_recipes_never_point_into_a_repository(name):
    text = recipe_text(name)
    assert "../shared" not in text and "/work/" not in text
    config = load_run_config(name)  # builds the typed config of its domain
    assert config.domain == name.split("/")[0] or name.startswith("volumes/longitudinal")


def test_repository_recipes_are_thin_references_to_the_packaged_ones():
    files = sorted((REPO / "domains").glob("*/*.yaml"))
    references = [f for f in files if "recipe" in yaml.safe_load(f.read_text())]
    assert {f"{f.parent.name}/{f.stem}" for f in references} == set(recipe_names())
    for f in references:
        data = yaml.safe_load(f.read_text())
        own = {k: v for k, v in data.items() if k != "recipe"}
        # a thin reference changes nothing but where the developers' copy of the data lies
        assert set(own) <= {"data"} and set(own.get("data", {})) <= {"path", "root"}, f
        merged = resolve_recipe(data, str(f))
        assert merged == merge(load_recipe(data["recipe"]), own)


def test_a_yaml_file_refers_to_a_recipe_and_changes_keys(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("recipe: toy/gmm\ntrain:\n  steps: 7\n")
    config = load_run_config(path)
    assert config.train.steps == 7 and config.train.lr == load_run_config("toy/gmm").train.lr
    path.write_text("recipe: toy/gmn\n")
    with pytest.raises(ConfigError, match="no packaged recipe named 'toy/gmn'"):
        load_run_config(path)


def test_a_domain_name_takes_its_default_recipe_and_a_typo_lists_the_choices():
    assert load_run_config("toy").train.steps == load_run_config("toy/gmm").train.steps
    with pytest.raises(ConfigError, match="neither a YAML file, a packaged recipe nor a domain"):
        load_run_config("moleculs")


def test_record_log_reports_writes_and_refuses(tmp_path, capsys):
    log = RecordLog()
    log.skip("a.smi", 3, "cannot parse 'C1CC'")
    log.skip("a.smi", 9, "empty")
    log.kept = 1
    with pytest.raises(ValueError, match=r"(?s)only 1 usable molecules \(at least 2.*a.smi \[3\]: cannot parse"):
        log.require(2, "molecules")
    log.require(1, "molecules")
    path = log.report(tmp_path, "molecules")
    assert "kept 1 molecules, skipped 2 (a.smi [3]" in capsys.readouterr().err
    rows = list(csv.reader(path.open()))
    assert rows == [["source", "index", "reason"], ["a.smi", "3", "cannot parse 'C1CC'"], ["a.smi", "9", "empty"]]
    RecordLog().report(tmp_path)  # a clean run removes the stale list
    assert not path.exists()


def test_expand_paths_takes_files_folders_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.nii.gz", "sub/b.NII", "c.txt", ".hidden.nii"):
        (tmp_path / name).write_text("x")
    suffixes = (".nii.gz", ".nii")
    assert expand_paths(tmp_path, suffixes) == [tmp_path / "a.nii.gz", tmp_path / "sub" / "b.NII"]
    assert expand_paths(str(tmp_path / "*.nii.gz"), suffixes) == [tmp_path / "a.nii.gz"]
    with pytest.raises(ValueError, match="c.txt: unknown file type"):
        expand_paths(tmp_path / "c.txt", suffixes, "volumes")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        expand_paths(tmp_path / "nope", suffixes)
    with pytest.raises(FileNotFoundError, match="matches no volumes"):
        expand_paths(str(tmp_path / "*.mha"), suffixes, "volumes")


def test_toy_trains_samples_and_evaluates_a_users_file_from_the_shell(tmp_path):
    data = tmp_path / "vectors.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(300, 3)), delimiter=",", header="a,b,c", comments="")
    run = tmp_path / "run"
    done = run_sciogen("train", "toy", "--data", data, "--run-dir", run, *TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (run / "checkpoints").is_dir() and not (run / "skipped.csv").exists()
    done = run_sciogen("sample", run, "-n", "20", "--out", tmp_path / "s.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_sciogen("evaluate", "toy", tmp_path / "s.csv", "--reference", data, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "energy_distance" in done.stdout


def test_options_a_domain_does_not_take_are_refused(tmp_path):
    done = run_sciogen("train", "toy", "--data", tmp_path / "x.csv", "--freq", "D", cwd=tmp_path)
    assert done.returncode == 1
    assert "--freq is not an option of the 'toy' domain" in done.stderr
    done = run_sciogen("train", "toy", "--condition-on", "a", cwd=tmp_path)
    assert done.returncode == 1 and "--condition-on need(s) --data" in done.stderr


def test_sciogen_fit_is_the_same_in_python(tmp_path):
    data = tmp_path / "v.npy"
    np.save(data, np.random.default_rng(1).normal(size=(200, 2)).astype("float32"))
    gen = sciogen.fit("toy", data=str(data), run_dir=tmp_path / "run",
                      overrides=["train.steps=2", "train.validate_every=0", "train.progress=false"])
    assert gen.trained_steps == 2 and gen.config.data.source == "file"
    assert gen.sample(4, seed=0).shape == (4, 2)
    assert gen.config.train.batch_size == 200  # the recipe's 256 lowered to the 200 vectors given
