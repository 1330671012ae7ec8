"""Your own images, end to end: `sciogen train deformation --data FOLDER [--labels DIR]`, then
`sciogen sample` and `sciogen evaluate` from the shell; bad files reported or refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: E402
import torch

import sciogen  # noqa: E402
from sciogen.data.records import RecordLog  # noqa: E402
from sciogen.deformation import DeformationConfig, DeformationDataConfig, DeformationGenerator  # noqa: E402
from sciogen.deformation.metrics import compare_fields  # noqa: E402
from sciogen.deformation.training import brain_phantom, load_training_set, match_labels  # noqa: E402
from sciogen.registry import load_run_config, read_checkpoint  # noqa: E402
from sciogen.train.config import to_dict  # noqa: E402

from ..helpers import run_sciogen  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "model.channels=[4,8]", "--set", "model.time_dim=16", "--set", "train.steps=3",
        "--set", "train.checkpoint_every=3", "--set", "train.log_every=1"]
TINY_2D = ["--set", "data.shape=[32,32]", *TINY]
TINY_3D = ["--set", "data.shape=[16,16,16]", "--set", "model.stem=1", *TINY]
MNI_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _noisy_phantom(shape, seed):
    image, label = brain_phantom(shape)
    noise = 0.02 * torch.randn(image.shape[1:], generator=torch.Generator().manual_seed(seed))
    return (image[0] + noise).numpy().astype(np.float32), label[0].numpy().astype(np.int16)


def _save_nifti(array, path):
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory):
    """Six 2D NIfTI slices of different shapes with label maps (``case3_seg.nii.gz`` style), one
    corrupt file among them; trained a few steps through the command line."""
    home = tmp_path_factory.mktemp("own2d")
    images, labels = home / "images", home / "labels"
    (images / "sub").mkdir(parents=True)
    labels.mkdir()
    for i in range(6):
        image, label = _noisy_phantom((36 + 4 * i, 40), seed=i)
        _save_nifti(image[:, :, None] if i == 5 else image, (images / "sub" if i < 2 else images) / f"case{i}.nii.gz")
        _save_nifti(label, labels / f"case{i}_seg.nii.gz")
    (images / "case9.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    result = _ok(run_sciogen("train", "deformation", "--data", images, "--labels", labels, "--run-dir", "run",
                             *TINY_2D, cwd=home))
    return home, result


def test_a_folder_of_2d_images_with_labels_trains_samples_and_evaluates(run_2d):
    home, result = run_2d
    assert "training on 6 2D images with label maps on a 32x32 grid" in result.stderr
    rows = list(csv.DictReader((home / "run" / "skipped.csv").open()))
    # the files sorted: case2 ... case5, case9, sub/case0, sub/case1
    assert [(Path(r["source"]).name, r["index"]) for r in rows] == [("case9.nii.gz", "4")]
    assert "cannot read it" in rows[0]["reason"]
    assert "sample with: sciogen sample run -n 1000 --out samples/ --image " in result.stdout
    image, label = home / "images" / "case5.nii.gz", home / "labels" / "case5_seg.nii.gz"  # an (X, Y, 1) NIfTI
    _ok(run_sciogen("sample", "run", "-n", "3", "--out", "out", "--image", image, "--label", label, cwd=home))
    out = home / "out"
    assert sorted(p.name for p in out.glob("sample_000_*")) == [
        "sample_000_ddf.nii.gz", "sample_000_image.nii.gz", "sample_000_label.nii.gz"]
    result = _ok(run_sciogen("evaluate", "deformation", "out", "--reference", "images", "--json", cwd=home))
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 3 and metrics["folding_pct"] == 0.0 and metrics["min_det"] > 0
    assert metrics["mean_disp_pct"] > 0.5
    assert metrics["ref_n"] == 6 and "kept 6 reference images, skipped 1" in result.stderr  # the corrupt file
    assert 0 < metrics["ref_fg_fraction"] < 1 and 0 <= metrics["fg_fraction_w1"] < 0.5
    assert 0.5 < metrics["sharpness_ratio"] < 1.5
    # a folder of fields as the reference: per-field statistics compared (the same fields: distance 0)
    samples = DeformationGenerator.read_samples(out)
    assert len(samples) == 3 and samples[0]["image"].shape == (1, 56, 40) and samples[0]["ddf"].shape == (2, 56, 40)
    fields = DeformationGenerator.evaluate_samples(samples, str(out))
    assert fields["mean_disp_pct_w1"] == 0.0 and fields["ref_n"] == 3
    doubled = compare_fields(samples, [{"ddf": 2 * s["ddf"]} for s in samples])
    assert doubled["mean_disp_pct_w1"] == pytest.approx(fields["ref_mean_disp_pct"], rel=1e-4)


def test_a_folder_of_3d_volumes_in_several_formats_trains_a_3d_model(tmp_path):
    vols = tmp_path / "vols"
    vols.mkdir()
    shapes = [(20, 24, 18), (22, 20, 19), (18, 18, 24)]
    arrays = [_noisy_phantom(s, seed=i)[0] for i, s in enumerate(shapes)]
    _save_nifti(arrays[0], vols / "a.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(arrays[1].T.copy()), str(vols / "b.mha"))
    np.save(vols / "c.npy", arrays[2])
    result = _ok(run_sciogen("train", "deformation/brain_mri_3d", "--data", vols, "--run-dir", "run", *TINY_3D,
                             cwd=tmp_path))
    assert "training on 3 volumes on a 16x16x16 grid" in result.stderr
    assert not (tmp_path / "run" / "skipped.csv").exists()
    _ok(run_sciogen("sample", "run", "-n", "2", "--out", "out", "--image", vols / "b.mha", cwd=tmp_path))
    metrics = json.loads(_ok(run_sciogen("evaluate", "deformation", "out", "--reference", "vols", "--json",
                                         cwd=tmp_path)).stdout)
    assert metrics["n"] == 2 and metrics["folding_pct"] == 0.0 and metrics["ref_n"] == 3


def test_an_empty_folder_and_a_mix_of_2d_and_3d_are_refused_with_the_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_sciogen("train", "deformation", "--data", "empty", *TINY_2D, cwd=tmp_path)
    assert result.returncode == 1 and "the folder empty holds no images ending in .nii" in result.stderr
    mix = tmp_path / "mix"
    mix.mkdir()
    _save_nifti(_noisy_phantom((30, 30), 0)[0], mix / "slice.nii.gz")
    _save_nifti(_noisy_phantom((20, 20, 20), 1)[0], mix / "volume.nii.gz")
    result = run_sciogen("train", "deformation", "--data", "mix", *TINY_2D, cwd=tmp_path)
    assert result.returncode == 1
    assert "the images mix 1 2D images (slice.nii.gz) and 1 3D volumes (volume.nii.gz)" in result.stderr


def _config(root, files, dims=2, labels=None):
    shape = [32] * dims
    return DeformationDataConfig(root=str(root), files=files, spatial_dims=dims, shape=shape, labels=labels)


def test_2d_readers_png_tiff_npy_npz_mha_and_what_is_left_out(tmp_path):
    image = _noisy_phantom((30, 34), 0)[0]
    grey = (image.clip(0, 1) * 255).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([grey] * 3, -1), isVector=True), str(tmp_path / "colour.png"))
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "grey.tif"))
    sitk.WriteImage(sitk.GetImageFromArray(image.T.copy()), str(tmp_path / "slice.mha"))
    np.save(tmp_path / "array.npy", image)
    np.savez(tmp_path / "one.npz", img=image)
    np.savez(tmp_path / "two.npz", a=image, b=image)            # which array? -> reported
    np.save(tmp_path / "flat.npy", np.zeros((30, 30), np.float32))  # constant -> reported
    np.save(tmp_path / "line.npy", np.ones(30, np.float32))     # 1D -> reported
    (tmp_path / "empty.png").write_bytes(b"")
    files = sorted(p.name for p in tmp_path.iterdir())
    log = RecordLog()
    found = load_training_set(_config(tmp_path, files), log=log)
    assert found.dims == 2 and found.images.shape == (5, 1, 32, 32) and log.kept == 5
    reasons = {Path(r.source).name: (r.index, r.reason) for r in log.skipped}
    assert set(reasons) == {"two.npz", "flat.npy", "line.npy", "empty.png"}
    assert reasons["flat.npy"] == (files.index("flat.npy"), "constant intensity 0 (an empty image)")
    assert reasons["two.npz"][1] == "cannot read it (KeyError: name the array as two.npz:KEY, one of ['a', 'b'])"
    assert reasons["line.npy"][1] == "expected a 2D or 3D image (with channels first), got array shape (1, 30)"
    assert reasons["empty.png"][1].startswith("cannot read it (RuntimeError:")
    # colour is read as grey: the PNG and the TIFF give the same network image
    by_name = dict(zip([f for f in files if f not in reasons], found.images))
    assert torch.allclose(by_name["colour.png"], by_name["grey.tif"], atol=1e-6)
    with pytest.raises(ValueError, match="a 3D model .* trains on 3D volumes, but the images are 2D"):
        load_training_set(_config(tmp_path, ["array.npy"], dims=3))
    with pytest.raises(ValueError, match=r"(?s)only 0 usable deformation training images.*flat.npy \[0\]: constant"):
        load_training_set(_config(tmp_path, ["flat.npy"]))


def test_labels_are_matched_by_name_and_mismatches_are_reported(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    for folder in (images / "p1", images / "p2", labels / "p1", labels / "p2"):
        folder.mkdir(parents=True)
    for i, patient in enumerate(("p1", "p2")):
        image, label = _noisy_phantom((30, 30), i)
        _save_nifti(image, images / patient / "t1.nii.gz")  # the same name in two folders: matched by path
        _save_nifti(label, labels / patient / "t1_label.nii.gz")
    image, label = _noisy_phantom((30, 30), 5)
    _save_nifti(image, images / "other.nii.gz")
    _save_nifti(label[:20], labels / "other_mask.nii.gz")       # wrong shape -> reported
    _save_nifti(image, images / "alone.nii.gz")                 # no label map -> reported
    config = DeformationGenerator.configure_data(DeformationConfig(data=_config(".", [])), images,
                                                 labels=labels).data
    config.shape = [32, 32]
    matched = match_labels([str(Path(config.root) / f) for f in config.files], labels, config.root)
    assert {Path(k).parent.name + "/" + Path(k).name: Path(v).parent.name for k, v in matched.items()
            if not isinstance(v, str)} == {"p1/t1.nii.gz": "p1", "p2/t1.nii.gz": "p2", "images/other.nii.gz": "labels"}
    log = RecordLog()
    found = load_training_set(config, log=log)
    assert found.images.shape == (2, 2, 32, 32) and set(found.images[:, 1].unique().tolist()) == {0.0, 1.0}
    reasons = {Path(r.source).name: r.reason for r in log.skipped}
    assert "no label map named alone" in reasons["alone.nii.gz"]
    assert "has spatial shape (20, 30), the image (30, 30)" in reasons["other.nii.gz"]
    # the labelled region is what the loss is averaged over: an empty region changes the loss
    gen = DeformationGenerator(DeformationConfig(data=_config(".", [], labels=str(labels))))
    velocity = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    with_mask = gen.loss(lambda x, t: velocity, found.images, torch.Generator().manual_seed(0))
    without = gen.loss(lambda x, t: velocity, found.images[:, :1], torch.Generator().manual_seed(0))
    assert with_mask.shape == without.shape == (2,) and not torch.allclose(with_mask, without)
    weights = gen.process.loss_weights(found.images[:, :1], found.images[:, 1])
    assert torch.equal(weights > 0, torch.nn.functional.max_pool2d(found.images[:, 1:], 5, 1, 2)[:, 0] > 0)


def test_without_data_the_recipe_reads_the_registry_copy_or_says_how_to_get_it(tmp_path, sciogen_cache,
                                                                                shared_datasets):
    with pytest.raises(FileNotFoundError, match="'mni152_2009' .* is not in the cache .*add --download"):
        sciogen.fit("deformation", run_dir=tmp_path / "run", overrides=["train.steps=1"])
    (sciogen_cache / "mni152_2009").mkdir()
    (sciogen_cache / "mni152_2009" / MNI_T1).symlink_to(shared_datasets / "volumes" / "nilearn_0.14.1" / MNI_T1)
    log = RecordLog()
    found = load_training_set(load_run_config("deformation").data, log=log)
    assert log.kept == 1 and found.images.shape[0] > 300  # slices of the MNI152 T1
    assert {r.source for r in log.skipped} == {"voxelmorph/test_scan.npz:vol", "nibabel_5.4.2/anatomical.nii",
                                               "dipy_1.12.1/aniso_vox.nii.gz"}  # not in the registry: reported
    samples = [{"ddf": torch.zeros(2, 40, 40), "image": torch.from_numpy(_noisy_phantom((40, 40), 0)[0])[None]}]
    metrics = DeformationGenerator.evaluate_samples(samples, "mni152_2009")
    assert metrics["ref_n"] == found.images.shape[0] and metrics["folding_pct"] == 0.0


@pytest.mark.parametrize("recipe, model", [("brain_mri_2d", "brain-mri-2d"), ("brain_mri_3d", "brain-mri-3d")])
def test_the_thin_references_give_the_shipped_models_config(recipe, model):
    if f"deformation/{model}" not in sciogen.available():
        pytest.skip("shipped model not in this checkout")
    shipped = read_checkpoint(f"deformation/{model}")[0]["config"]
    config = to_dict(load_run_config(REPO / "domains" / "deformation" / f"{recipe}.yaml"))
    assert shipped["data"]["root"] is None  # the shipped file names the registry's copy, not a checkout's path
    for section in ("data", "model", "process", "sampling"):
        expected = {"stem": 1, **shipped[section]} if section == "model" else {"labels": None, **shipped[section]}
        if section == "data":  # the thin reference adds the developers' data root, nothing else
            expected["root"] = config["data"]["root"]
        assert config[section] == (expected if section in ("data", "model") else shipped[section]), section
    shown = ("run_dir", "progress")  # where a run writes and whether it draws bars: not the recipe
    assert {k: config["train"][k] for k in shipped["train"] if k not in shown} == \
        {k: v for k, v in shipped["train"].items() if k not in shown}


def test_wasserstein_distance_is_exact_on_small_samples():
    from sciogen.deformation.metrics import wasserstein_1d

    a = torch.tensor([0.0, 1.0, 3.0])
    assert wasserstein_1d(a, a + 0.5) == pytest.approx(0.5)
    assert wasserstein_1d(torch.tensor([0.0, 0.0]), torch.tensor([1.0])) == pytest.approx(1.0)
    assert wasserstein_1d(torch.tensor([0.0, 2.0]), torch.tensor([1.0])) == pytest.approx(1.0)
