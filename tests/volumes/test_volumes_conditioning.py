"""Conditional volume models: covariates with classifier-free guidance, super-resolution and
paired-image conditioning by channel concatenation, their errors and the CLI options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor  # noqa: E402

from sciogen.train.config import ConfigError, from_dict  # noqa: E402
from sciogen.volumes import (  # noqa: E402
    VolumeConditionConfig,
    VolumeConfig,
    VolumeDataConfig,
    VolumeGenerator,
    VolumeModelConfig,
    VolumeProcessConfig,
    write_volume,
)
from sciogen.volumes.conditioning import CovariateEmbedding, covariate_tensor, degrade  # noqa: E402

SHAPE = (8, 8, 8)
# 4 channels per group: with one channel per GroupNorm group MONAI's ResNet blocks erase the
# per-channel time / covariate shift (norm2 follows the addition), and conditioning has no effect
MODEL = VolumeModelConfig(channels=[16, 16], attention_levels=[False, False], norm_num_groups=4)
STILL = VolumeDataConfig(shape=list(SHAPE), rotate_degrees=0.0, scale=0.0, intensity=0.0, flip_axes=[])
TRAIN = dict(batch_size=4, progress=False, tensorboard=False, lr=3e-3, warmup_steps=10, ema_decay=0.9, log_every=50)


def _ball(radius: float, brightness: float, shape=SHAPE) -> torch.Tensor:
    axes = [torch.linspace(-1, 1, n) for n in shape]
    r = torch.sqrt(sum(g**2 for g in torch.meshgrid(*axes, indexing="ij")))
    return ((r < radius).float() * brightness - 0.9).clamp(-1, 1)[None]


@pytest.fixture(scope="module")
def covariate_model():
    """Balls whose brightness is a class and whose radius is a scalar covariate (one missing)."""
    radii = [0.45, 0.6, 0.75, 0.9] * 2
    bright = [0] * 4 + [1] * 4  # every radius with both classes
    images = torch.stack([_ball(r, 1.6 if b else 0.8) for r, b in zip(radii, bright)])
    config = VolumeConfig(data=STILL, model=MODEL, process=VolumeProcessConfig(prediction="v_prediction"),
                          condition=VolumeConditionConfig(scalars=["radius"], classes={"bright": 2}, dropout=0.2))
    gen = VolumeGenerator(config)
    radius = [r if i != 3 else math.nan for i, r in enumerate(radii)]  # a missing value trains the null embedding
    gen.fit({"image": images, "radius": radius, "bright": bright}, steps=300, **TRAIN)
    return gen


def test_classes_steer_the_samples_and_guidance_sharpens_them(covariate_model):
    gen = covariate_model
    dim = gen.sample(4, steps=10, seed=0, condition={"bright": 0, "radius": 0.75}, guidance=2.0, clip=True)
    bright = gen.sample(4, steps=10, seed=0, condition={"bright": 1, "radius": 0.75}, guidance=2.0, clip=True)
    # inside the ball class 0 is -0.1, class 1 0.7: the same noise, opposite classes
    inside = [[float(v[v > -0.5].mean()) for v in vols] for vols in (dim, bright)]
    assert all(b > d for d, b in zip(*inside))
    assert np.mean(inside[1]) - np.mean(inside[0]) > 0.2
    assert bright[0].meta["condition"] == {"bright": 1, "radius": 0.75}


def test_scalar_covariate_sets_the_size(covariate_model):
    gen = covariate_model
    small = gen.sample(4, steps=10, seed=1, condition={"bright": 1, "radius": 0.45}, guidance=2.0, clip=True)
    large = gen.sample(4, steps=10, seed=1, condition={"bright": 1, "radius": 0.9}, guidance=2.0, clip=True)
    volume = [sum(float((v > 0).float().sum()) for v in vols) / 4 for vols in (small, large)]
    assert volume[0] < volume[1]


def test_covariates_survive_save_load_with_their_standardisation(covariate_model, tmp_path):
    gen = covariate_model
    embedding = gen.model.covariates
    known = torch.tensor([0.45, 0.6, 0.75, 0.45, 0.6, 0.75, 0.9])  # the 4th is missing
    assert float(embedding.mean[0]) == pytest.approx(float(known.mean()))
    gen.save(tmp_path / "cond.pt")
    again = VolumeGenerator.load(tmp_path / "cond.pt", device="cpu")
    a = gen.sample(2, steps=4, seed=3, condition={"bright": 1, "radius": 0.6}, guidance=1.5)
    b = again.sample(2, steps=4, seed=3, condition={"bright": 1, "radius": 0.6}, guidance=1.5)
    torch.testing.assert_close(a[0].as_tensor(), b[0].as_tensor())
    assert float(again.model.covariates.std[0]) == pytest.approx(float(embedding.std[0]))


def test_missing_covariates_take_the_null_embedding():
    embedding = CovariateEmbedding(["age"], {"sex": 2}, dim=8)
    torch.nn.init.normal_(embedding.scalar_nulls)
    full = embedding(torch.tensor([[70.0, 1.0]]))
    no_age = embedding(torch.tensor([[math.nan, 1.0]]))
    expected = embedding.scalar_nulls[0] + embedding.tables[0].weight[1]
    torch.testing.assert_close(no_age[0], expected)
    assert not torch.allclose(full, no_age)
    none = embedding(torch.tensor([[math.nan, math.nan]]))
    torch.testing.assert_close(none[0], embedding.scalar_nulls[0] + embedding.tables[0].weight[2])


def test_covariate_values_are_checked():
    names, classes = ["age", "sex"], {"sex": 2}
    out = covariate_tensor({"age": [60, 70]}, names, classes, 2)
    assert out[:, 0].tolist() == [60.0, 70.0] and torch.isnan(out[:, 1]).all()
    assert covariate_tensor(None, names, classes, 3) is None
    with pytest.raises(ValueError, match=r"unknown covariate\(s\) \['weight'\]"):
        covariate_tensor({"weight": 3}, names, classes, 1)
    with pytest.raises(ValueError, match="'sex' is a class in 0..1, got 2"):
        covariate_tensor({"sex": 2}, names, classes, 1)
    with pytest.raises(ValueError, match="needs one value or 3 values, got 2"):
        covariate_tensor({"age": [1, 2]}, names, classes, 3)
    with pytest.raises(ValueError, match="trained without covariates"):
        covariate_tensor({"age": 1}, [], {}, 1)


def test_condition_config_errors():
    with pytest.raises(ConfigError, match="unique across scalars and classes"):
        VolumeConditionConfig(scalars=["age"], classes={"age": 2})
    with pytest.raises(ConfigError, match="at least 2 classes"):
        VolumeConditionConfig(classes={"sex": 1})
    with pytest.raises(ValueError, match="condition.image must be one of"):
        from_dict(VolumeConfig, {"condition": {"image": "sketch"}})
    with pytest.raises(ConfigError, match="condition.dropout"):
        VolumeConditionConfig(dropout=1.0)


def test_training_data_errors_name_what_is_missing():
    gen = VolumeGenerator(VolumeConfig(data=STILL, model=MODEL, condition=VolumeConditionConfig(scalars=["age"])))
    images = torch.stack([_ball(0.5, 1.5)] * 2)
    with pytest.raises(ValueError, match=r"no values for the covariate\(s\) \['age'\]"):
        gen.fit({"image": images}, steps=1, **TRAIN)
    with pytest.raises(ValueError, match=r"need one value per image \(2\)"):
        gen.fit({"image": images, "age": [1, 2, 3]}, steps=1, **TRAIN)
    with pytest.raises(ValueError, match="needs training data with those values"):
        gen.fit(None, steps=1, **TRAIN)
    with pytest.raises(ValueError, match="this model is conditioned on"):
        VolumeGenerator(VolumeConfig(data=STILL, model=MODEL, condition=VolumeConditionConfig(image="lowres"))).sample(1)
    with pytest.raises(ValueError, match="classifier-free guidance on covariates; this model has none"):
        VolumeGenerator(VolumeConfig(data=STILL, model=MODEL)).sample(1, steps=1, guidance=2.0)


def test_degrade_averages_blocks_and_keeps_the_grid():
    x = torch.randn(2, 1, 8, 8, 8)
    low = degrade(x, 2)
    assert low.shape == x.shape
    torch.testing.assert_close(low.mean(), x.mean(), atol=1e-5, rtol=0)
    flat = torch.ones(1, 1, 8, 8, 8) * 0.3
    torch.testing.assert_close(degrade(flat, 4), flat)
    with pytest.raises(ValueError, match="multiple of the factor 3"):
        degrade(x, 3)


@pytest.fixture(scope="module")
def superres():
    images = torch.stack([_ball(r, 1.6) for r in (0.4, 0.55, 0.7, 0.85)])
    config = VolumeConfig(data=STILL, model=MODEL, process=VolumeProcessConfig(prediction="v_prediction"),
                          condition=VolumeConditionConfig(image="lowres", factor=2))
    gen = VolumeGenerator(config)
    gen.fit({"image": images}, steps=150, **TRAIN)
    return gen


def test_super_resolution_follows_the_input_in_its_units_and_field_of_view(superres):
    gen = superres
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64))
    small = MetaTensor((_ball(0.5, 1.6, (12, 12, 12)) + 1) * 500.0, affine=affine)
    large = MetaTensor((_ball(0.85, 1.6, (12, 12, 12)) + 1) * 500.0, affine=affine)
    a, b = gen.sample(2, image=small, steps=8, seed=0), gen.sample(2, image=large, steps=8, seed=0)
    assert a[0].shape == (1, *SHAPE) and a[0].meta["condition_image"] == "lowres"
    assert 0.8 * float(small.min()) - 100 <= float(a[0].min()) and float(a[0].max()) <= 1.2 * float(small.max())
    assert float((a[0] > 500).sum()) < float((b[0] > 500).sum())  # the output follows the input
    assert not torch.allclose(a[0].as_tensor(), a[1].as_tensor())  # two samples, two draws
    # reproducible, and the sliding window over image + condition channels matches the whole volume
    again = gen.sample(2, image=small, steps=8, seed=0, patch_size=SHAPE)
    torch.testing.assert_close(a[0].as_tensor(), again[0].as_tensor(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="mask=, level= and shape= do not apply"):
        gen.sample(1, image=small, level=0.3)


def test_paired_images_train_from_records(tmp_path):
    records = []
    for i, r in enumerate((0.5, 0.7)):
        t1 = MetaTensor((_ball(r, 1.6, (10, 10, 10)) + 1) * 300.0, affine=torch.eye(4, dtype=torch.float64))
        t2 = MetaTensor((_ball(r, 1.0, (10, 10, 10)) + 1) * 100.0, affine=torch.eye(4, dtype=torch.float64))
        write_volume(t1, tmp_path / f"t1_{i}.nii.gz")
        write_volume(t2, tmp_path / f"t2_{i}.nii.gz")
        records.append({"image": str(tmp_path / f"t2_{i}.nii.gz"), "condition": str(tmp_path / f"t1_{i}.nii.gz")})
    gen = VolumeGenerator(VolumeConfig(data=STILL, model=MODEL, condition=VolumeConditionConfig(image="paired")))
    gen.fit(records, steps=3, **{**TRAIN, "batch_size": 2})
    out = gen.sample(1, image=records[0]["condition"], steps=3, seed=0)
    assert out[0].shape == (1, *SHAPE) and torch.isfinite(out[0]).all()
    with pytest.raises(ValueError, match=r"record 0 .* has no 'condition' volume"):
        gen.fit([{"image": records[0]["image"]}], steps=1, **TRAIN)


def test_cli_condition_items_parse_and_reject_garbage(covariate_model, tmp_path, capsys):
    from sciogen.cli import main

    path = covariate_model.save(tmp_path / "cond.pt")
    code = main(["sample", str(path), "-n", "1", "--steps", "3", "--seed", "0", "--condition", "bright=1",
                 "radius=0.6", "--guidance", "2", "--out", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "sample_000.nii.gz").is_file()
    capsys.readouterr()
    assert main(["sample", str(path), "-n", "1", "--condition", "bright", "--out", str(tmp_path / "bad")]) != 0
    assert "--condition 'bright' must look like NAME=VALUE" in capsys.readouterr().err
    assert main(["sample", str(path), "-n", "1", "--condition", "bright=high", "--out", str(tmp_path / "bad")]) != 0
    assert "bright" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_paired_error_scores_outputs_against_their_references():
    from sciogen.volumes import paired_error

    truth = torch.stack([_ball(0.5, 1.6), _ball(0.7, 1.6)])
    exact = paired_error(truth, truth)
    assert exact["mean_abs_error"] == 0 and exact["ssim"] == pytest.approx(1.0)
    blurred = paired_error(degrade(truth, 2), truth, data_range=2.0)
    noisy = paired_error(truth + 0.5 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0)), truth,
                         data_range=2.0)
    assert blurred["psnr"] > noisy["psnr"] and blurred["mean_abs_error"] > 0
    one = paired_error(truth, truth[:1], data_range=2.0)  # one reference against every output
    assert one["mean_abs_error"] > 0
    with pytest.raises(ValueError, match="must pair up one to one"):
        paired_error(truth, torch.stack([truth[0]] * 3))


def test_a_covariate_model_trains_from_a_folder_and_its_table(tmp_path):
    from sciogen.volumes import volume_records

    rows = ["image,subject,visit,age"]
    for i, (r, age) in enumerate(((0.5, 61.0), (0.6, ""), (0.7, 75.0), (0.8, 80.0))):
        write_volume(MetaTensor((_ball(r, 1.6, (10, 10, 10)) + 1) * 300.0, affine=torch.eye(4, dtype=torch.float64)),
                     tmp_path / f"s{i}.nii.gz")
        rows.append(f"s{i}.nii.gz,sub-{i},1,{age}")
    (tmp_path / "subjects.csv").write_text("\n".join(rows) + "\n")
    records = volume_records(tmp_path, table=tmp_path / "subjects.csv")
    gen = VolumeGenerator(VolumeConfig(data=STILL, model=MODEL, condition=VolumeConditionConfig(scalars=["age"])))
    gen.fit(records, steps=2, **TRAIN)
    assert float(gen.model.covariates.mean[0]) == pytest.approx((61 + 75 + 80) / 3)  # the empty cell is missing
    assert gen.sample(1, steps=2, seed=0, condition={"age": 70})[0].shape == (1, *SHAPE)


def test_random_boxes_and_blank_make_the_inpainting_condition():
    from sciogen.volumes.conditioning import blank, random_boxes

    masks = random_boxes((16, 16, 8), 6, torch.Generator().manual_seed(0))
    assert masks.shape == (6, 1, 16, 16, 8) and set(masks.unique().tolist()) == {0.0, 1.0}
    for m in masks[:, 0]:
        sides = [int(m.any(dim=tuple(a for a in range(3) if a != axis)).sum()) for axis in range(3)]
        assert all(0.2 * n - 1 <= side <= 0.5 * n + 1 for side, n in zip(sides, (16, 16, 8)))
        assert int(m.sum()) == sides[0] * sides[1] * sides[2]  # one box
    x = torch.rand(6, 1, 16, 16, 8)
    cond = blank(x, masks)
    assert cond.shape == (6, 2, 16, 16, 8)
    assert torch.equal(cond[:, 1:], masks) and bool((cond[:, :1][masks > 0] == 0).all())
    torch.testing.assert_close(cond[:, :1][masks == 0], x[masks == 0])


def test_a_model_trained_to_fill_holes_inpaints_with_its_condition():
    images = torch.stack([_ball(r, 1.6) for r in (0.4, 0.55, 0.7, 0.85)])
    gen = VolumeGenerator(VolumeConfig(data=STILL, model=MODEL, process=VolumeProcessConfig(prediction="v_prediction"),
                                       condition=VolumeConditionConfig(image="masked")))
    gen.fit({"image": images}, steps=5, **TRAIN)
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor((_ball(0.6, 1.6, (12, 12, 12)) + 1) * 500.0, affine=affine)
    hole = torch.zeros(1, 12, 12, 12)
    hole[:, 4:8, 4:8, 4:8] = 1.0
    out = gen.inpaint(image, MetaTensor(hole, affine=affine), n=2, steps=4, seed=0)
    outside = hole[0] == 0
    assert torch.equal(out[0][0][outside], image[0][outside].as_tensor())  # the input, voxel for voxel
    assert not torch.allclose(out[0][0][~outside], out[1][0][~outside])  # two draws inside
    torch.testing.assert_close(out[0].affine.double(), affine)
    with pytest.raises(ValueError, match="inpainting model"):
        gen.sample(1, image=image)
