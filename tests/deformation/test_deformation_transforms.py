"""The MONAI transforms behave like native MONAI random transforms (2D and 3D side by side)."""

from __future__ import annotations

import pytest
import torch
from monai.data import CacheDataset, DataLoader, MetaTensor  # noqa: E402
from monai.transforms import Compose, RandFlipd  # noqa: E402

from sciogen.deformation import (  # noqa: E402
    DeformationConfig,
    DeformationDataConfig,
    DeformationGenerator,
    DeformationModelConfig,
    RandDeformationDiffusion,
    RandDeformationDiffusiond,
    jacobian_determinant,
)

SHAPES = {2: (40, 52), 3: (18, 22, 20)}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[int, str]:
    """Tiny untrained models (the network predicts no recovery: the transforms' plumbing is
    what is tested here; the shipped models are tested in test_deformation_generator)."""
    out = {}
    for dim, shape in ((2, [32, 32]), (3, [16, 16, 16])):
        config = DeformationConfig(data=DeformationDataConfig(spatial_dims=dim, shape=shape),
                                   model=DeformationModelConfig(channels=[4, 8], time_dim=16))
        path = tmp_path_factory.mktemp("models") / f"tiny-{dim}d.pt"
        DeformationGenerator(config).save(path)
        out[dim] = str(path)
    return out


def sample(dim: int, seed: int = 0) -> dict[str, MetaTensor]:
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[dim]
    affine = torch.diag(torch.tensor([2.0, 1.5, 3.0, 1.0], dtype=torch.float64))
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, *[4] * dim, generator=g), size=shape,
                                             mode="bilinear" if dim == 2 else "trilinear", align_corners=True)[0]
    label = (smooth * 4).floor().clamp(0, 3).to(torch.int64) * 10  # labels {0, 10, 20, 30}
    return {"image": MetaTensor(smooth, affine=affine, meta={"filename_or_obj": "x.nii.gz"}),
            "label": MetaTensor(label, affine=affine)}


def dict_transform(model: str, prob: float = 1.0, **kw) -> RandDeformationDiffusiond:
    return RandDeformationDiffusiond(keys=("image", "label"), prob=prob, model=model, mode=("bilinear", "nearest"), **kw)


@pytest.mark.parametrize("dim", [2, 3])
def test_one_deformation_for_all_keys_with_meta_kept(models, dim):
    data = sample(dim)
    out = dict_transform(models[dim], ddf_key="ddf").set_random_state(0)(data)
    img, lab, ddf = out["image"], out["label"], out["ddf"]
    assert isinstance(img, MetaTensor) and isinstance(lab, MetaTensor)
    assert torch.equal(img.affine, data["image"].affine) and torch.equal(lab.affine, data["label"].affine)
    assert img.meta["filename_or_obj"] == "x.nii.gz"
    assert img.shape == data["image"].shape and ddf.shape == (dim, *SHAPES[dim])
    assert lab.dtype == torch.int64 and set(lab.unique().tolist()) <= {0, 10, 20, 30}
    assert (img - data["image"]).abs().mean() > 1e-3  # something moved
    assert float(jacobian_determinant(ddf[None]).min()) > 0
    # the same field moved the label: warping the label by it reproduces the output
    from sciogen.deformation import warp

    assert torch.equal(warp(data["label"].as_tensor()[None].float(), ddf[None], mode="nearest")[0].long(), lab.as_tensor())


@pytest.mark.parametrize("dim", [2, 3])
def test_set_random_state_gives_the_same_output(models, dim):
    data = sample(dim)
    t = dict_transform(models[dim])
    a = t.set_random_state(7)(data)
    b = t.set_random_state(7)(data)
    c = t(data)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], c["image"])


def test_prob_zero_and_array_version(models):
    data = sample(2)
    assert dict_transform(models[2], prob=0.0)(data)["image"] is data["image"]
    t = RandDeformationDiffusion(prob=1.0, model=models[2]).set_random_state(3)
    out = t(data["image"])
    assert isinstance(out, MetaTensor) and out.shape == data["image"].shape
    assert torch.equal(out, RandDeformationDiffusion(prob=1.0, model=models[2]).set_random_state(3)(data["image"]))
    with pytest.raises(ValueError, match="mode"):
        RandDeformationDiffusion(model=models[2], mode="bicubic")


def test_wrong_dimension_is_rejected_clearly(models):
    with pytest.raises(ValueError, match="2D"):
        dict_transform(models[2])(sample(3))


def test_compose_cache_dataset_and_multiworker_loader(models):
    items = [sample(2, seed=i) for i in range(4)]
    pipeline = Compose([RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0), dict_transform(models[2])])
    pipeline.set_random_state(11)
    cached = CacheDataset(items, transform=pipeline, cache_rate=1.0, num_workers=0, progress=False)

    def run():
        torch.manual_seed(0)  # MONAI's DataLoader seeds each worker's transforms from torch's generator
        loader = DataLoader(cached, batch_size=2, num_workers=2, shuffle=False)
        return [b for b in loader]

    first, second = run(), run()
    assert len(first) == 2 and first[0]["image"].shape == (2, 1, *SHAPES[2])
    for a, b in zip(first, second):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    labels = torch.cat([b["label"] for b in first])
    assert set(labels.unique().tolist()) <= {0, 10, 20, 30}
