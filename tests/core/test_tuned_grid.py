"""Tuned time grids (sciogen.diffusion.tuning): the search on the exact Gaussian mixture, its cost
accounting and checks, the storage with a toy generator (save / load / export) and the CLI."""

import pytest
import torch

from sciogen.cli import TUNE_SOLVER_DOMAINS, main
from sciogen.diffusion import (
    CosineSchedule,
    DiscreteSchedule,
    FlowSchedule,
    GaussianMixture,
    VESchedule,
    sample,
    search_grid,
    time_grid,
    tune_grid,
)
from sciogen.diffusion.tuning import _Coordinate
from sciogen.registry import get_domain, load
from sciogen.toy import ToyConfig, ToyModelConfig, VectorGenerator
from sciogen.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sciogen.train.generator import Generator

GMM = GaussianMixture.example()


@pytest.mark.parametrize("schedule", [DiscreteSchedule.linear(1000), CosineSchedule(), FlowSchedule(), VESchedule()],
                         ids=["linear", "cosine", "flow", "ve"])
@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
def test_zero_logits_are_the_default_grid(schedule, kind):
    """The search starts from the schedule's own grid: equal increments in its coordinate."""
    torch.testing.assert_close(_Coordinate(schedule, kind).grid(torch.zeros(6, dtype=torch.float64)),
                               time_grid(schedule, 7, kind), atol=1e-12, rtol=0)


def _held_out_error(model, schedule, prediction, grid, n=1024):
    """Mean distance of 5-step UniPC on ``grid`` to a 300-step solution, from noises the search never saw."""
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(123)) * schedule.prior_std
    exact = sample(model, x_T.double(), schedule=schedule, prediction=prediction, solver="dpm++3m", steps=300).float()
    out = sample(model, x_T, schedule=schedule, prediction=prediction, solver="unipc", steps=5, grid=grid)
    return float((out - exact).norm(dim=1).mean())


@pytest.mark.parametrize("schedule, prediction", [(DiscreteSchedule.linear(1000), "eps"), (FlowSchedule(), "flow")],
                         ids=["linear", "flow"])
def test_the_tuned_grid_beats_the_default_on_held_out_noises(schedule, prediction):
    model = GMM.denoiser(schedule, prediction)
    found = search_grid(model, schedule, prediction, "unipc", 5, shape=(2,), samples=100, iterations=40,
                        generator=torch.Generator().manual_seed(0))
    ts = found.times
    assert ts.dtype == torch.float64 and ts.shape == (6,)
    assert bool((ts[1:] < ts[:-1]).all())
    assert ts[0] == schedule.t_max and ts[-1] == 0.0
    assert bool(((ts[1:-1] >= schedule.t_min) & (ts[1:-1] <= schedule.t_max)).all())
    assert found.loss < 0.8 * found.default_loss
    # the cost: the teacher's calls, then 5 calls (one per UniPC step) for every grid evaluated
    assert found.teacher_calls == 200 and found.model_calls == 200 + 5 * found.evaluations
    assert found.samples == 100 and found.seconds > 0
    default = _held_out_error(model, schedule, prediction, None)
    tuned = _held_out_error(model, schedule, prediction, ts)
    assert tuned < 0.75 * default, (tuned, default)


def test_the_search_is_reproducible_and_takes_a_noise_sampler():
    schedule = CosineSchedule()
    model = GMM.denoiser(schedule, "eps")

    def run(seed, **noise):
        noise = noise or {"shape": (2,)}
        return tune_grid(model, schedule, "eps", "dpm++2m", 4, samples=32, iterations=3, teacher_steps=50,
                         generator=torch.Generator().manual_seed(seed), **noise)

    torch.testing.assert_close(run(0), run(0), atol=0, rtol=0)
    drawn = run(0, x_T_sampler=lambda n, g: torch.randn(n, 2, generator=g))
    assert drawn.shape == (5,) and bool((drawn[1:] < drawn[:-1]).all())


@pytest.mark.parametrize("change, match", [
    ({"solver": "ddpm"}, "deterministic solver, got 'ddpm'"),
    ({"solver": "nope"}, "unknown solver"),
    ({"solver_options": {"eta": 1.0}}, "eta"),
    ({"steps": 1}, "steps must be an integer >= 2"),
    ({"samples": 0}, "samples must be an integer >= 1"),
    ({"teacher_solver": "euler-maruyama"}, "teacher_solver"),
    ({"shape": None}, "either shape"),
    ({"x_T_sampler": lambda n, g: torch.randn(n + 1, 2)}, "either shape"),
])
def test_bad_arguments_name_the_item(change, match):
    schedule = CosineSchedule()
    args = {"solver": "unipc", "steps": 4, "shape": (2,), **change}
    with pytest.raises(ValueError, match=match):
        search_grid(GMM.denoiser(schedule, "eps"), schedule, "eps", args.pop("solver"), args.pop("steps"), **args)


def test_a_noise_sampler_with_the_wrong_rows_is_refused():
    schedule = CosineSchedule()
    with pytest.raises(ValueError, match="n = 8 rows"):
        search_grid(GMM.denoiser(schedule, "eps"), schedule, "eps", "unipc", 3, samples=8,
                    x_T_sampler=lambda n, g: torch.randn(n + 1, 2))


def _toy():
    config = ToyConfig(model=ToyModelConfig(hidden=16, depth=1, time_dim=8))
    config.diffusion.schedule, config.diffusion.prediction = "cosine", "v"
    return VectorGenerator(config)


def test_tuned_grids_round_trip_through_save_load_and_export(tmp_path):
    gen = _toy()
    with pytest.raises(ValueError, match="no tuned time grid for solver 'unipc' with 4 steps .*sciogen tune-solver"):
        gen.sample(8, steps=4, solver="unipc", grid="tuned", seed=0)
    found = gen.tune_grid(4, solver="unipc", samples=16, iterations=3, teacher_steps=20)
    assert list(gen.tuned_grids) == ["unipc/4"] and gen.tuned_grids["unipc/4"] == found.times.tolist()
    tuned = gen.sample(8, steps=4, solver="unipc", grid="tuned", seed=0)
    explicit = gen.sample(8, steps=4, solver="unipc", grid=found.times, seed=0)
    torch.testing.assert_close(tuned, explicit, atol=0, rtol=0)
    for path in (gen.save(tmp_path / "model.pt"), gen.export(tmp_path / "exported.pt")):
        again = VectorGenerator.load(path, device="cpu")
        assert again.tuned_grids == gen.tuned_grids
        torch.testing.assert_close(again.sample(8, steps=4, solver="unipc", grid="tuned", seed=0), tuned)
        with pytest.raises(ValueError, match="stored: unipc/4"):
            again.sample(8, steps=5, solver="unipc", grid="tuned", seed=0)


def test_a_malformed_stored_grid_is_refused(tmp_path):
    checkpoint = _toy().checkpoint()
    checkpoint["metadata"]["tuned_grids"] = {"unipc/4": [1.0, 0.2, 0.5, 0.1, 0.0]}
    path = save_checkpoint(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'unipc/4' is malformed"):
        VectorGenerator.load(path, device="cpu")


def test_cli_tune_solver_writes_the_model_with_its_grid(tmp_path, capsys):
    out = tmp_path / "gmm.pt"
    assert main(["tune-solver", "toy/gmm", "--steps", "3", "--samples", "8", "--iterations", "2",
                 "--teacher-steps", "20", "--out", str(out), "--device", "cpu"]) == 0
    assert "tuned grid dpm++2m/3" in capsys.readouterr().out  # the model's own solver, dpm++2m
    stored = load_checkpoint(out)
    assert stored["metadata"]["shift"].shape == (2,) and list(stored["metadata"]["tuned_grids"]) == ["dpm++2m/3"]
    gen = load(str(out), device="cpu")
    assert gen.sample(4, steps=3, grid="tuned", seed=0).shape == (4, 2)
    assert main(["tune-solver", "toy/gmm", "--steps", "3", "--out", str(out)]) == 1  # exists, no --force
    assert "exists" in capsys.readouterr().err
    # the shell's way to use it: sciogen sample MODEL --steps 3 --grid tuned
    samples = tmp_path / "tuned.csv"
    assert main(["sample", str(out), "-n", "4", "--steps", "3", "--grid", "tuned", "--out", str(samples)]) == 0
    assert samples.is_file() and "sampled 4" in capsys.readouterr().out
    assert main(["sample", str(out), "-n", "4", "--steps", "5", "--grid", "tuned", "--out", str(tmp_path / "t5.csv")]) == 1
    assert "no tuned time grid for solver 'dpm++2m' with 5 steps" in capsys.readouterr().err


def test_cli_tune_solver_refuses_other_domains(tmp_path, capsys):
    pytest.importorskip("pandas")
    assert main(["tune-solver", "timeseries/exchange_rate", "--steps", "5", "--out", str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert "'timeseries' domain has no tuned time grids" in err and "domains that have them: toy" in err
    assert not (tmp_path / "x.pt").exists()


def test_the_listed_domains_implement_tune_grid():
    for name in TUNE_SOLVER_DOMAINS:
        assert get_domain(name).generator_class().tune_grid is not Generator.tune_grid
