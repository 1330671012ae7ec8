"""Issue 22 for the deformation domain: labels stay labels in the README's MONAI example, no
NaN reaches a field, every sampling argument and input checked before work, clear errors for
singular affines, tiny images and unsafe .pt fields, and --out checked before sampling."""

from __future__ import annotations

import math
import pickle
import re
import struct
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import torch
from monai.data import MetaTensor  # noqa: E402

import sciogen  # noqa: E402
from sciogen.data.output import FOLDER  # noqa: E402
from sciogen.deformation import (  # noqa: E402
    DeformationConfig,
    DeformationDataConfig,
    DeformationGenerator,
    DeformationModelConfig,
    DeformationProcess,
    RandDeformationDiffusion,
    RandDeformationDiffusiond,
)
from sciogen.deformation.io import read_field, read_image, write_field, write_image  # noqa: E402
from sciogen.deformation.training import brain_phantom, read_training_image  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
SHIPPED_2D = "deformation/brain-mri-2d"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained 2D model (the plumbing is tested, not the recovery)."""
    config = DeformationConfig(data=DeformationDataConfig(spatial_dims=2, shape=[32, 32]),
                               model=DeformationModelConfig(channels=[4, 8], time_dim=16))
    gen = DeformationGenerator(config)
    path = tmp_path_factory.mktemp("model") / "tiny-2d.pt"
    gen.save(path)
    return gen, path


def _image_and_labels(shape=(48, 56)) -> tuple[torch.Tensor, torch.Tensor]:
    """A channel-first image and an integer label map {0, 3, 6, 9, 12} (a bilinear warp creates
    the values between them, rounded for integers, fractions for floats)."""
    image, label = brain_phantom(shape)
    return image, label * 3


def _readme_line() -> str:
    lines = [line.split("#")[0].strip() for line in README.read_text().splitlines()
             if line.startswith("aug = RandDeformationDiffusiond(")]
    assert len(lines) == 1, "the README's quick look has one RandDeformationDiffusiond line"
    return lines[0]


# -- item 6: the README's MONAI example keeps labels ----------------------------------------------

def _check_labels_kept(aug, image, label) -> None:
    for lab in (label, label.float(), MetaTensor(label.float(), affine=torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0])))):
        out = aug.set_random_state(0)({"image": image, "label": lab})
        assert not torch.equal(out["image"], image)  # it deformed
        values = set(torch.as_tensor(out["label"]).unique().tolist())
        assert values <= set(label.unique().tolist()), f"new label values {sorted(values)}"
        assert torch.as_tensor(out["label"]).dtype == torch.as_tensor(lab).dtype


def test_readme_monai_example_verbatim_keeps_label_values():
    """The README line as written, on an image and an integer label map, with the shipped model."""
    line = _readme_line()
    readme = 'aug = RandDeformationDiffusiond(keys=("image", "label"), prob=1.0, model="deformation/brain-mri-2d")'
    assert line == readme
    if SHIPPED_2D not in sciogen.available():
        pytest.skip(f"{SHIPPED_2D} is not shipped in this checkout")
    scope: dict = {"RandDeformationDiffusiond": RandDeformationDiffusiond}
    exec(line, scope)  # noqa: S102 - the README's own line
    image, label = _image_and_labels()
    assert set(label.unique().tolist()) == {0, 3, 6, 9, 12}
    _check_labels_kept(scope["aug"], image, label)


def test_readme_example_with_a_tiny_model_keeps_label_values(tiny):
    """The same line on a checkout without shipped models (the untrained model leaves most of
    the level-1 deformation in place; bilinear warping would invent values between the labels)."""
    _, path = tiny
    line = _readme_line().replace(f'"{SHIPPED_2D}"', repr(str(path)))
    scope: dict = {"RandDeformationDiffusiond": RandDeformationDiffusiond}
    exec(line, scope)  # noqa: S102
    image, label = _image_and_labels()
    _check_labels_kept(scope["aug"], image, label)


def test_label_keys_decide_interpolation(tiny):
    _, path = tiny
    image, label = _image_and_labels()
    t = RandDeformationDiffusiond(keys=("image", "brain_mask", "seg", "t2"), prob=1.0, model=str(path))
    assert t.label_keys == ("brain_mask", "seg") and t.mode == ("bilinear", "nearest", "nearest", "bilinear")
    t = RandDeformationDiffusiond(keys=("image", "atlas"), prob=1.0, model=str(path), label_keys="atlas")
    out = t.set_random_state(1)({"image": image, "atlas": label.float()})
    assert set(out["atlas"].unique().tolist()) <= {0.0, 3.0, 6.0, 9.0, 12.0}
    # a key named "label" that holds intensities: label_keys=() makes it an image
    t = RandDeformationDiffusiond(keys=("image", "label"), prob=1.0, model=str(path), label_keys=())
    assert t.mode == ("bilinear", "bilinear")
    with pytest.raises(ValueError, match="label key 'label' would interpolate"):
        RandDeformationDiffusiond(keys=("image", "label"), prob=1.0, model=str(path), mode="bilinear")
    with pytest.raises(ValueError, match=r"label_keys \['lbl'\] are not among keys"):
        RandDeformationDiffusiond(keys=("image", "label"), model=str(path), label_keys=("lbl",))
    with pytest.raises(ValueError, match="ddf_key 'label' is one of the keys"):
        RandDeformationDiffusiond(keys=("image", "label"), model=str(path), ddf_key="label")


# -- item 3: non-finite values never reach a field -----------------------------------------------

class _Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args, **kw):
        self.calls += 1
        return self.net(*args, **kw)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_image_is_refused_before_any_work(tiny, bad):
    gen, path = tiny
    image, label = _image_and_labels((32, 32))
    image[0, 5, 7] = bad
    counting = _Counting(gen.model)
    with pytest.raises(ValueError, match=r"image must not contain .*at index \(0, 5, 7\)"):
        gen.displacement(image, 1, generator=torch.Generator().manual_seed(0), model=counting)
    assert counting.calls == 0
    with pytest.raises(ValueError, match=r"image must not contain"):
        gen.deform(image, label=label, n=2, seed=0)
    t = RandDeformationDiffusiond(keys=("image", "label"), prob=1.0, model=str(path))
    with pytest.raises(ValueError, match=r"'image': image must not contain"):
        t({"image": image, "label": label})
    lab = label.float()
    lab[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"label must not contain"):
        gen.deform(torch.rand(1, 32, 32), label=lab, n=1, seed=0)


def test_non_finite_network_output_raises_naming_the_step(tiny):
    gen, _ = tiny
    broken = DeformationGenerator(gen.config)
    broken.model.load_state_dict(gen.model.state_dict())
    with torch.no_grad():
        for p in broken.model.parameters():
            p.fill_(float("nan"))  # weights of a diverged training
    with pytest.raises(FloatingPointError, match=r"recovery step 1 \(level t = 1\.00000\)"):
        broken.deform(torch.rand(1, 32, 32), n=1, seed=0)
    # a network that diverges at the second step only
    calls = []

    def model(x, t):
        calls.append(1)
        w = torch.zeros(x.shape[0], 2, *x.shape[2:])
        return w if len(calls) < 2 else w + float("inf")

    with pytest.raises(FloatingPointError, match=r"recovery step 2 \(level t = 0\.50000\)"):
        DeformationProcess().recover(model, torch.rand(1, 1, 16, 16), level=1.0, steps=2,
                                     generator=torch.Generator().manual_seed(0))


# -- item 2: every argument checked before work --------------------------------------------------

@pytest.mark.parametrize("options,match", [
    ({"n": 0}, "n must be >= 1"),
    ({"batch_size": -5}, "batch_size must be >= 1"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"steps": 2.5}, "steps must be >= 1"),
    ({"level": 0.0}, r"level must be in \(0, 1\]"),
    ({"level": 1.5}, r"level must be in \(0, 1\]"),
    ({"level": float("nan")}, "level must be finite"),
    ({"level": "0.5"}, "level must be a real number"),
    ({"t_end": -0.1}, r"t_end must be in \[0, 1\)"),
    ({"t_end": 0.5, "level": 0.4}, "t_end must be below level"),
    ({"t_end": 0.9, "level": None}, "t_end must be below level"),  # a model whose sampling.level is 0.8
    ({"min_det": 2.0}, r"min_det .* must be in \[0, 1\)"),
    ({"min_det": -0.5}, r"min_det .* must be in \[0, 1\)"),
    ({"min_det": float("inf")}, "min_det must be finite"),
    ({"padding_mode": "wrap"}, "padding_mode must be one of"),
    ({"solver": "ddim"}, "solver 'recovery'"),
])
def test_bad_sampling_arguments_are_refused_before_work(tiny, options, match, monkeypatch):
    import copy

    gen, _ = tiny
    options = dict(options)
    if "level" in options and options["level"] is None:  # t_end against the model's own level
        gen = copy.deepcopy(gen)
        gen.config.sampling.level = 0.8
        options.pop("level")
    n = options.pop("n", 1)
    monkeypatch.setattr(DeformationGenerator, "sample_batch", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match=match):
        gen.sample(n, image=torch.rand(1, 32, 32), seed=0, **options)


@pytest.mark.parametrize("shape,match", [
    ((1, 1, 1), "too small to deform"),
    ((1, 0, 5), "too small to deform"),
    ((1, 3, 64), "too small to deform"),
    ((1, 8, 8, 8), "deforms 2D images"),
])
def test_bad_image_shapes_are_clear(tiny, shape, match):
    gen, path = tiny
    with pytest.raises(ValueError, match=match):
        gen.deform(torch.ones(shape), n=1, seed=0)
    if 0 not in shape:
        with pytest.raises(ValueError, match=match):
            RandDeformationDiffusion(prob=1.0, model=str(path))(torch.ones(shape))


def test_complex_and_non_numeric_images_are_refused(tiny):
    gen, _ = tiny
    with pytest.raises(ValueError, match="complex"):
        gen.deform(np.ones((1, 16, 16), dtype=np.complex64), n=1, seed=0)
    with pytest.raises(ValueError, match="must hold numbers"):
        gen.deform(np.array([[["a"] * 16] * 16]), n=1, seed=0)


@pytest.mark.parametrize("kw,match", [
    ({"prob": 1.5}, r"prob must be in \[0, 1\]"),
    ({"prob": -0.1}, r"prob must be in \[0, 1\]"),
    ({"prob": float("nan")}, "prob must be finite"),
    ({"steps": -1}, "steps must be >= 1"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"level": 5.0}, r"level must be in \(0, 1\]"),
    ({"t_end": 1.0}, r"t_end must be in \[0, 1\)"),
    ({"level": 0.5, "t_end": 0.6}, "t_end must be below level"),
    ({"min_det": 1.0}, r"min_det .* must be in \[0, 1\)"),
    ({"padding_mode": "wrap"}, "padding_mode must be one of"),
])
def test_transform_arguments_are_checked_when_made(tiny, kw, match):
    _, path = tiny
    with pytest.raises(ValueError, match=match):
        RandDeformationDiffusiond(keys=("image", "label"), model=str(path), **kw)
    if "padding_mode" not in kw:
        with pytest.raises(ValueError, match=match):
            RandDeformationDiffusion(model=str(path), **kw)


# -- item 9: singular affines, unsafe .pt fields -------------------------------------------------

def _singular_nifti(path: Path, image: torch.Tensor) -> Path:
    """A NIfTI whose sform is all zero (sform_code 1, qform_code 0): nibabel reads a singular affine."""
    nib.save(nib.Nifti1Image(image[0].numpy()[:, :, None], np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[252:256] = struct.pack("<hh", 0, 1)  # qform_code, sform_code
    raw[280:328] = bytes(48)  # srow_x, srow_y, srow_z
    path.write_bytes(bytes(raw))
    assert np.linalg.matrix_rank(nib.load(str(path)).affine[:3, :3]) == 0
    return path


def test_singular_affine_is_a_clear_error_naming_the_file(tiny, tmp_path, capsys):
    from sciogen.cli import main

    gen, path = tiny
    image, _ = _image_and_labels((32, 32))
    bad = _singular_nifti(tmp_path / "singular.nii", image)
    with pytest.raises(ValueError, match=r"singular\.nii: the voxel-to-world affine is singular"):
        read_image(bad)
    assert read_training_image(bad).shape == (1, 32, 32)  # training needs the voxels only
    assert main(["sample", str(path), "--image", str(bad), "-n", "1", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "singular.nii: the voxel-to-world affine is singular" in err and "HeaderDataError" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="affine is singular"):
        gen.deform(MetaTensor(image, affine=torch.zeros(4, 4)), n=1, seed=0)
    for write in (write_image, write_field):
        with pytest.raises(ValueError, match=r"x\.nii\.gz: the voxel-to-world affine is singular"):
            write(torch.zeros(2, 8, 8), np.zeros((4, 4)), tmp_path / "x.nii.gz")


def test_unsafe_or_wrong_field_files_give_clear_errors(tmp_path, capsys):
    from sciogen.cli import main

    torch.save({"ddf": np.zeros((2, 8, 8))}, tmp_path / "numpy.pt")  # unpickling builds numpy objects
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"ddf": np.zeros((2, 8, 8))}))
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"ddf": torch.zeros(2, 8, 8)}, tmp_path / "dict.pt")
    torch.save(torch.zeros(3, 8, 8), tmp_path / "shape.pt")
    nan = torch.zeros(2, 8, 8)
    nan[1, 2, 3] = float("nan")
    torch.save(nan, tmp_path / "nan.pt")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "garbage.nii.gz").write_bytes(b"not a nifti")
    cases = {"numpy.pt": "would build a numpy", "plain.pt": "not a file written by torch.save",
             "empty.pt": "empty", "dict.pt": "holds an object of type dict, not a displacement field",
             "shape.pt": r"shape \(D, \*S\)", "nan.pt": r"nan\.pt: field must not contain",
             "obj.npy": "cannot read .*obj.npy", "garbage.nii.gz": "cannot read .*garbage.nii.gz"}
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match) as info:
            read_field(tmp_path / name)
        assert "weights_only" not in str(info.value) and "likely succeed" not in str(info.value)
        assert main(["evaluate", "deformation", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert name in err and "weights_only" not in err and "likely succeed" not in err, err
    torch.save(torch.zeros(2, 8, 8), tmp_path / "good.pt")
    assert read_field(tmp_path / "good.pt")[0].shape == (2, 8, 8)


# -- item 5: --out is a folder, checked before sampling ------------------------------------------

def test_out_must_be_a_folder_checked_before_sampling(tiny, tmp_path, capsys, monkeypatch):
    from sciogen.cli import main

    gen, path = tiny
    assert DeformationGenerator.output_formats == (FOLDER,)
    image, _ = _image_and_labels((32, 32))
    write_image(image, np.eye(4), tmp_path / "in.nii.gz")
    sampled = []
    monkeypatch.setattr(DeformationGenerator, "sample_batch",
                        lambda self, *a, **k: sampled.append(1) or pytest.fail("sampled before --out was checked"))
    for out in ("x.nii.gz", "x.nii", "x.csv"):
        assert main(["sample", str(path), "--image", str(tmp_path / "in.nii.gz"), "-n", "1",
                     "--out", str(tmp_path / out)]) == 1
        err = capsys.readouterr().err
        assert "unknown output format" in err and "a folder (no suffix)" in err, err
        assert not (tmp_path / out).exists()
    assert not sampled
    with pytest.raises(ValueError, match="written as a folder of NIfTI files"):
        DeformationGenerator.write_samples([], tmp_path / "y.nii.gz")
    monkeypatch.undo()
    assert main(["sample", str(path), "--image", str(tmp_path / "in.nii.gz"), "-n", "2", "--out",
                 str(tmp_path / "samples")]) == 0
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["metrics.json", "sample_000_ddf.nii.gz", "sample_000_image.nii.gz", "sample_001_ddf.nii.gz",
                     "sample_001_image.nii.gz"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert math.isfinite(read_field(tmp_path / "samples" / "sample_000_ddf.nii.gz")[0].sum().item())
    assert re.search(r"sampled 2 from .*; wrote ", capsys.readouterr().out)
