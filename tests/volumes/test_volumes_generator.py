"""The volumes generator: training, reproducible sampling, sliding-window and SDEdit paths,
geometry kept, metrics, MONAI transforms in a multi-worker pipeline, the CLI."""

from __future__ import annotations

import json

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.transforms import Compose  # noqa: E402

from sciogen.train.config import ConfigError  # noqa: E402
from sciogen.volumes import (  # noqa: E402
    NetworkGrid,
    RandVolumeDiffusion,
    RandVolumeDiffusiond,
    VolumeConfig,
    VolumeDataConfig,
    VolumeGenerator,
    VolumeModelConfig,
    evaluate,
    ms_ssim,
    read_volume,
    write_volume,
)
from sciogen.volumes.metrics import histogram_w1, mmd  # noqa: E402
from sciogen.volumes.training import augment_batch, training_volumes  # noqa: E402

SHAPE = (16, 16, 16)


def _phantom(shape=SHAPE, shift=0.0) -> torch.Tensor:
    """A head-like blob in [-1, 1]: bright shell, darker core."""
    axes = [torch.linspace(-1, 1, n) for n in shape]
    r = torch.sqrt(sum(g**2 for g in torch.meshgrid(*axes, indexing="ij")))
    head = (r < 0.8 + shift).float() * 1.5 + (r < 0.4).float() * -0.7
    return (head - 1.0).clamp(-1, 1)[None]


def _oblique_affine() -> torch.Tensor:
    angle = 0.3
    rot = torch.tensor([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]],
                       dtype=torch.float64)
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = rot @ torch.diag(torch.tensor([1.5, 1.2, 2.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-20.0, 7.0, 3.0])
    return affine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = VolumeConfig(data=VolumeDataConfig(shape=list(SHAPE)),
                          model=VolumeModelConfig(channels=[8, 8], attention_levels=[False, False]))
    gen = VolumeGenerator(config)
    data = torch.stack([_phantom(shift=s) for s in (-0.1, 0.0, 0.05, 0.1)])
    gen.fit(data, steps=4, batch_size=2, progress=False, tensorboard=False, log_every=1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    gen.save(path)
    return gen, path


def test_samples_are_reproducible_metatensors_and_survive_save_load(tiny):
    gen, path = tiny
    a = gen.sample(3, steps=4, seed=0, batch_size=2)
    b = VolumeGenerator.load(path, device="cpu").sample(3, steps=4, seed=0, batch_size=2)
    c = gen.sample(3, steps=4, seed=1, batch_size=2)
    assert len(a) == 3 and all(isinstance(v, MetaTensor) and v.shape == (1, *SHAPE) for v in a)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.as_tensor(), y.as_tensor())
    assert not torch.allclose(a[0].as_tensor(), c[0].as_tensor())
    assert torch.allclose(a[0].affine.double(), gen.grid_affine)


def test_clipped_sampling_stays_in_the_data_range(tiny):
    gen, _ = tiny
    plain = gen.sample(2, steps=3, seed=0)
    clipped = gen.sample(2, steps=3, seed=0, clip=True)
    assert all(float(v.abs().max()) <= 1.0 + 1e-5 for v in clipped)
    assert not torch.allclose(plain[0].as_tensor(), clipped[0].as_tensor())


def test_npz_orientation_codes_give_the_affine():
    from sciogen.volumes.training import axcodes_affine

    lia = axcodes_affine("LIA")
    # voxel axis 0 points left (-x), axis 1 inferior (-z), axis 2 anterior (+y)
    assert torch.equal(lia[:3, :3], torch.tensor([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=torch.float64))
    assert torch.equal(axcodes_affine("RAS"), torch.eye(4, dtype=torch.float64))


def test_larger_volumes_whole_and_by_sliding_window(tiny):
    gen, _ = tiny
    whole = gen.sample(1, steps=2, seed=0, shape=(24, 16, 32))[0]
    window = gen.sample(1, steps=2, seed=0, shape=(24, 16, 32), patch_size=(16, 16, 16))[0]
    assert whole.shape == window.shape == (1, 24, 16, 32)
    assert torch.isfinite(window).all()
    # the windows see the same noise: the two paths agree far better than two seeds do
    other = gen.sample(1, steps=2, seed=5, shape=(24, 16, 32))[0]
    assert (window - whole).abs().mean() < 0.5 * (other - whole).abs().mean()


def test_sampling_errors_name_the_problem(tiny):
    gen, _ = tiny
    with pytest.raises(ValueError, match="multiples of 2"):
        gen.sample(1, steps=2, shape=(15, 16, 16))
    with pytest.raises(ValueError, match="unknown sampling conditions"):
        gen.sample(1, steps=2, colour="red")
    with pytest.raises(ValueError, match="level must be in"):
        gen.augment(MetaTensor(_phantom()), level=1.5)
    with pytest.raises(ValueError, match="channel-first 3D"):
        gen.augment(torch.zeros(16, 16), level=0.3)


def test_augment_keeps_geometry_and_units_and_level_controls_the_change(tiny):
    gen, _ = tiny
    image = MetaTensor((_phantom((20, 18, 14)) + 1) * 500.0, affine=_oblique_affine())  # units: 0 .. 1000
    weak = gen.augment(image, level=0.05, n=2, seed=0)
    strong = gen.augment(image, level=0.9, n=2, seed=0)
    again = gen.augment(image, level=0.9, n=2, seed=0)
    for v in weak + strong:
        assert v.shape == image.shape
        assert torch.allclose(v.affine.double(), image.affine.double())
        assert float(v.min()) >= -1.0 and float(v.max()) <= 1001.0
    torch.testing.assert_close(strong[0].as_tensor(), again[0].as_tensor())
    change = [float(sum((v - image).abs().mean() for v in vs)) for vs in (weak, strong)]
    assert change[0] < change[1]


def test_inpaint_changes_only_the_masked_region(tiny):
    gen, _ = tiny
    image = MetaTensor((_phantom((20, 18, 14)) + 1) * 500.0, affine=_oblique_affine())
    mask = torch.zeros(1, 20, 18, 14)
    mask[:, 8:13, 6:12, 5:10] = 1
    a, b = gen.inpaint(image, mask, n=2, steps=4, seed=0)
    again = gen.inpaint(image, mask, n=2, steps=4, seed=0)[0]
    outside = mask == 0
    assert torch.equal(a.as_tensor()[outside], image.as_tensor()[outside])
    assert torch.allclose(a.affine.double(), image.affine.double())
    assert not torch.equal(a.as_tensor()[~outside], b.as_tensor()[~outside])  # two different completions
    torch.testing.assert_close(a.as_tensor(), again.as_tensor())
    with pytest.raises(ValueError, match="mask is empty"):
        gen.inpaint(image, torch.zeros(1, 20, 18, 14))
    with pytest.raises(ValueError, match="mask spatial shape"):
        gen.inpaint(image, torch.ones(1, 20, 18, 13))
    with pytest.raises(ValueError, match="mask= needs image="):
        gen.sample(1, steps=2, mask=mask)


def test_network_grid_inverse_returns_to_the_input_grid():
    shape = (30, 22, 18)
    coords = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    blob = 100.0 * torch.exp(-((coords[0] - 0.1) ** 2 + 2 * (coords[1] + 0.2) ** 2 + coords[2] ** 2) / 0.2)[None]
    image = MetaTensor(blob, affine=_oblique_affine())
    grid = NetworkGrid(image, SHAPE)
    assert grid.network.shape == (1, *SHAPE) and float(grid.network.min()) >= -1 and float(grid.network.max()) <= 1
    back = grid.inverse(grid.network + 1.0)  # + 1: background 0, as the cropping's inverse pads
    assert back.shape == image.shape
    assert torch.allclose(torch.as_tensor(back.affine).double(), image.affine.double(), atol=1e-5)
    reference = grid.normalization(image) + 1.0
    assert float((back - reference).abs().mean()) < 0.2 * float(reference.abs().mean())

    def centroid(v):
        w = torch.as_tensor(v)[0] / torch.as_tensor(v)[0].sum()
        return torch.stack([(w * c).sum() for c in coords])

    assert torch.allclose(centroid(back), centroid(reference), atol=0.02)  # < 1/3 voxel: nothing shifted


def test_augment_batch_is_seeded_and_stays_in_range():
    config = VolumeDataConfig(shape=list(SHAPE))
    x = torch.stack([_phantom(), _phantom(shift=0.1)])
    a = augment_batch(x, config, torch.Generator().manual_seed(0))
    b = augment_batch(x, config, torch.Generator().manual_seed(0))
    c = augment_batch(x, config, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c) and float(a.min()) >= -1.0 and float(a.max()) <= 1.0


def test_training_volumes_from_the_shared_brains(shared_datasets):
    config = VolumeDataConfig(root=str(shared_datasets / "volumes"), shape=[16, 16, 16],
                              files=["nibabel_5.4.2/anatomical.nii", "voxelmorph/test_scan.npz:vol"])
    volumes, affine = training_volumes(config)
    assert volumes.shape == (2, 1, 16, 16, 16)
    assert float(volumes.min()) == pytest.approx(-1.0, abs=1e-3) and float(volumes.max()) <= 1.0
    assert float((volumes > -0.5).float().mean()) > 0.2  # the brain fills the grid
    assert affine.shape == (4, 4)


def test_config_errors():
    with pytest.raises(ConfigError, match="data.shape"):
        VolumeDataConfig(shape=[16, 16])
    with pytest.raises(ConfigError, match="npz_axcodes"):
        VolumeDataConfig(npz_axcodes="LLA")
    with pytest.raises(ConfigError, match="attention_levels"):
        VolumeModelConfig(channels=[8, 16], attention_levels=[False])
    with pytest.raises(ConfigError, match="norm_num_groups"):
        VolumeModelConfig(channels=[12, 16], attention_levels=[False, False])
    with pytest.raises(ValueError, match="multiples of 4"):
        VolumeGenerator(VolumeConfig(data=VolumeDataConfig(shape=[18, 16, 16])))


def test_metrics_on_known_cases():
    x = torch.stack([_phantom(), _phantom(shift=0.1), _phantom(shift=-0.1)])
    assert ms_ssim(x, x).min() > 0.999
    same = evaluate([x[0]] * 3, x)
    varied = evaluate(list(x), x)
    assert same["diversity_ms_ssim"] > varied["diversity_ms_ssim"]
    assert same["nearest_ssim"] > 0.999 and varied["nearest_ssim"] > 0.999
    assert histogram_w1(x, x) == 0.0 and histogram_w1(x + 0.5, x) == pytest.approx(0.5, abs=1e-6)
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-9) and mmd(x + 1.0, x) > 0.1


def test_transforms_in_a_multiworker_pipeline(tiny):
    gen, _ = tiny
    image = MetaTensor((_phantom((20, 18, 14)) + 1) * 500.0, affine=_oblique_affine())
    label = MetaTensor((_phantom((20, 18, 14)) > 0).float(), affine=_oblique_affine())
    t = RandVolumeDiffusiond(keys="image", prob=1.0, model=gen, level=(0.2, 0.4), steps=4)
    first = t.set_random_state(3)({"image": image, "label": label})
    second = t.set_random_state(3)({"image": image, "label": label})
    torch.testing.assert_close(first["image"].as_tensor(), second["image"].as_tensor())
    assert first["label"] is label  # labels untouched
    assert torch.allclose(first["image"].affine.double(), image.affine.double())
    assert not torch.allclose(first["image"].as_tensor(), image.as_tensor())
    assert RandVolumeDiffusion(prob=0.0, model=gen)(image) is image

    pipeline = Compose([RandVolumeDiffusiond(keys="image", prob=1.0, model=gen, level=0.3, steps=4)])
    pipeline.set_random_state(0)
    loader = DataLoader(Dataset([{"image": image, "label": label}] * 4, transform=pipeline), batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["image"].shape == (2, 1, 20, 18, 14)
    out = torch.cat([b["image"] for b in batches])
    assert not torch.allclose(out[0], out[1]) or not torch.allclose(out[0], out[2])  # workers draw differently
    with pytest.raises(ValueError, match="level must be"):
        RandVolumeDiffusion(model=gen, level=(0.5, 0.2))


def test_cli_sample_writes_nifti_and_evaluates(tiny, tmp_path, capsys):
    from sciogen.cli import main

    _, path = tiny
    assert main(["sample", str(path), "-n", "2", "--steps", "3", "--seed", "0", "--out", str(tmp_path / "out")]) == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["metrics.json", "sample_000.nii.gz", "sample_001.nii.gz"]
    volume = read_volume(tmp_path / "out" / "sample_000.nii.gz")
    assert volume.shape == (1, *SHAPE)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n"] == 2.0
    image = MetaTensor((_phantom((20, 18, 14)) + 1) * 500.0, affine=_oblique_affine())
    write_volume(image, tmp_path / "in.nii.gz")
    code = main(["sample", str(path), "-n", "1", "--steps", "4", "--image", str(tmp_path / "in.nii.gz"),
                 "--level", "0.3", "--out", str(tmp_path / "variants")])
    assert code == 0
    variant = nib.load(str(tmp_path / "variants" / "sample_000.nii.gz"))
    assert np.allclose(variant.affine, nib.load(str(tmp_path / "in.nii.gz")).affine, atol=1e-5)
    assert main(["sample", str(path), "-n", "1", "--out", str(tmp_path / "x.nii.gz")]) == 1
    assert "folder" in capsys.readouterr().err


def test_shipped_model_samples_brains(shared_datasets):
    import sciogen

    if "volumes/brain-mri" not in sciogen.available():
        pytest.skip("volumes/brain-mri is not shipped in this checkout")
    gen = sciogen.load("volumes/brain-mri", device="cpu")
    samples = gen.sample(2, steps=10, seed=0)
    assert gen.config.data.root is None  # shipped: the registry's copy, no checkout path
    gen.config.data.root = str(shared_datasets / "volumes")  # the developers' copy of the training volumes
    reference = gen.reference_data()
    assert reference is not None
    scores = evaluate(samples, reference)
    # a trained model makes head-like volumes: far closer to a real brain than noise is
    noise = evaluate([torch.randn_like(samples[0].as_tensor()).clamp(-1, 1)], reference)
    assert scores["nearest_ssim"] > noise["nearest_ssim"] + 0.2


def test_transforms_load_a_shipped_model_once_per_process():
    import sciogen

    if not {"volumes/brain-mri", "toy/gmm"} <= set(sciogen.available()):
        pytest.skip("the shipped models are not in this checkout")
    first = RandVolumeDiffusion(model="volumes/brain-mri").generator
    assert isinstance(first, VolumeGenerator)
    assert RandVolumeDiffusiond(keys="image", model="volumes/brain-mri").transform.generator is first
    with pytest.raises(TypeError, match="not a VolumeGenerator"):
        RandVolumeDiffusion(model="toy/gmm").generator
