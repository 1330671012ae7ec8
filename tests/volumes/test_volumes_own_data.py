"""Your own volumes, end to end through the command line: a folder of NIfTI / MHA / NRRD / DICOM
series (with a corrupt file and a 2D image among them), --labels, --covariates, sample, evaluate
against the training folder; the registry's copy when no --data is given; the errors a user meets."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

import sciogen  # noqa: E402
from sciogen.cli import main  # noqa: E402
from sciogen.registry import load_run_config  # noqa: E402
from sciogen.volumes import VolumeGenerator, volume_records  # noqa: E402
from sciogen.volumes.datasets import find_volumes, own_volume_records  # noqa: E402
from sciogen.volumes.generator import reference_volumes  # noqa: E402
from sciogen.volumes.io import write_volume  # noqa: E402

from ..helpers import run_sciogen, write_dicom_series  # noqa: E402

MNI = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: a 16^3 grid and a two-level U-Net: seconds a step on one core
TINY = ["data.shape=[16,16,16]", "model.channels=[8,8]", "model.attention_levels=[false,false]",
        "model.norm_num_groups=4", "train.steps=2", "train.checkpoint_every=2", "train.log_every=1"]
SET = [arg for item in TINY for arg in ("--set", item)]


def phantom(shift: float = 0.0, seed: int = 0, n: int = 16) -> np.ndarray:
    """An ellipsoid head-like blob (X, Y, Z) with noise, float32."""
    g = np.mgrid[:n, :n, :n].astype(np.float32) / (n - 1) * 2 - 1
    r = np.sqrt(((g[0] - shift) / 0.7) ** 2 + (g[1] / 0.6) ** 2 + (g[2] / 0.8) ** 2)
    noise = np.random.default_rng(seed).normal(0, 2, (n, n, n))
    return (np.clip(1 - r, 0, None) * 100 + noise).astype(np.float32)


def write_nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def write_itk(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.T.copy()), str(path))
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A folder of every accepted format, one corrupt .nii.gz and one 2D image."""
    folder = tmp_path_factory.mktemp("own") / "scans"
    write_nifti(folder / "a.nii.gz", phantom(0.0, 0))
    write_nifti(folder / "site2" / "b.nii", phantom(0.1, 1))
    write_itk(folder / "c.mha", phantom(-0.1, 2))
    write_itk(folder / "site2" / "d.nrrd", phantom(0.05, 3))
    write_dicom_series(folder / "e_dicom", (phantom(-0.05, 4) * 10).astype(np.int16).transpose(2, 1, 0), "1.2.826.0.1.7",
                       (1.5, 1.5, 1.5))
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    write_nifti(folder / "slice.nii.gz", phantom(0.0, 5)[:, :, 8])
    return folder


@pytest.fixture(scope="module")
def trained(mixed, tmp_path_factory) -> tuple[Path, Path]:
    """One CLI training on the mixed folder, shared by the tests below."""
    work = tmp_path_factory.mktemp("work")
    done = run_sciogen("train", "volumes", "--data", mixed, "--run-dir", work / "run", *SET, cwd=work)
    assert done.returncode == 0, done.stderr
    return work, done


def test_a_folder_of_every_format_trains_and_reports_the_bad_files(trained, mixed):
    work, done = trained
    assert "kept 5 volumes" in done.stderr and "skipped 2" in done.stderr
    rows = list(csv.DictReader((work / "run" / "skipped.csv").open()))
    found = [str(p) for p in find_volumes(mixed)]  # the indices are positions in this sorted list
    by_file = {Path(r["source"]).name: r for r in rows}
    assert set(by_file) == {"broken.nii.gz", "slice.nii.gz"}
    assert int(by_file["broken.nii.gz"]["index"]) == found.index(str(mixed / "broken.nii.gz"))
    assert "cannot read it as a volume" in by_file["broken.nii.gz"]["reason"]
    assert by_file["slice.nii.gz"]["reason"].startswith("not a 3D volume: spatial shape (16, 16)")
    config = sciogen.load(work / "run", device="cpu").config
    assert config.data.path == str(mixed) and config.condition.names == []


def test_sample_then_evaluate_against_the_training_folder(trained, mixed):
    work, _ = trained
    done = run_sciogen("sample", work / "run", "-n", "2", "--steps", "2", "--out", work / "samples", cwd=work)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (work / "samples").glob("*.nii.gz")) == ["sample_000.nii.gz", "sample_001.nii.gz"]
    done = run_sciogen("evaluate", "volumes", work / "samples", "--reference", mixed, "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert {"diversity_ms_ssim", "nearest_ssim", "nearest_psnr", "histogram_w1", "mmd"} <= set(metrics)
    assert "kept 5 reference volumes, skipped 2" in done.stderr  # the bad files are reported here too
    # the training folder against itself: each volume finds itself; samples after 2 steps do not
    reference = reference_volumes(mixed, (16, 16, 16))
    assert reference.shape == (5, 1, 16, 16, 16)
    assert VolumeGenerator.evaluate_samples(reference, str(mixed))["nearest_ssim"] > 0.999
    assert metrics["nearest_ssim"] < 0.9


def test_labels_and_covariates_condition_the_model(tmp_path):
    scans, labels = tmp_path / "scans", tmp_path / "labels"
    ages = {"s0": 60.0, "s1": 70.0, "s2": 80.0}
    for i, name in enumerate(ages):
        volume = phantom(0.1 * i - 0.1, i)
        write_nifti(scans / f"{name}.nii.gz", volume)
        label = torch.from_numpy((volume > 40).astype(np.float32) + (volume > 80))[None]
        write_volume(label, labels / f"{name}.nrrd", np.diag([2.0, 2.0, 2.0, 1.0]), label=True)  # any format
    write_nifti(scans / "s3.nii.gz", phantom(0.0, 9))
    write_nifti(labels / "s3.nii.gz", (phantom(0.0, 9) > 40).astype(np.uint8), np.eye(4))  # off its image's grid
    write_nifti(labels / "orphan.nii.gz", np.zeros((16, 16, 16), np.uint8))  # a label without an image
    write_nifti(scans / "s4.nii.gz", phantom(0.0, 10))  # an image without a label
    table = tmp_path / "subjects.csv"
    table.write_text("subject,age,site\n" + "".join(f"{k},{v},x\n" for k, v in ages.items()) + "ghost,50,y\n")
    done = run_sciogen("train", "volumes", "--data", scans, "--labels", labels, "--covariates", table,
                       "--run-dir", tmp_path / "run", *SET, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fewer than train.batch_size=4; training with batch_size=3" in done.stderr
    assert "['site'] hold text" in done.stderr
    reasons = {(Path(r["source"]).name, r["index"]): r["reason"]
               for r in csv.DictReader((tmp_path / "run" / "skipped.csv").open())}
    assert "differ in affine" in reasons[("s3.nii.gz", "3")]
    assert reasons[("s4.nii.gz", "4")].startswith("no label for it")
    assert reasons[("orphan.nii.gz", "0")].startswith("a label without a volume")
    assert "'ghost' names no volume" in reasons[("subjects.csv", "line 5")]
    gen = sciogen.load(tmp_path / "run", device="cpu")
    assert gen.config.condition.scalars == ["age"] and gen.config.condition.image == "label"
    assert gen.label_max == 2.0
    done = run_sciogen("sample", tmp_path / "run", "-n", "1", "--steps", "2", "--out", tmp_path / "out",
                       "--image", labels / "s0.nrrd", "--condition", "age=75", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sample = nib.load(str(tmp_path / "out" / "sample_000.nii.gz"))
    assert sample.shape == (16, 16, 16)


def test_python_takes_a_folder_string_and_volume_records(mixed, tmp_path):
    config = load_run_config("volumes", [*TINY, "train.steps=1", "train.progress=false"])
    gen = VolumeGenerator(config).fit(str(mixed))  # a path, never walked letter by letter
    assert gen.trained_steps == 1 and gen.data_log.kept == 5 and len(gen.data_log) == 2
    records = volume_records(mixed)  # the folder's own level only: a.nii.gz, c.mha, the DICOM series, 2 bad
    gen = VolumeGenerator(config).fit(records)
    assert gen.data_log.kept == 3 and {Path(r.source).name for r in gen.data_log.skipped} == {"broken.nii.gz",
                                                                                              "slice.nii.gz"}
    gen = sciogen.fit("volumes", data=str(mixed / "*.nii.gz"), run_dir=tmp_path / "run", overrides=TINY)
    assert gen.data_log.kept == 1 and (tmp_path / "run" / "skipped.csv").is_file()


def test_own_volume_records_match_labels_and_rows_by_name(tmp_path):
    for name in ("sub-01/t1.nii.gz", "sub-02/t1.mha"):
        (tmp_path / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / name).write_bytes(b"")
    (tmp_path / "l" / "sub-02").mkdir(parents=True)
    (tmp_path / "l" / "sub-02" / "t1.nii.gz").write_bytes(b"")
    (tmp_path / "t.csv").write_text("id,age\nsub-01,70\nsub-02,\n")
    from sciogen.data.records import RecordLog

    log = RecordLog()
    records = own_volume_records(tmp_path / "d", labels=tmp_path / "l", covariates=tmp_path / "t.csv", log=log)
    (record,) = records  # sub-01 has no label: left out and reported
    assert record["image"] == str(tmp_path / "d" / "sub-02" / "t1.mha")
    assert record["label"] == str(tmp_path / "l" / "sub-02" / "t1.nii.gz")  # any suffix, the same relative path
    assert np.isnan(record["age"])  # the subject folder matched its row; the empty cell is missing
    assert [(Path(r.source).parent.name, r.index) for r in log.skipped] == [("sub-01", 0)]
    with pytest.raises(ValueError, match=r"t1.nii.gz \[0\]: no label for it"):
        own_volume_records(tmp_path / "d", labels=tmp_path / "l")


def test_errors_a_user_meets(tmp_path, mixed, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "volumes", "--data", str(tmp_path / "empty")]) == 1
    assert "no volumes found in this folder or below it" in capsys.readouterr().err
    assert main(["train", "volumes", "--data", str(tmp_path / "scnas")]) == 1
    assert "scnas: no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    shutil.copytree(mixed, bad, ignore=shutil.ignore_patterns("a.*", "b.*", "c.*", "d.*", "e_*"))
    assert main(["train", "volumes", "--data", str(bad), "--run-dir", str(tmp_path / "r"), *SET]) == 1
    err = capsys.readouterr().err
    assert "only 0 usable volumes (at least 1 are needed to train); 2 could not be used" in err
    assert "broken.nii.gz [0]: cannot read it as a volume" in err
    assert main(["train", "volumes", "--data", str(mixed), "--download"]) == 1
    assert "leave --download out" in capsys.readouterr().err


def test_without_data_the_registry_copy_or_a_clear_message(tmp_path, sciogen_cache, shared_datasets, capsys):
    assert main(["train", "volumes", "--run-dir", str(tmp_path / "r"), *SET]) == 1
    err = capsys.readouterr().err
    assert f"{MNI} of the registered dataset 'mni152_2009' is not in the cache" in err and "--download" in err
    write_nifti(tmp_path / "samples" / "sample_000.nii.gz", phantom())
    assert main(["evaluate", "volumes", str(tmp_path / "samples"), "--reference", "mni152_2009"]) == 1
    assert "--download" in capsys.readouterr().err
    (sciogen_cache / "mni152_2009").mkdir()
    (sciogen_cache / "mni152_2009" / MNI).symlink_to(shared_datasets / "volumes" / "nilearn_0.14.1" / MNI)
    assert main(["train", "volumes", "--run-dir", str(tmp_path / "r"), *SET, "--set", "train.steps=1"]) == 0
    rows = list(csv.DictReader((tmp_path / "r" / "skipped.csv").open()))
    assert [r["index"] for r in rows] == ["1", "2", "3"]  # the shipped recipe's other brains: not registered
    assert all(r["reason"].startswith("not in the dataset registry") for r in rows)
    gen = sciogen.load(tmp_path / "r", device="cpu")
    samples = gen.sample(2, steps=2, seed=0)
    scores = VolumeGenerator.evaluate_samples(samples, "mni152_2009")
    assert {"nearest_ssim", "mmd", "histogram_w1"} <= set(scores)
