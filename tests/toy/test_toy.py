"""The toy domain: network, generator verbs, file formats and the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sciogen
from sciogen.config import from_dict, to_dict
from sciogen.diffusion import GaussianMixture
from sciogen.registry import load_run_config, read_checkpoint
from sciogen.toy import MLPDenoiser, ToyConfig, ToyDataConfig, ToyModelConfig, VectorGenerator, energy_distance
from sciogen.toy.io import read_vectors, write_vectors
from sciogen.train.checkpoint import CheckpointError
from sciogen.train.config import DiffusionConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]
REFERENCE = GaussianMixture.example(2).sample(4000, generator=torch.Generator().manual_seed(7)).float()



def _small(**train) -> ToyConfig:
    options = dict(steps=300, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.99, progress=False, tensorboard=False)
    return ToyConfig(
        data=ToyDataConfig(num_samples=4000),
        model=ToyModelConfig(hidden=64, depth=2, time_dim=32),
        diffusion=DiffusionConfig(schedule="cosine", prediction="v"),
        train=TrainConfig(**{**options, **train}),
    )


def test_denoiser_shapes_and_input_check():
    net = MLPDenoiser(3, hidden=16, depth=2, time_dim=8)
    assert net(torch.randn(5, 3), torch.rand(5)).shape == (5, 3)
    assert torch.equal(net(torch.randn(2, 3), torch.rand(2)), torch.zeros(2, 3))  # zero-initialised output
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 3\), got \(5, 2\)"):
        net(torch.randn(5, 2), torch.rand(5))


def test_training_learns_the_mixture():
    untrained = VectorGenerator(_small())
    before = energy_distance(untrained.sample(1000, seed=0), REFERENCE)
    trained = VectorGenerator(_small()).fit()
    after = energy_distance(trained.sample(1000, seed=0), REFERENCE)
    assert trained.trained_steps == 300
    assert after < 0.05 and after < before / 5, (before, after)


def test_sampling_is_reproducible_and_chunked_by_seed():
    gen = VectorGenerator(_small())
    a = gen.sample(10, seed=3, batch_size=4)
    assert torch.equal(a, gen.sample(10, seed=3, batch_size=4))
    assert torch.equal(a[:4], gen.sample(4, seed=3, batch_size=4))  # chunk i depends on (seed, i) only
    assert not torch.equal(a, gen.sample(10, seed=4, batch_size=4))
    assert a.shape == (10, 2) and a.device.type == "cpu"
    with pytest.raises(ValueError, match="n must be >= 1"):
        gen.sample(0)
    with pytest.raises(ValueError, match="takes no sampling conditions, got \\['temperature'\\]"):
        gen.sample(2, temperature=0.5)


def test_save_and_load_round_trip(tmp_path):
    gen = VectorGenerator(_small(steps=5)).fit(np.random.default_rng(0).normal(size=(500, 2)) * 3 + 1)
    gen.save(tmp_path / "toy.pt")
    back = VectorGenerator.load(tmp_path / "toy.pt", device="cpu")
    assert back.trained_steps == 5
    assert torch.equal(back.shift, gen.shift) and torch.equal(back.scale, gen.scale)
    assert torch.equal(back.sample(20, seed=1), gen.sample(20, seed=1))
    assert type(sciogen.load(tmp_path / "toy.pt", device="cpu")) is VectorGenerator


def test_load_refuses_a_checkpoint_of_another_domain(tmp_path):
    ckpt = VectorGenerator(_small()).checkpoint()
    ckpt["domain"] = "molecules"
    with pytest.raises(CheckpointError, match="is for domain 'molecules', not 'toy'; use sciogen.load"):
        VectorGenerator.from_checkpoint(ckpt)


def test_fit_checks_the_data_shape_and_reads_files(tmp_path):
    gen = VectorGenerator(_small(steps=2))
    with pytest.raises(ValueError, match=r"must have shape \(N, 2\), got \(50, 3\).*ToyDataConfig\(dim=...\)"):
        gen.fit(torch.randn(50, 3))
    path = write_vectors(torch.randn(300, 2), tmp_path / "train.csv")
    gen.fit(path)
    assert gen.reference_data().shape == (300, 2)
    assert set(gen.evaluate(gen.sample(50, seed=0))) == {"energy_distance", "mean_error", "cov_error"}


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".pt"])
def test_vector_files_round_trip(tmp_path, suffix):
    x = torch.randn(7, 3)
    back = read_vectors(write_vectors(x, tmp_path / f"v{suffix}"))
    assert torch.allclose(back, x, atol=1e-6)


def test_bad_vector_files_are_reported(tmp_path):
    (tmp_path / "bad.csv").write_text("x0,x1\n1,2\n3,abc\n")
    with pytest.raises(ValueError, match=r"row 2 has a non-numeric cell: \['3', 'abc'\]"):
        read_vectors(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("1,2\nnan,4\n")
    with pytest.raises(ValueError, match="row 1 contains NaN or inf"):
        read_vectors(tmp_path / "nan.csv")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        read_vectors(tmp_path / "v.txt")


def test_evaluate_against_the_mixture_separates_good_from_bad_samples():
    good = GaussianMixture.example(2).sample(2000, generator=torch.Generator().manual_seed(3))
    bad = torch.randn(2000, 2)
    m_good, m_bad = VectorGenerator.evaluate_samples(good), VectorGenerator.evaluate_samples(bad)
    assert m_good["energy_distance"] < 0.01 < m_bad["energy_distance"]
    assert abs(m_good["nll"] - m_good["reference_nll"]) < 0.15 < m_bad["nll"] - m_bad["reference_nll"]


# -- the shipped model -------------------------------------------------------------------------------------


def test_shipped_model_is_listed_and_samples_the_mixture():
    assert "toy/gmm" in sciogen.available()
    gen = sciogen.load("toy/gmm", device="cpu")
    assert isinstance(gen, VectorGenerator) and gen.ema_model is not None
    metrics = gen.evaluate(gen.sample(2000, seed=0))
    assert metrics["energy_distance"] < 0.02, metrics
    assert abs(metrics["nll"] - metrics["reference_nll"]) < 0.5, metrics


def test_shipped_model_was_trained_with_the_recipe_in_the_repository():
    checkpoint, _ = read_checkpoint("toy/gmm")
    config = load_run_config(REPO / "domains" / "toy" / "gmm.yaml")
    recipe = to_dict(config)
    # read as this version reads it: options added since the model was trained take their defaults
    stored = to_dict(from_dict(type(config), checkpoint["config"]))
    assert stored["train"].pop("run_dir") == "runs/toy-gmm"
    recipe["train"].pop("run_dir")
    for config_dict in (stored, recipe):  # how progress was shown does not change the model
        config_dict["train"].pop("progress")
    assert stored == recipe
    assert checkpoint["metadata"]["trained_steps"] == recipe["train"]["steps"]
    assert "trainer" not in checkpoint


@pytest.mark.slow
def test_retraining_the_recipe_reproduces_the_shipped_weights(tmp_path):
    config = load_run_config(REPO / "domains" / "toy" / "gmm.yaml", ["train.progress=false"])
    trained = VectorGenerator(config).fit(run_dir=tmp_path)
    shipped = sciogen.load("toy/gmm", device="cpu")
    for key, value in shipped.ema_model.state_dict().items():
        assert torch.allclose(value, trained.ema_model.state_dict()[key], atol=1e-4), key
