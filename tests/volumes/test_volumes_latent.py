"""Latent diffusion of volumes: the two training stages (MONAI AutoencoderKL, then the U-Net on
its frozen, unit-variance latents), sampling and SDEdit through the decoder, resume, errors."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor  # noqa: E402

from sciogen.train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from sciogen.train.config import ConfigError  # noqa: E402
from sciogen.volumes import (  # noqa: E402
    VolumeConditionConfig,
    VolumeConfig,
    VolumeDataConfig,
    VolumeGenerator,
    VolumeLatentConfig,
    VolumeModelConfig,
    VolumeProcessConfig,
)

SHAPE = (16, 16, 16)
TRAIN = dict(batch_size=4, progress=False, tensorboard=False, lr=3e-3, warmup_steps=5, ema_decay=0.9, log_every=50)


def _ball(radius: float, shape=SHAPE) -> torch.Tensor:
    axes = [torch.linspace(-1, 1, n) for n in shape]
    r = torch.sqrt(sum(g**2 for g in torch.meshgrid(*axes, indexing="ij")))
    return ((r < radius).float() * 1.6 - 0.9).clamp(-1, 1)[None]


def _config(**condition) -> VolumeConfig:
    return VolumeConfig(
        data=VolumeDataConfig(shape=list(SHAPE), rotate_degrees=0.0, scale=0.0, intensity=0.0),
        model=VolumeModelConfig(channels=[16, 16], attention_levels=[False, False], norm_num_groups=4),
        latent=VolumeLatentConfig(enabled=True, channels=[8, 8], latent_channels=2, norm_num_groups=4, steps=80, lr=3e-3),
        process=VolumeProcessConfig(prediction="v_prediction"),
        condition=VolumeConditionConfig(**condition),
    )


VOLUMES = torch.stack([_ball(r) for r in (0.4, 0.5, 0.6, 0.7)])


@pytest.fixture(scope="module")
def latent(tmp_path_factory):
    run = tmp_path_factory.mktemp("latent-run")
    gen = VolumeGenerator(_config())
    untrained = VolumeGenerator(_config()).model
    untrained.fit_scale(VOLUMES)
    before = (untrained.decode(untrained.encode(VOLUMES)) - VOLUMES).abs().mean()
    gen.fit(VOLUMES, steps=40, run_dir=run, **TRAIN)
    return gen, run, float(before)


def test_two_stages_train_the_autoencoder_then_only_the_unet(latent):
    gen, run, before = latent
    stage1 = latest_checkpoint(run / "autoencoder")
    assert stage1 is not None and latest_checkpoint(run) is not None
    trained = load_checkpoint(stage1)["model"]
    for name, value in gen.model.autoencoder.state_dict().items():  # frozen through the diffusion stage
        torch.testing.assert_close(value, trained[name])
    after = float((gen.model.decode(gen.model.encode(VOLUMES)) - VOLUMES).abs().mean())
    assert after < 0.5 * before  # the autoencoder learned to reconstruct
    z = gen.model.encode(VOLUMES)
    assert z.shape == (4, 2, 8, 8, 8)
    assert float(z.std()) == pytest.approx(1.0, rel=1e-3)  # latents scaled to unit variance


def test_latent_samples_decode_to_volumes_and_survive_save_load(latent, tmp_path):
    gen, _, _ = latent
    a = gen.sample(2, steps=6, seed=0)
    assert a[0].shape == (1, *SHAPE) and torch.isfinite(a[0]).all()
    gen.save(tmp_path / "latent.pt")
    b = VolumeGenerator.load(tmp_path / "latent.pt", device="cpu").sample(2, steps=6, seed=0)
    torch.testing.assert_close(a[1].as_tensor(), b[1].as_tensor())
    assert gen.sample(1, steps=3, seed=0, shape=(24, 16, 32))[0].shape == (1, 24, 16, 32)


def test_latent_sdedit_keeps_the_input_geometry(latent):
    gen, _, _ = latent
    affine = torch.diag(torch.tensor([1.5, 1.5, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor((_ball(0.6, (20, 20, 14)) + 1) * 400.0, affine=affine)
    out = gen.augment(image, level=0.3, n=2, seed=0)
    assert out[0].shape == image.shape
    torch.testing.assert_close(out[0].affine.double(), affine)
    assert float(out[0].min()) >= float(image.min()) and float(out[0].max()) <= float(image.max())


def test_resume_after_the_autoencoder_stage_continues_the_unet(latent, tmp_path):
    gen, run, _ = latent
    again = VolumeGenerator(_config())
    again.fit(VOLUMES, steps=45, run_dir=run, resume=True, **TRAIN)
    assert again.trained_steps == 45
    for name, value in gen.model.autoencoder.state_dict().items():
        torch.testing.assert_close(value, again.model.autoencoder.state_dict()[name])


def test_latent_errors_name_the_problem(latent):
    gen, _, _ = latent
    with pytest.raises(ValueError, match="sliding window"):
        gen.sample(1, steps=2, patch_size=(8, 8, 8))
    with pytest.raises(ValueError, match="use a pixel-space model"):
        gen.inpaint(MetaTensor(_ball(0.5)), MetaTensor((_ball(0.3) > 0).float()), steps=2)
    with pytest.raises(ValueError, match="multiples of 4"):
        gen.sample(1, steps=2, shape=(18, 16, 16))
    with pytest.raises(ConfigError, match="pixel space only"):
        _config(image="lowres")
    with pytest.raises(ConfigError, match="multiples of 4"):
        VolumeConfig(data=VolumeDataConfig(shape=[18, 16, 16]), latent=VolumeLatentConfig(enabled=True, channels=[8, 8, 8]))


def test_latent_model_with_covariates():
    gen = VolumeGenerator(_config(scalars=["radius"]))
    gen.fit({"image": VOLUMES, "radius": [0.4, 0.5, 0.6, 0.7]}, steps=3, **{**TRAIN, "warmup_steps": 1})
    out = gen.sample(1, steps=3, seed=0, condition={"radius": 0.5}, guidance=2.0)
    assert out[0].shape == (1, *SHAPE)
