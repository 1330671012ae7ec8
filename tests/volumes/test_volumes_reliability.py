"""Reliability of the volumes domain (issue 22): files without geometry or voxels are named
when read, every sampling / augmenting / inpainting argument is checked before any network
work, a NaN made outside the core solvers raises instead of reaching a volume, and samples
go to a folder (refused as a file name before sampling) that ``evaluate`` reads back."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import torch
from monai.data import MetaTensor  # noqa: E402

from sciogen.cli import main  # noqa: E402
from sciogen.volumes import (  # noqa: E402
    RandVolumeDiffusion,
    RandVolumeDiffusiond,
    VolumeConfig,
    VolumeDataConfig,
    VolumeGenerator,
    VolumeLatentConfig,
    VolumeModelConfig,
    evaluate,
    read_volume,
)
from sciogen.volumes.conditioning import covariate_tensor  # noqa: E402
from sciogen.volumes.io import NotA3DVolumeError, SingularAffineError, VolumeError  # noqa: E402
from sciogen.volumes.monai_interop import DDIMScheduler  # noqa: E402

SHAPE = (16, 16, 16)


def _phantom(n: int = 16, shift: float = 0.0) -> np.ndarray:
    axes = [np.linspace(-1, 1, n)] * 3
    r = np.sqrt(sum(g**2 for g in np.meshgrid(*axes, indexing="ij")))
    return ((r < 0.7 + shift) * 100.0 + (r < 0.3) * -40.0 + 20.0).astype(np.float32)


def _nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def _singular_nifti(path: Path) -> Path:
    """A NIfTI whose sform is all zeros (code 'scanner') and qform unset, as some converters write."""
    img = nib.Nifti1Image(_phantom(), None)  # no affine: saving keeps the header's rows as set here
    img.header["sform_code"], img.header["qform_code"] = 1, 0
    for row in ("srow_x", "srow_y", "srow_z"):
        img.header[row] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _config(**latent) -> VolumeConfig:
    model = VolumeModelConfig(channels=[8, 8], attention_levels=[False, False], norm_num_groups=4)
    config = VolumeConfig(data=VolumeDataConfig(shape=list(SHAPE)), model=model)
    if latent:
        config.latent = VolumeLatentConfig(enabled=True, channels=[4, 4], latent_channels=2, norm_num_groups=4,
                                           **latent)
    return config


class _Calls:
    """Counts the network's forward passes (a check that must come before any network work)."""

    def __init__(self, network: torch.nn.Module):
        self.n = 0
        network.register_forward_pre_hook(self)

    def __call__(self, *_):
        self.n += 1


@pytest.fixture(scope="module")
def gen():
    """An untrained pixel-space model: enough to see what is refused before the network runs."""
    generator = VolumeGenerator(_config())
    generator.calls = _Calls(generator.model)
    return generator


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    return {
        "good": _nifti(root / "good.nii.gz", _phantom()),
        "singular": _singular_nifti(root / "singular.nii.gz"),
        "empty": _nifti(root / "empty.nii.gz", np.zeros((4, 0, 4), np.float32)),
        "one": _nifti(root / "one.nii.gz", np.ones((1, 1, 1), np.float32)),
        "slab": _nifti(root / "slab.nii.gz", _phantom()[:1]),
    }


# -- item 9: files without geometry or voxels ----------------------------------------------------

BAD_FILES = [
    ("singular", SingularAffineError, r"singular\.nii\.gz: the voxel-to-world affine is singular .* fix the header"),
    ("empty", NotA3DVolumeError, r"empty\.nii\.gz: the image holds no voxels \(spatial shape \(4, 0, 4\)\)"),
    ("one", NotA3DVolumeError, r"one\.nii\.gz: spatial shape \(1, 1, 1\) is one voxel thick"),
    ("slab", NotA3DVolumeError, r"slab\.nii\.gz: spatial shape \(1, 16, 16\) is one voxel thick"),
]


@pytest.mark.parametrize("name, error, match", BAD_FILES)
def test_bad_files_are_named_when_read_before_any_network_work(gen, files, name, error, match):
    """Old main: the singular affine read fine and failed later in MONAI's 'applying transform
    Orientation'; the one-voxel and one-slice files were augmented as if they were volumes."""
    with pytest.raises(error, match=match):
        read_volume(files[name])
    before = gen.calls.n
    with pytest.raises(error, match=match):
        gen.augment(str(files[name]), level=0.3, steps=2, seed=0)
    with pytest.raises(error, match=match):
        gen.inpaint(files[name], files["good"], steps=2, seed=0)
    with pytest.raises(error, match=match):
        gen.inpaint(files["good"], files[name], steps=2, seed=0)
    assert gen.calls.n == before


def test_a_singular_affine_in_memory_or_on_write_is_refused(gen, files):
    volume = MetaTensor(torch.from_numpy(_phantom())[None], affine=torch.zeros(4, 4))
    before = gen.calls.n
    with pytest.raises(SingularAffineError, match="image: the voxel-to-world affine is singular"):
        gen.augment(volume, level=0.3, steps=2, seed=0)
    assert gen.calls.n == before
    from sciogen.volumes import write_volume

    with pytest.raises(SingularAffineError, match="out.nii.gz: the voxel-to-world affine is singular"):
        write_volume(volume, files["good"].parent / "out.nii.gz")
    assert not (files["good"].parent / "out.nii.gz").exists()


def test_training_and_evaluation_name_the_bad_files(files, tmp_path, capsys):
    folder = tmp_path / "scans"
    for name in ("good", "singular", "empty", "one", "slab"):
        (folder / files[name].name).parent.mkdir(parents=True, exist_ok=True)
        (folder / files[name].name).write_bytes(files[name].read_bytes())
    _nifti(folder / "good2.nii.gz", _phantom(shift=0.1))
    gen = VolumeGenerator(_config())
    gen.fit(str(folder), run_dir=tmp_path / "run", steps=1, batch_size=2, progress=False, tensorboard=False)
    rows = {Path(r["source"]).name: r["reason"] for r in csv.DictReader((tmp_path / "run" / "skipped.csv").open())}
    assert set(rows) == {"singular.nii.gz", "empty.nii.gz", "one.nii.gz", "slab.nii.gz"}
    assert "affine is singular" in rows["singular.nii.gz"] and "no voxels" in rows["empty.nii.gz"]
    # evaluate: a reference folder reports them; a samples folder names the file
    samples = gen.sample(2, steps=2, seed=0)
    metrics = VolumeGenerator.evaluate_samples(samples, str(folder))
    assert metrics["n"] == 2.0 and "kept 2 reference volumes, skipped 4" in capsys.readouterr().err
    broken = tmp_path / "broken-samples"
    _singular_nifti(broken / "sample_000.nii.gz")
    assert main(["evaluate", "volumes", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "sample_000.nii.gz: the voxel-to-world affine is singular" in err and "Orientation" not in err


# -- item 2: arguments and input arrays checked before any work ----------------------------------

_NAN = MetaTensor(torch.from_numpy(_phantom())[None].clone(), affine=torch.eye(4))
_NAN[0, 3, 4, 5] = math.nan
_INF = _NAN.clone()
_INF[0, 3, 4, 5] = math.inf


def _image():
    return MetaTensor(torch.from_numpy(_phantom())[None], affine=torch.eye(4))


def _mask(value=1.0):
    mask = torch.zeros(1, *SHAPE)
    mask[0, 4:8, 4:8, 4:8] = 1.0
    mask[0, 0, 0, 0] = value
    return mask


BAD_CALLS = [
    ("augment", dict(level=-1), r"level must be in \(0, 1\].*got -1.0"),
    ("augment", dict(level=2), r"level must be in \(0, 1\].*got 2.0"),
    ("augment", dict(level=math.nan), "level must be finite, got nan"),
    ("augment", dict(level="high"), "level must be a real number, got 'high'"),
    ("augment", dict(n=0), "n must be >= 1 .* got 0"),
    ("augment", dict(steps=0), "steps must be >= 1 .* got 0"),  # old main: fell back to the default
    ("augment", dict(steps=-3), "steps must be >= 1 .* got -3"),  # old main: silently 1 step
    ("augment", dict(batch_size=-5), "batch_size must be >= 1 .* got -5"),
    ("augment", dict(image=_NAN), r"image must not contain missing values \(NaN\).*at index \(0, 3, 4, 5\)"),
    ("augment", dict(image=_INF), r"image must not contain .* inf at index \(0, 3, 4, 5\)"),
    ("augment", dict(image=torch.complex(torch.ones(1, *SHAPE), torch.ones(1, *SHAPE))), "image holds complex"),
    ("augment", dict(image=torch.ones(16, 16, 16)), r"image must be a channel-first 3D volume .* \(16, 16, 16\)"),
    ("augment", dict(image=torch.ones(0, *SHAPE)), "image has no channels"),
    ("augment", dict(image=torch.ones(1, 1, 16, 16)), r"image: spatial shape \(1, 16, 16\) is one voxel thick"),
    ("augment", dict(image=[[1.0]]), "image must be a path or a channel-first 3D volume"),
    ("inpaint", dict(mask=_mask(math.nan)), r"mask must not contain missing values \(NaN\).*\(0, 0, 0, 0\)"),
    ("sample", dict(shape=(0, 16, 16)), r"shape\[0\] must be >= 1 .* got 0"),
    ("sample", dict(shape=(16, 16)), r"shape must be 3 sizes"),
    ("sample", dict(shape=(15, 16, 16)), "shape must be 3 sizes, multiples of 2"),
    ("sample", dict(patch_size=(math.nan, 16, 16)), r"patch_size\[0\] must be >= 1 .* got nan"),
    ("sample", dict(patch_size=(16, 16, 16), overlap=math.nan), "overlap must be finite, got nan"),
    ("sample", dict(patch_size=(16, 16, 16), overlap=1.5), r"overlap must be in \[0, 1\)"),
    ("sample", dict(guidance=math.inf), "guidance must be finite, got inf"),
    ("sample", dict(clip="no"), "clip must be True or False, got 'no'"),
]


@pytest.mark.parametrize("verb, kwargs, match", BAD_CALLS, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(BAD_CALLS)])
def test_bad_arguments_raise_before_any_network_work(gen, verb, kwargs, match):
    kwargs = {"steps": 2, "seed": 0, **kwargs}
    before = gen.calls.n
    with pytest.raises(ValueError, match=match):
        if verb == "augment":
            gen.augment(kwargs.pop("image", _image()), **kwargs)
        elif verb == "inpaint":
            gen.inpaint(_image(), kwargs.pop("mask"), **kwargs)
        else:
            gen.sample(1, **kwargs)
    assert gen.calls.n == before


def test_condition_values_are_finite_real_numbers():
    names = ["age", "sex"]
    with pytest.raises(ValueError, match=r"condition 'age' must not contain missing values \(NaN\)"):
        covariate_tensor({"age": math.nan}, names, {"sex": 2}, 1)  # old main: silently the unconditional model
    with pytest.raises(ValueError, match="condition 'age' must not contain .* inf"):
        covariate_tensor({"age": [60.0, math.inf]}, names, {"sex": 2}, 2)
    with pytest.raises(ValueError, match="condition 'age' holds complex numbers"):
        covariate_tensor({"age": 60 + 1j}, names, {"sex": 2}, 1)
    with pytest.raises(ValueError, match="condition 'age' must hold numbers"):
        covariate_tensor({"age": "old"}, names, {"sex": 2}, 1)
    assert torch.isnan(covariate_tensor({"age": None}, names, {"sex": 2}, 1)).all()  # None: not conditioned on


@pytest.mark.parametrize("kwargs, match", [
    (dict(prob=-1), r"prob must be in \[0, 1\].*got -1.0"),  # old main: MONAI clipped it to 0 silently
    (dict(prob=2), r"prob must be in \[0, 1\].*got 2.0"),
    (dict(prob=math.nan), "prob must be finite"),
    (dict(steps=0), "steps must be >= 1"),
    (dict(level=math.nan), "level must be finite"),
    (dict(level="x"), "level must be a number or a range"),
    (dict(level=(0.1, 0.2, 0.3)), "level must be a number or a range"),
])
def test_transform_options_are_checked(gen, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandVolumeDiffusion(model=gen, **kwargs)
    with pytest.raises(ValueError, match=match):
        RandVolumeDiffusiond(keys="image", model=gen, **kwargs)


def test_transform_refuses_nan_and_complex_images_before_any_network_work(gen):
    transform = RandVolumeDiffusion(prob=1.0, model=gen, level=0.3, steps=2)
    before = gen.calls.n
    with pytest.raises(ValueError, match=r"img must not contain missing values \(NaN\)"):
        transform(_NAN)
    with pytest.raises(ValueError, match="img holds complex numbers"):
        transform(torch.complex(torch.ones(1, *SHAPE), torch.ones(1, *SHAPE)))
    assert gen.calls.n == before


@pytest.fixture(scope="module")
def longitudinal():
    from sciogen.volumes import LongitudinalConfig, LongitudinalDataConfig, LongitudinalModelConfig, LongitudinalVolumeGenerator

    model = LongitudinalModelConfig(channels=[8, 8, 16], attention_levels=[False, False, False], context_dim=16,
                                    encoder_channels=[8, 8, 8], heads=2, depth=1, queries=2, tokens=2)
    generator = LongitudinalVolumeGenerator(LongitudinalConfig(data=LongitudinalDataConfig(shape=list(SHAPE)),
                                                               model=model))
    generator.calls = _Calls(generator.model)
    return generator


HISTORY = torch.zeros(2, 1, *SHAPE)


@pytest.mark.parametrize("kwargs, match", [
    (dict(target_time=math.nan), r"target_times must not contain missing values \(NaN\)"),
    (dict(times=[0 + 1j, 1.0]), "times holds complex numbers"),  # old main: TypeError from torch
    (dict(times=["a", "b"]), "times must hold numbers"),
    (dict(history=torch.complex(HISTORY, HISTORY)), "history holds complex numbers"),  # old main: cast to real
    (dict(present=["x", "y"]), "present must be True / False flags"),
    (dict(clip="no"), "clip must be True or False, got 'no'"),  # old main: taken as True
    (dict(steps=0), "steps must be >= 1"),
])
def test_longitudinal_arguments_are_checked_before_any_network_work(longitudinal, kwargs, match):
    call = {"history": HISTORY, "times": [0.0, 1.0], "target_time": 2.0, "steps": 2, "seed": 0, **kwargs}
    before = longitudinal.calls.n
    with pytest.raises(ValueError, match=match):
        longitudinal.predict(call.pop("history"), call.pop("times"), call.pop("target_time"), **call)
    assert longitudinal.calls.n == before


def test_evaluate_names_a_nan_volume():
    volumes = torch.zeros(3, 1, *SHAPE)
    volumes[2, 0, 1, 2, 3] = math.nan
    with pytest.raises(ValueError, match=r"volumes must not contain .* at index \(2, 0, 1, 2, 3\)"):
        evaluate(volumes)


# -- item 3: NaN made outside the core solvers ---------------------------------------------------

def _poison(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(math.nan)


def test_nan_from_the_latent_decoder_raises_naming_the_decode():
    """Old main: sample() and augment() returned volumes of NaN."""
    gen = VolumeGenerator(_config(steps=1))
    gen.model.fit_scale(torch.from_numpy(_phantom() / 60.0 - 1.0)[None, None])
    assert all(torch.isfinite(v).all() for v in gen.sample(1, steps=2, seed=0))  # healthy before
    _poison(gen.model.autoencoder.decoder)
    with pytest.raises(FloatingPointError, match="latent decode after the last solver step"):
        gen.sample(1, steps=2, seed=0)
    with pytest.raises(FloatingPointError, match="latent decode"):
        gen.augment(_image(), level=0.3, steps=2, seed=0)


def test_nan_network_output_raises_in_every_sampling_path(gen):
    poisoned = VolumeGenerator(_config())
    _poison(poisoned.model.out)
    for call in (lambda: poisoned.sample(1, steps=2, seed=0),
                 lambda: poisoned.sample(1, steps=2, seed=0, patch_size=(8, 8, 8)),
                 lambda: poisoned.augment(_image(), level=0.5, steps=2, seed=0),
                 lambda: poisoned.inpaint(_image(), _mask(), steps=2, seed=0)):
        with pytest.raises(FloatingPointError, match="solver step"):
            call()


def test_nan_made_after_the_solver_never_reaches_a_returned_volume(gen, monkeypatch):
    from sciogen.imaging.grid import NetworkGrid

    def broken(self, data):
        return MetaTensor(torch.full((1, *self.input_shape[1:]), math.nan))

    monkeypatch.setattr(NetworkGrid, "inverse", broken)
    with pytest.raises(FloatingPointError, match="sample 0 of the chunk after the last solver step"):
        gen.augment(_image(), level=0.3, steps=2, seed=0)


def test_the_monai_ddim_drop_in_names_the_timestep_of_a_nan_output():
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(10)
    x = torch.zeros(1, 1, 4, 4, 4)
    with pytest.raises(FloatingPointError, match="MONAI timestep 900"):
        scheduler.step(torch.full_like(x, math.nan), 900, x)


# -- item 5: a folder of NIfTI files, checked before sampling, read back by evaluate -------------

def test_out_must_be_a_folder_checked_before_sampling_and_evaluate_reads_it_back(tmp_path, capsys, monkeypatch):
    gen = VolumeGenerator(_config())
    model = tmp_path / "model.pt"
    gen.save(model)
    calls = []
    original = VolumeGenerator.sample_batch
    monkeypatch.setattr(VolumeGenerator, "sample_batch",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    for name in ("x.nii.gz", "x.nii", "x.mha", "x.csv"):
        assert main(["sample", str(model), "-n", "1", "--steps", "2", "--out", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert "unknown output format" in err and "a folder (no suffix)" in err, err
        assert not (tmp_path / name).exists()
    assert calls == []  # refused before any sampling
    assert main(["sample", str(model), "-n", "2", "--steps", "2", "--seed", "0", "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "sample_000.nii.gz",
                                                                   "sample_001.nii.gz"]
    capsys.readouterr()
    assert main(["evaluate", "volumes", str(tmp_path / "out"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 2.0
    assert metrics == pytest.approx(json.loads((tmp_path / "out" / "metrics.json").read_text()))


def test_write_samples_follows_the_one_rule(gen, tmp_path):
    samples = [MetaTensor(torch.zeros(1, *SHAPE), affine=torch.eye(4))]
    for name in ("x.nii.gz", "x.xyz", "x.pt"):
        with pytest.raises(ValueError, match="written as a folder .* give a folder name without a suffix"):
            VolumeGenerator.write_samples(samples, tmp_path / name)
        assert not (tmp_path / name).exists()
    # a folder: no suffix, a name ending in a separator, or the temporary name sciogen writes to
    for name in ("plain", "run.v2/", ".run.v2-123-abcdef12-partial"):
        folder = VolumeGenerator.write_samples(samples, f"{tmp_path}/{name}")
        assert (folder / "sample_000.nii.gz").is_file() and (folder / "metrics.json").is_file()
        assert len(VolumeGenerator.read_samples(folder)) == 1
    with pytest.raises(VolumeError):
        VolumeGenerator.read_samples(tmp_path / "missing")
