"""One export path for every domain (issue 23): ``Generator.export`` / ``sciogen export RUN OUT``."""

from __future__ import annotations

import pytest
import torch

import sciogen
from sciogen.config import ConfigError
from sciogen.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

from ..helpers import run_sciogen


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy run of 6 steps, checkpointed (weights, EMA weights and trainer state)."""
    folder = tmp_path_factory.mktemp("run")
    gen = sciogen.fit("toy/gmm", run_dir=folder / "r", overrides=["train.steps=6", "train.checkpoint_every=3",
                                                                    "data.num_samples=512"])
    assert gen.trained_steps == 6
    return folder / "r"


def test_export_keeps_the_ema_weights_alone_and_no_trainer_state(run, tmp_path):
    raw = load_checkpoint(checkpoint_path(run, 6))
    out = load_checkpoint(sciogen.load(run, device="cpu").export(tmp_path / "m.pt"))
    assert "trainer" not in out and out["ema"] is None
    assert out["metadata"]["trained_steps"] == 6
    assert all(torch.equal(out["model"][k], raw["ema"][k]) for k in raw["ema"])
    both = load_checkpoint(sciogen.load(run, device="cpu").export(tmp_path / "both.pt", ema_only=False))
    assert all(torch.equal(both["model"][k], raw["model"][k]) for k in raw["model"])


def test_half_keeps_the_named_weights_in_float32(run, tmp_path, monkeypatch):
    gen = sciogen.load(run, device="cpu")
    name = next(k for k, v in gen.model.state_dict().items() if v.is_floating_point())
    monkeypatch.setattr(type(gen), "export_keep_fp32", (name,))
    out = load_checkpoint(gen.export(tmp_path / "h.pt", half=True))
    dtypes = {k: v.dtype for k, v in out["model"].items() if v.is_floating_point()}
    assert dtypes.pop(name) == torch.float32
    assert set(dtypes.values()) == {torch.float16}
    samples = sciogen.load(tmp_path / "h.pt", device="cpu").sample(4, seed=0)  # loads back into float32
    assert torch.isfinite(torch.as_tensor(samples)).all()


def test_settings_change_only_the_sections_a_domain_allows(run, tmp_path):
    gen = sciogen.load(run, device="cpu")
    out = load_checkpoint(gen.export(tmp_path / "s.pt", settings=["sampling.steps=7"]))
    assert out["config"]["sampling"]["steps"] == 7
    with pytest.raises(ConfigError, match="changes only the sampling section"):
        gen.export(tmp_path / "bad.pt", settings=["model.hidden=3"])
    with pytest.raises(ConfigError, match="sampling.stepz"):
        gen.export(tmp_path / "bad.pt", settings=["sampling.stepz=3"])
    assert not (tmp_path / "bad.pt").exists()


def test_every_training_stage_is_recorded(run, tmp_path):
    stage1 = sciogen.load(run, device="cpu").export(tmp_path / "stage1.pt")
    checkpoint = load_checkpoint(checkpoint_path(run, 6))
    checkpoint["config"]["train"]["init_from"] = str(stage1)
    checkpoint["trainer"]["step"] = 4  # a second stage of 4 steps on top of the first's 6
    save_checkpoint(checkpoint, tmp_path / "stage2" / "checkpoints" / "step-00000004.pt")
    out = load_checkpoint(sciogen.load(tmp_path / "stage2", device="cpu").export(tmp_path / "two.pt"))
    assert out["metadata"]["stage_steps"] == [6, 4] and out["metadata"]["total_trained_steps"] == 10


def test_sciogen_export_from_the_shell(run, tmp_path):
    result = run_sciogen("export", run, "model.pt", "--half", "--set", "sampling.steps=9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout and "(6 steps)" in result.stdout
    assert load_checkpoint(tmp_path / "model.pt")["config"]["sampling"]["steps"] == 9
    again = run_sciogen("export", run, "model.pt", cwd=tmp_path)
    assert again.returncode != 0 and "OUT model.pt already exists; pass --force" in again.stderr
    typo = run_sciogen("export", run, "other.pt", "--set", "model.hidden=3", cwd=tmp_path)
    assert typo.returncode != 0 and "changes only the sampling section" in typo.stderr
    assert not (tmp_path / "other.pt").exists()
