"""Longitudinal volumes (SADM-style): the synthetic set's documented properties, the
conditioner's block-causal mask (no leakage from later or missing visits), training with
missing visits, visit-by-visit generation, save / load, configs and input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sciogen.registry import get_domain, load_run_config  # noqa: E402
from sciogen.train.config import ConfigError  # noqa: E402
from sciogen.train.seeding import make_generator  # noqa: E402
from sciogen.volumes.io import write_volume  # noqa: E402
from sciogen.volumes.longitudinal import (  # noqa: E402
    HistoryError,
    LongitudinalConfig,
    LongitudinalDataConfig,
    LongitudinalModelConfig,
    LongitudinalSet,
    LongitudinalSyntheticConfig,
    LongitudinalVolumeGenerator,
    progressive_displacement,
    subject_on_grid,
    synthetic_longitudinal,
)
from sciogen.volumes.training import training_volumes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 16)
# the two small real brains of ../shared/datasets/volumes (the other two take ~20 s to resample)
FILES = ["nibabel_5.4.2/anatomical.nii", "dipy_1.12.1/aniso_vox.nii.gz"]


def _config(**model) -> LongitudinalConfig:
    options = dict(channels=[8, 8, 16], attention_levels=[False, False, False], encoder_channels=[8, 8, 8],
                   context_dim=16, heads=2, depth=1, queries=2, tokens=2)
    options.update(model)
    data = LongitudinalDataConfig(root=str(REPO.parent / "shared" / "datasets" / "volumes"), files=FILES,
                                  shape=list(SHAPE), synthetic=LongitudinalSyntheticConfig(subjects_per_volume=4))
    return LongitudinalConfig(data=data, model=LongitudinalModelConfig(**options))


@pytest.fixture(scope="module")
def brains():
    root = REPO.parent / "shared" / "datasets" / "volumes"
    if not root.is_dir():
        pytest.skip(f"shared volumes not found at {root}")
    return training_volumes(_config().data)[0]


@pytest.fixture(scope="module")
def dataset(brains) -> LongitudinalSet:
    return synthetic_longitudinal(brains, visits=4, subjects_per_volume=4, missing=0.3, seed=0)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    gen = LongitudinalVolumeGenerator(_config())
    gen.training_data(dataset)  # sets residual_scale, the RMS of the change between visits
    assert 0.005 < gen.residual_scale < 0.1
    batch = {"visits": dataset.visits[:4], "times": dataset.times[:4].nan_to_num(0.0), "present": dataset.present[:4]}
    with torch.no_grad():
        before = float(gen.loss(gen.model, batch, make_generator(7)).mean())
    gen.fit(dataset, steps=40, batch_size=4, lr=3e-3, progress=False, tensorboard=False, log_every=10)
    with torch.no_grad():
        after = float(gen.loss(gen.model, batch, make_generator(7)).mean())
    path = tmp_path_factory.mktemp("longitudinal") / "model.pt"
    gen.save(path)
    return gen, path, before, after


# -- the synthetic set -------------------------------------------------------------------------


def test_synthetic_set_has_the_documented_properties(brains, dataset):
    s, v = 8, 4
    assert dataset.visits.shape == (s, v, 1, *SHAPE) and dataset.times.shape == dataset.present.shape == (s, v)
    assert torch.equal(dataset.source, torch.arange(2).repeat_interleave(4))
    gaps = dataset.times.diff(dim=1)
    assert torch.all(dataset.times[:, 0] == 0) and torch.all((gaps >= 0.5) & (gaps <= 1.5))
    assert torch.all((dataset.rate >= 0.06) & (dataset.rate <= 0.15)) and dataset.centre.abs().max() <= 0.05
    # missing visits: zeros, flagged; every subject keeps two visits; some are missing at 30 %
    assert torch.all(dataset.present.sum(1) >= 2) and not dataset.present.all()
    assert torch.all(dataset.visits[~dataset.present] == 0)
    # the same seed gives the same set, another seed another
    again = synthetic_longitudinal(brains, visits=4, subjects_per_volume=4, missing=0.3, seed=0)
    assert torch.equal(again.visits, dataset.visits) and torch.equal(again.present, dataset.present)
    assert not torch.equal(synthetic_longitudinal(brains, visits=4, subjects_per_volume=4, seed=1).times,
                           dataset.times)


def test_deformation_grows_monotonically_with_time(brains):
    full = synthetic_longitudinal(brains, visits=4, subjects_per_volume=3, missing=0.0, seed=3)
    assert full.present.all()
    change = (full.visits - full.visits[:, :1]).abs().flatten(2).mean(2)   # (S, V) distance to the baseline
    assert torch.all(change[:, 1:] > change[:, :-1])
    # the displacement is the amplitude r t times a fixed field: monotone in t, and the
    # backward map p - u(p) has a positive Jacobian at the largest amplitude allowed
    fields = progressive_displacement(SHAPE, torch.tensor([0.2, 0.4, 0.95]), torch.zeros(3, 3), 0.35)
    size = fields.norm(dim=1).flatten(1).max(1).values
    assert torch.all(size.diff() > 0)
    spacing = 2.0 / SHAPE[0]
    grads = torch.stack([torch.stack(torch.gradient(fields[2, i].double(), spacing=spacing)) for i in range(3)])
    jacobian = torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1, 1) - grads
    assert float(torch.linalg.det(jacobian.permute(2, 3, 4, 0, 1)).min()) > 0


def test_synthetic_set_rejects_folding_amplitudes(brains):
    with pytest.raises(ValueError, match="must stay below 1"):
        synthetic_longitudinal(brains, visits=6, rate=(0.1, 0.3))
    with pytest.raises(ConfigError, match="data.synthetic"):
        LongitudinalSyntheticConfig(visits=6, rate=[0.1, 0.3])


# -- the conditioner's mask ------------------------------------------------------------------------


def _outputs(net, visits, times, present):
    b, v = present.shape
    index = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(v), indexing="ij"), -1).view(-1, 2)
    x = torch.randn(b * v, 1, *SHAPE, generator=torch.Generator().manual_seed(0))
    steps = torch.full((b * v,), 500)
    with torch.no_grad():
        return net(x, steps, visits=visits, times=times, present=present, index=index).view(b, v, -1)


def test_later_and_missing_visits_do_not_leak_into_earlier_targets():
    net = LongitudinalVolumeGenerator(_config()).model.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # MONAI zero-initialises residual branches: at init the conditions could not act at all
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    visits = torch.rand(2, 4, 1, *SHAPE, generator=g) * 2 - 1
    times = torch.tensor([[0.0, 1.0, 2.0, 3.5], [0.0, 0.7, 1.9, 2.4]])
    present = torch.ones(2, 4, dtype=torch.bool)
    base = _outputs(net, visits, times, present)

    later = visits.clone()
    later[:, 2] = -later[:, 2]
    out = _outputs(net, later, times, present)
    torch.testing.assert_close(out[:, :3], base[:, :3], rtol=0, atol=1e-6)   # targets 0..2 never see visit 2
    assert (out[:, 3] - base[:, 3]).abs().max() > 1e-3                       # target 3 does

    moved = times.clone()
    moved[:, 3] += 0.8                                                        # a later visit's time
    out = _outputs(net, visits, moved, present)
    torch.testing.assert_close(out[:, :3], base[:, :3], rtol=0, atol=1e-6)
    assert (out[:, 3] - base[:, 3]).abs().max() > 1e-3                       # the target's own time matters

    gap = present.clone()
    gap[:, 1] = False
    masked = _outputs(net, visits, times, gap)
    garbage, nan_times = visits.clone(), times.clone()
    garbage[:, 1] = float("nan")
    nan_times[:, 1] = float("nan")
    others = [0, 2, 3]  # slot 1 as a target reads its own time; as a visit it must be invisible
    torch.testing.assert_close(_outputs(net, garbage, nan_times, gap)[:, others], masked[:, others], rtol=0, atol=1e-6)
    assert (masked[:, 2:] - base[:, 2:]).abs().max() > 1e-3                  # the mask does remove visit 1


# -- training and generation --------------------------------------------------------------------------


def test_training_with_missing_visits_lowers_the_loss(trained, dataset):
    gen, _, before, after = trained
    assert not dataset.present.all() and gen.trained_steps == 40
    assert after < 0.7 * before, (before, after)   # measured 0.42-0.43 over 3 seeds (untrained: 1.0)


def test_predict_and_forecast_shapes_seeds_and_history(trained, dataset):
    gen, _, _, _ = trained
    history, times, present = dataset.visits[2], dataset.times[2], dataset.present[2]
    a = gen.predict(history, times, 5.0, present=present, n=2, steps=3, seed=0)
    b = gen.predict(history, times, 5.0, present=present, n=2, steps=3, seed=0)
    c = gen.predict(history, times, 5.0, present=present, n=2, steps=3, seed=1)
    assert a.shape == (2, 1, *SHAPE) and torch.isfinite(a).all()
    torch.testing.assert_close(a.as_tensor(), b.as_tensor())
    assert not torch.allclose(a.as_tensor(), c.as_tensor())
    other = gen.predict(dataset.visits[6], dataset.times[6], 5.0, present=dataset.present[6], n=2, steps=3, seed=0)
    assert (other - a).abs().mean() > 0.05                                     # a different subject's history
    path = gen.forecast(history[:2], times[:2], [2.5, 3.0, 4.0], present=present[:2], n=2, steps=3, seed=0)
    assert path.shape == (2, 3, 1, *SHAPE) and torch.isfinite(path).all()
    assert torch.allclose(path.affine.double(), gen.grid_affine)


def test_save_load_round_trip(trained, dataset):
    gen, path, _, _ = trained
    loaded = LongitudinalVolumeGenerator.load(path, device="cpu")
    args = (dataset.visits[0], dataset.times[0], 4.5)
    torch.testing.assert_close(loaded.predict(*args, present=dataset.present[0], steps=3, seed=4).as_tensor(),
                               gen.predict(*args, present=dataset.present[0], steps=3, seed=4).as_tensor())
    assert loaded.trained_steps == 40


def test_bad_histories_raise_specific_errors(trained, dataset):
    gen, _, _, _ = trained
    history, times = dataset.visits[4], dataset.times[4]
    with pytest.raises(HistoryError, match=r"history must be \(V, 1, 16, 16, 16\)"):
        gen.predict(history[:, :, :8], times, 5.0)
    with pytest.raises(HistoryError, match="one time per visit"):
        gen.predict(history, times[:3], 5.0)
    with pytest.raises(HistoryError, match="increase strictly"):
        gen.predict(history, times.flip(0), 5.0)
    with pytest.raises(HistoryError, match="no present visit"):
        gen.predict(history, times, 5.0, present=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(HistoryError, match="after the last present visit"):
        gen.predict(history, times, float(times.max()), present=torch.ones(4, dtype=torch.bool))
    with pytest.raises(HistoryError, match="target_times must increase"):
        gen.forecast(history, times, [9.0, 8.0])
    with pytest.raises(ValueError, match="unknown sampling conditions"):
        gen.sample(1, history=history, times=times, target_times=[9.0], colour="red")
    with pytest.raises(HistoryError, match="pass history="):
        gen.sample(1, steps=2)


# -- files, records, configs -----------------------------------------------------------------------------


def test_written_forecasts_read_back(trained, dataset, tmp_path):
    gen, _, _, _ = trained
    path = gen.forecast(dataset.visits[1], dataset.times[1], [4.0, 5.0], present=dataset.present[1], n=2, steps=2,
                        seed=0)
    folder = gen.write_samples(path, tmp_path / "forecast")
    back = gen.read_samples(folder)
    assert back.shape == path.shape
    torch.testing.assert_close(back.as_tensor(), path.as_tensor())
    assert gen.evaluate_samples(path, back)["mean_abs_error"] < 1e-6


def test_records_become_subjects_on_one_grid(brains, tmp_path):
    files = [str(REPO.parent / "shared" / "datasets" / "volumes" / f) for f in FILES]
    (tmp_path / "b").mkdir()
    shifted = tmp_path / "b" / "later.nii.gz"
    from sciogen.volumes.io import read_volume

    volume = read_volume(files[0])
    write_volume(volume.roll(2, dims=1), shifted)
    records = [{"image": str(shifted), "subject": "a", "time": 1.5}, {"image": files[0], "subject": "a", "time": 0.0},
               {"image": files[1], "subject": "b", "time": 0.3}]
    gen = LongitudinalVolumeGenerator(_config())
    with pytest.warns(UserWarning, match="1 of 2 subjects"):
        subjects = gen.training_data(records)
    assert len(subjects) == 1
    item = subjects[0]
    assert item["present"].tolist() == [True, True] and item["times"].tolist() == [0.0, 1.5]
    grid, _ = subject_on_grid([files[0], files[0]], SHAPE)
    torch.testing.assert_close(grid[0], grid[1])
    torch.testing.assert_close(item["visits"][0], grid[0])
    assert (item["visits"][1] - item["visits"][0]).abs().mean() > 0.01           # the shift survives the map
    with pytest.raises(HistoryError, match="register and resample"):
        subject_on_grid([files[0], files[1]], SHAPE)


def test_recipe_and_registry():
    config = load_run_config(REPO / "domains" / "volumes" / "longitudinal.yaml")
    assert isinstance(config, LongitudinalConfig) and config.domain == "volumes_longitudinal"
    spec = get_domain("volumes_longitudinal")
    assert spec.extra == "volumes" and spec.generator_class() is LongitudinalVolumeGenerator
    with pytest.raises(ConfigError, match="data.history_dropout"):
        LongitudinalDataConfig(history_dropout=1.0)


def test_history_files_come_back_on_their_grid_and_units(trained, dataset, tmp_path):
    gen, _, _, _ = trained
    affine = torch.diag(torch.tensor([1.5, 1.5, 2.0, 1.0], dtype=torch.float64))
    files = []
    for k in range(2):  # two visits of one subject on a 24^3 grid, in units of 0 .. 1000
        files.append(write_volume(500 * (dataset.visits[0, k, :, :12, :12, :12].repeat(1, 2, 2, 2) + 1),
                                  tmp_path / f"visit{k}.nii.gz", affine=affine))
    out = gen.sample(2, steps=2, seed=0, history=[str(f) for f in files], times=[0.0, 1.0], target_times=[2.0, 3.0])
    assert out.shape == (2, 2, 1, 24, 24, 24) and torch.allclose(out.affine.double(), affine)
    assert 100 < float(out.mean()) < 900                                          # in the files' units
