"""sciogen's solvers driven by a MONAI DiffusionModelUNet agree with MONAI's own DDIM scheduler."""

import pytest
import torch

pytest.importorskip("monai", reason="the volumes extra (MONAI) is not installed")

from monai.inferers import DiffusionInferer  # noqa: E402
from monai.networks.nets import DiffusionModelUNet  # noqa: E402
from monai.networks.schedulers import DDIMScheduler as MonaiDDIM  # noqa: E402
from monai.networks.schedulers import DDPMScheduler as MonaiDDPM  # noqa: E402

from sciogen.volumes.monai_interop import (  # noqa: E402
    DDIMScheduler,
    MonaiUNetModel,
    monai_time,
    sample_monai,
    schedule_from_monai,
    timestep_grid,
)

SHAPE = (1, 1, 8, 8, 8)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(8, 8),
                             attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)
    # a random network predicts near-constant outputs; scale the last layer up so the
    # comparison exercises real, input-dependent predictions
    with torch.no_grad():
        for p in net.out.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    return net.eval()


def _noise(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _run(scheduler, network, steps, eta=0.0, seed=0):
    scheduler.set_timesteps(steps)
    x = _noise()
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for k in scheduler.timesteps:
            out = network(x, timesteps=torch.tensor([int(k)]))
            x, _ = scheduler.step(out, int(k), x, eta=eta, generator=generator)
    return x


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_matches_monai_step_for_step(network, prediction, clip):
    ours = DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction, clip_sample=clip)
    theirs = MonaiDDIM(num_train_timesteps=1000, prediction_type=prediction, clip_sample=clip)
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(10)
    x_ours = x_theirs = _noise()
    with torch.no_grad():
        for k in theirs.timesteps:
            out = network(x_theirs, timesteps=torch.tensor([int(k)]))
            x_theirs, x0_theirs = theirs.step(out, int(k), x_theirs)
            x_ours, x0_ours = ours.step(out, int(k), x_ours)
            torch.testing.assert_close(x_ours, x_theirs, atol=1e-3, rtol=1e-3)
            torch.testing.assert_close(x0_ours, x0_theirs, atol=1e-3, rtol=1e-3)
            x_ours = x_theirs  # each step from the same state: a per-step comparison


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_whole_ddim_trajectories_agree_with_the_same_noise(network, eta):
    kwargs = dict(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195)
    ours = _run(DDIMScheduler(**kwargs), network, 20, eta=eta)
    theirs = _run(MonaiDDIM(**kwargs), network, 20, eta=eta)
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-3)
    if eta > 0:  # the noise matters: another seed gives another sample
        other = _run(DDIMScheduler(**kwargs), network, 20, eta=eta, seed=1)
        assert (other - ours).abs().max() > 1e-2


def test_replaces_monai_ddim_inside_the_diffusion_inferer(network):
    results = []
    for cls in (DDIMScheduler, MonaiDDIM):
        scheduler = cls(num_train_timesteps=1000)
        scheduler.set_timesteps(10)
        inferer = DiffusionInferer(scheduler)
        with torch.no_grad():
            results.append(inferer.sample(input_noise=_noise(), diffusion_model=network, scheduler=scheduler,
                                          verbose=False))
    torch.testing.assert_close(results[0], results[1], atol=1e-3, rtol=1e-3)


def test_schedule_and_time_conversion_are_exact():
    monai = MonaiDDPM(num_train_timesteps=1000, schedule="linear_beta")
    schedule, prediction = schedule_from_monai(monai)
    assert prediction == "eps" and schedule.num_steps == 1000
    for k in (0, 1, 499, 999):
        t = torch.tensor(monai_time(k, 1000), dtype=torch.float64)
        assert float(schedule.alpha(t) ** 2) == pytest.approx(float(monai.alphas_cumprod[k]), rel=1e-6)
        assert int(schedule.timestep(t).round()) == k


def test_core_ddim_on_monai_grid_equals_monai_ddim_when_the_grid_is_consistent(network):
    # with k = N steps MONAI's grid (N - 1, ..., 0) and its jumps t - N // k = t - 1 coincide,
    # so sample_monai's grid and the core DDIM must reproduce MONAI's scheduler exactly
    scheduler = MonaiDDIM(num_train_timesteps=13, clip_sample=False)
    theirs = _run(scheduler, network, 13)
    ours = sample_monai(network, MonaiDDIM(num_train_timesteps=13), _noise(), solver="ddim", steps=13)
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-3)


def test_sample_monai_runs_every_core_solver_and_is_reproducible(network):
    scheduler = MonaiDDPM(num_train_timesteps=1000)
    for solver in ("dpm++2m", "dpm++3m", "ddim", "ddpm"):
        a = sample_monai(network, scheduler, _noise(), solver=solver, steps=6, generator=torch.Generator().manual_seed(0))
        b = sample_monai(network, scheduler, _noise(), solver=solver, steps=6, generator=torch.Generator().manual_seed(0))
        assert a.shape == SHAPE and torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_logsnr_grid_lies_on_timesteps_and_is_even_in_log_snr():
    schedule, _ = schedule_from_monai(MonaiDDPM(num_train_timesteps=1000, schedule="scaled_linear_beta",
                                                beta_start=0.0015, beta_end=0.0195))
    grid = timestep_grid(1000, 20, spacing="logsnr", schedule=schedule)
    k = grid[:-1] * 1000 - 1
    assert float(grid[-1]) == 0.0 and float(k[0]) == 999.0 and float(k[-1]) == 0.0
    assert torch.equal(k, k.round()) and bool((k[1:] < k[:-1]).all())
    gaps = schedule.log_snr(grid[:-1]).diff()
    assert float(gaps[:10].std() / gaps[:10].mean()) < 0.1  # even where rounding does not matter (high noise)
    uniform = timestep_grid(1000, 20)
    assert float((grid[1] - grid[0]).abs()) < float((uniform[1] - uniform[0]).abs())  # fewer steps wasted at t ~ 1
    with pytest.raises(ValueError, match="needs the schedule"):
        timestep_grid(1000, 20, spacing="logsnr")
    with pytest.raises(ValueError, match="spacing must be"):
        timestep_grid(1000, 20, spacing="karras", schedule=schedule)


def test_model_wrapper_feeds_the_network_integer_timesteps():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, timesteps, **cond):
            seen.append(timesteps.clone())
            return torch.zeros_like(x)

    schedule, _ = schedule_from_monai(MonaiDDPM(num_train_timesteps=1000))
    MonaiUNetModel(Spy(), schedule)(torch.zeros(2, 1, 4), torch.tensor([monai_time(999, 1000), monai_time(0, 1000)]))
    assert seen[0].dtype == torch.long and seen[0].tolist() == [999, 0]


def test_bad_inputs_are_named():
    class NotAScheduler:
        pass

    with pytest.raises(TypeError, match="betas"):
        schedule_from_monai(NotAScheduler())
    scheduler = MonaiDDPM(num_train_timesteps=1000)
    scheduler.prediction_type = "score"
    with pytest.raises(ValueError, match="prediction_type 'score'"):
        schedule_from_monai(scheduler)
    with pytest.raises(ValueError, match="steps must be in"):
        sample_monai(torch.nn.Identity(), MonaiDDPM(num_train_timesteps=10), _noise(), steps=11)
    with pytest.raises(ValueError, match="start timestep"):
        timestep_grid(10, 3, start=10)
