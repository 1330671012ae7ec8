"""Flow matching as a first-class process: non-VP schedules, the flow velocity in the one
converter, training targets and losses, every solver on the exact flow mixture, and a short
toy training that learns."""

import math

import pytest
import torch

from sciogen.diffusion import (
    SOLVERS,
    CosineSchedule,
    DiscreteSchedule,
    FlowSchedule,
    GaussianMixture,
    GaussianProcess,
    InterpolantSchedule,
    LinearSchedule,
    VESchedule,
    convert,
    make_schedule,
    sample,
)
from sciogen.diffusion.sampling import make_denoiser
from sciogen.diffusion.solvers import ddim, ddpm, euler

from ..helpers import energy_test_pvalue

GMM = GaussianMixture.example()
CURVED = InterpolantSchedule(lambda t: torch.cos(0.5 * math.pi * t) ** 2, lambda t: torch.sin(0.5 * math.pi * t))
ALL = [LinearSchedule(), CosineSchedule(), DiscreteSchedule.linear(1000), FlowSchedule(), VESchedule(), CURVED]


@pytest.mark.parametrize("schedule", ALL, ids=repr)
def test_derivatives_log_snr_and_its_inverse(schedule):
    # half-way between the discrete table's knots k / 1000 (its log alpha is piecewise linear)
    t = (torch.linspace(20, 940, 41, dtype=torch.float64).round() + 0.5) / 1000
    d_alpha, d_sigma = schedule.derivatives(t)
    h = 1e-6
    torch.testing.assert_close(d_alpha, (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2 * h), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_sigma, (schedule.sigma(t + h) - schedule.sigma(t - h)) / (2 * h), rtol=1e-5, atol=1e-6)
    lam = schedule.log_snr(t)
    torch.testing.assert_close(lam, torch.log(schedule.alpha(t) / schedule.sigma(t)))
    assert bool((lam.diff() < 0).all())
    torch.testing.assert_close(schedule.t_from_log_snr(lam), t, atol=1e-9, rtol=1e-9)


def test_flow_schedule_is_the_linear_interpolant():
    s = make_schedule("flow")
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    torch.testing.assert_close(s.alpha(t), 1 - t)
    torch.testing.assert_close(s.sigma(t), t)
    assert not s.variance_preserving and (s.t_min, s.t_max) == (1e-3, 1 - 1e-3)
    assert s.prior_std == pytest.approx(0.999) and VESchedule().prior_std == pytest.approx(80.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        InterpolantSchedule(lambda t: t, lambda t: 1 - 0.5 * t)


@pytest.mark.parametrize("schedule", [LinearSchedule(), FlowSchedule(), CURVED], ids=repr)
def test_conversions_with_the_flow_velocity_round_trip(schedule):
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)[:, None]
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    d_alpha, d_sigma = schedule.derivatives(t)
    x0, eps = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    x_t = alpha * x0 + sigma * eps
    truth = {"eps": eps, "x0": x0, "flow": d_alpha * x0 + d_sigma * eps}
    if schedule.variance_preserving:
        truth["v"] = alpha * eps - sigma * x0
    for src in truth:
        for dst in truth:
            torch.testing.assert_close(convert(truth[src], x_t, alpha, sigma, src, dst, d_alpha, d_sigma), truth[dst])
    if isinstance(schedule, FlowSchedule):
        torch.testing.assert_close(truth["flow"], eps - x0)  # rectified flow's velocity
    with pytest.raises(ValueError, match="the flow prediction needs the schedule's derivatives"):
        convert(truth["flow"], x_t, alpha, sigma, "flow", "x0")


def test_v_prediction_is_refused_on_a_schedule_that_is_not_variance_preserving():
    with pytest.raises(ValueError, match="prediction 'v' is defined for variance-preserving schedules only"):
        GaussianProcess("flow", "v")
    with pytest.raises(ValueError, match="use 'flow'"):
        sample(lambda x, t: x, torch.zeros(2, 2), schedule="flow", prediction="v", steps=3)


def test_flow_training_target_and_loss_weighting():
    proc = GaussianProcess("flow", "flow")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g) * 0.98 + 0.01
    torch.testing.assert_close(proc.target(x0, eps, t), eps - x0)
    # "x0" weighting: the velocity error weighted back to the clean-sample error
    x0_hat = x0 + 0.1 * torch.randn(64, 2, generator=g)
    x_t, _ = proc.noise(x0, t, eps)
    tt = t[:, None]
    pred = (x_t - x0_hat) / tt  # the velocity whose clean estimate is x0_hat: x0 = x_t - t v
    weighted = GaussianProcess("flow", "flow", loss_weighting="x0").prediction_loss(pred, x0, eps, t)
    torch.testing.assert_close(weighted, ((x0_hat - x0) ** 2).mean(1), rtol=1e-4, atol=1e-6)
    # the plain loss is conditional flow matching's |v - (eps - x0)|^2
    torch.testing.assert_close(proc.prediction_loss(pred, x0, eps, t), ((pred - (eps - x0)) ** 2).mean(1))


def test_euler_is_eulers_step_in_the_ve_frame_and_flow_matchings_euler_step():
    """One step from t to s: on a VP schedule the Euler step of dy/dk = (y - x0_hat) / k in
    y = x / alpha, k = sigma / alpha; on rectified flow x_s = x_t + (s - t) flow_hat."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ts = torch.tensor([0.8, 0.5], dtype=torch.float64)
    sched = LinearSchedule()
    denoise = make_denoiser(GMM.denoiser(sched, "eps"), sched, "eps", torch.float64)
    (a_t, a_s), (s_t, s_s) = sched.alpha(ts).tolist(), sched.sigma(ts).tolist()
    y, k_t, k_s = x / a_t, s_t / a_t, s_s / a_s
    expected = a_s * (y + (k_s - k_t) * (y - denoise(x, 0.8)) / k_t)
    torch.testing.assert_close(euler(denoise, x, ts, sched), expected)
    sched = FlowSchedule()
    velocity = GMM.denoiser(sched, "flow")
    denoise = make_denoiser(velocity, sched, "flow", torch.float64)
    expected = x + (0.5 - 0.8) * velocity(x, torch.full((16,), 0.8))
    torch.testing.assert_close(euler(denoise, x, ts, sched), expected)


def test_ddim_with_eta_one_is_ddpm_on_a_flow_schedule():
    sched = FlowSchedule()
    x0 = torch.full((2048, 1), 0.3, dtype=torch.float64)
    x = torch.randn(2048, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = torch.tensor([0.6, 0.4], dtype=torch.float64)
    a = ddim(lambda _x, _t: x0, x, ts, sched, eta=1.0, generator=torch.Generator().manual_seed(2))
    b = ddpm(lambda _x, _t: x0, x, ts, sched, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_samples_the_flow_mixture(solver):
    sched = FlowSchedule()
    model = GMM.denoiser(sched, "flow")
    n = 1500
    steps = 200 if solver in ("ddpm", "euler-maruyama", "ddim", "euler") else 20
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(1))
    x = sample(model, x_T, schedule=sched, prediction="flow", solver=solver, steps=steps,
               generator=torch.Generator().manual_seed(2)).double()
    exact = GMM.sample(20000, torch.Generator().manual_seed(3))
    se_mean = exact.std(0) / math.sqrt(n)
    assert bool(((x.mean(0) - GMM.mean()).abs() < 4 * se_mean).all()), (x.mean(0), GMM.mean())
    torch.testing.assert_close(torch.cov(x.T), GMM.covariance(), atol=0.25, rtol=0.1)
    assert energy_test_pvalue(x[:800], exact[:800], permutations=100) > 0.01


def test_solvers_that_need_alpha_above_zero_say_so():
    sched = FlowSchedule(t_max=1.0)
    model = GMM.denoiser(sched, "flow")
    x_T = torch.randn(8, 2)
    with pytest.raises(ValueError, match=r"needs alpha > 0 on the grid, but alpha\(t = 1\) = 0"):
        sample(model, x_T, schedule=sched, prediction="flow", solver="euler-maruyama", steps=10, grid="uniform")
    with pytest.raises(ValueError, match="a 'logsnr' grid needs a finite log-SNR"):
        sample(model, x_T, schedule=sched, prediction="flow", steps=10, grid="logsnr")
    # the multistep solvers start from t = 1 (lambda = -inf) with a first-order step
    for solver in ("unipc", "dpm++2m", "dpm++3m", "heun", "ddpm"):
        out = sample(model, x_T, schedule=sched, prediction="flow", solver=solver, steps=10,
                     generator=torch.Generator().manual_seed(0))
        assert bool(torch.isfinite(out).all()), solver


def test_a_short_toy_flow_training_learns_the_mixture():
    from sciogen.config import from_dict
    from sciogen.registry import load_run_config
    from sciogen.toy import ToyConfig, VectorGenerator, energy_distance

    recipe = load_run_config("toy/gmm_flow")
    assert (recipe.diffusion.schedule, recipe.diffusion.prediction, recipe.sampling.solver) == ("flow", "flow", "unipc")
    config = from_dict(ToyConfig, {
        "data": {"num_samples": 4000},
        "model": {"hidden": 64, "depth": 2, "time_dim": 32},
        "diffusion": {"schedule": "flow", "prediction": "flow"},
        "sampling": {"solver": "unipc", "steps": 10},
        "train": {"steps": 300, "batch_size": 128, "lr": 3e-3, "warmup_steps": 20, "ema_decay": 0.99,
                  "progress": False, "tensorboard": False},
    })
    reference = GMM.sample(4000, generator=torch.Generator().manual_seed(7)).float()
    untrained = VectorGenerator(config)
    assert isinstance(untrained.process.schedule, FlowSchedule)
    before = energy_distance(untrained.sample(1000, seed=0), reference)
    trained = VectorGenerator(config).fit()
    after = energy_distance(trained.sample(1000, seed=0), reference)
    assert after < 0.05 and after < before / 5, (before, after)


def test_a_ve_schedule_samples_the_mixture_from_its_wide_prior():
    sched = VESchedule()
    proc = GaussianProcess(sched, "eps")
    x_T = proc.prior((1500, 2), generator=torch.Generator().manual_seed(1))
    assert float(x_T.std()) == pytest.approx(80.0, rel=0.05)
    x = sample(GMM.denoiser(sched, "eps"), x_T, schedule=sched, steps=20).double()  # UniPC, Karras grid
    exact = GMM.sample(20000, torch.Generator().manual_seed(3))
    assert energy_test_pvalue(x[:800], exact[:800], permutations=100) > 0.01
    torch.testing.assert_close(torch.cov(x.T), GMM.covariance(), atol=0.25, rtol=0.1)


def _as_x0(schedule, prediction, pred, x, t):
    a, s = schedule.alpha(t.double()).float()[:, None], schedule.sigma(t.double()).float()[:, None]
    extra = [d.float()[:, None] for d in schedule.derivatives(t.double())] if prediction == "flow" else []
    from sciogen.diffusion import to_x0

    return to_x0(pred, x, a, s, prediction, *extra)


def test_guidance_wrappers_agree_on_eps_and_flow_models_of_the_same_mixture():
    """inpaint / observation_guidance / smc_inpaint on a flow-velocity model give what they give
    on the eps model of the same exact mixture (the wrappers go through the one converter)."""
    from sciogen.diffusion import inpaint, observation_guidance, smc_inpaint

    schedule = CURVED
    models = {p: GMM.denoiser(schedule, prediction=p) for p in ("eps", "flow")}
    known = GMM.sample(6, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([True, False]).expand_as(known)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    t = torch.full((6,), 0.4)
    for wrap in (lambda m, p: inpaint(m, known, mask, schedule=schedule, prediction=p, generator=torch.Generator().manual_seed(3)),
                 lambda m, p: observation_guidance(m, known, mask, schedule=schedule, prediction=p, scale=0.5)):
        x0 = {p: _as_x0(schedule, p, wrap(models[p], p)(x, t), x, t) for p in models}
        torch.testing.assert_close(x0["flow"], x0["eps"], rtol=1e-4, atol=1e-4)
    out = {p: smc_inpaint(models[p], known, mask, schedule=schedule, prediction=p, steps=20, particles=4,
                          generator=torch.Generator().manual_seed(4)) for p in models}
    torch.testing.assert_close(out["flow"], out["eps"], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="variance-preserving"):
        inpaint(models["eps"], known, mask, schedule=schedule, prediction="v")
