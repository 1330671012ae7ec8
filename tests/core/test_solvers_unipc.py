"""UniPC (Zhao et al. 2023) against exact answers: identities with DDIM and DPM-Solver++(2M),
convergence order on the exact Gaussian mixture, diffusers' scheduler on the same grid, NaN."""

import functools

import numpy as np
import pytest
import torch

from sciogen.diffusion import FlowSchedule, GaussianMixture, LinearSchedule, sample, time_grid
from sciogen.diffusion.sampling import make_denoiser
from sciogen.diffusion.solvers import _dpmpp_multistep, _unipc_rhos, ddim, unipc

GMM = GaussianMixture.example()


def _noise(n=512, seed=0, dtype=torch.float64):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _denoiser(sched, prediction="eps"):
    return make_denoiser(GMM.denoiser(sched, prediction), sched, prediction, torch.float64)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("sched, prediction", [(LinearSchedule(), "eps"), (FlowSchedule(), "flow")], ids=["vp", "flow"])
def test_unip_order_1_is_ddim(variant, sched, prediction):
    denoise = _denoiser(sched, prediction)
    ts = time_grid(sched, 12, sched.default_grid)
    x = _noise().float()
    a = unipc(denoise, x, ts, sched, order=1, variant=variant, corrector=False)
    torch.testing.assert_close(a, ddim(denoise, x, ts, sched), atol=2e-5, rtol=1e-5)


def test_unip_2_with_bh2_is_dpm_solver_pp_2m():
    """Zhao et al. 2023, Sec. 3.3: with B(h) = e^h - 1 and rho = 1/2, UniP-2 is DPM-Solver++(2M)."""
    sched = LinearSchedule()
    denoise = _denoiser(sched)
    ts = time_grid(sched, 12, "logsnr")
    x = _noise().float()
    a = unipc(denoise, x, ts, sched, order=2, variant="bh2", corrector=False)
    b = _dpmpp_multistep(denoise, x, ts, sched, order=2, lower_order_final=True, callback=None)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_a_constant_clean_estimate_gives_ddims_exact_answer(order, variant):
    """With x0_hat constant, every difference D_m vanishes: predictor and corrector reduce to the
    exact solution x_s = alpha_s x0 + sigma_s / sigma_t (x_t - alpha_t x0) of the ODE, as DDIM."""
    sched = LinearSchedule()
    x0 = torch.tensor([[0.3, -1.2]])
    ts = time_grid(sched, 9, "logsnr", denoise_final=False)
    x = _noise(64).float()
    a = unipc(lambda _x, _t: x0.expand_as(_x), x, ts, sched, order=order, variant=variant)
    b = ddim(lambda _x, _t: x0.expand_as(_x), x, ts, sched)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_corrector_weights_are_the_papers():
    """UniC-1 uses rho = 1/2; with one earlier output, UniC-2's weights solve the order conditions
    sum rho_m = g_1 / B(h), sum rho_m r_m = 2 g_2 / B(h) (Zhao et al. 2023, Thm. 3.1)."""
    h, r = 0.7, -0.8
    assert _unipc_rhos(h, [], "bh1") == ([], [0.5])
    pred, corr = _unipc_rhos(h, [r], "bh2")
    assert pred == [0.5]
    hh, b_h = -h, np.expm1(-h)
    g1 = np.expm1(hh) / hh - 1.0
    g2 = g1 / hh - 0.5
    np.testing.assert_allclose([sum(corr), corr[0] * r + corr[1]], [g1 / b_h, 2 * g2 / b_h], rtol=1e-12)


@functools.cache
def _reference():
    sched = LinearSchedule()
    x_T = _noise(1024)
    return x_T, sample(GMM.denoiser(sched, "eps"), x_T, schedule=sched, prediction="eps", solver="dpm++3m",
                       steps=1500, grid="logsnr", denoise_final=False)


def _errors(steps_list, **options):
    sched = LinearSchedule()
    model = GMM.denoiser(sched, "eps")
    x_T, ref = _reference()
    errs = []
    for n in steps_list:
        x = sample(model, x_T, schedule=sched, prediction="eps", solver="unipc", steps=n, grid="logsnr",
                   denoise_final=False, solver_options=options)
        errs.append(float((x - ref).norm(dim=1).mean()))
    return np.array(errs)


def _order(steps_list, errs):
    return -np.polyfit(np.log(steps_list), np.log(errs), 1)[0]


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_convergence_order_rises_with_the_order_and_the_corrector(variant):
    """UniP-p converges with order p, UniPC-p (with the corrector) with order p + 1 (measured:
    UniPC 1.9 / 2.6-2.8 / 3.6, UniP 1.0 / 1.9-2.1 / 2.9; warm-up steps of lower order cost a little)."""
    steps = [20, 40, 80, 160]
    errs = {}
    for order in (1, 2, 3):
        for corrector in (False, True):
            e = errs[order, corrector] = _errors(steps, order=order, variant=variant, corrector=corrector)
            assert np.all(np.diff(e) < 0), f"error must fall with steps: {e}"
    orders = {key: _order(steps, e) for key, e in errs.items()}
    for order in (1, 2, 3):
        assert abs(orders[order, False] - order) < 0.25, orders
        assert orders[order, True] > order + 0.5, orders
        assert errs[order, True][-1] < errs[order, False][-1]  # the corrector helps at equal calls
    assert errs[1, True][-1] > errs[2, True][-1] > errs[3, True][-1]


def test_matches_diffusers_unipc_on_its_own_grid():
    """The same algorithm as diffusers' UniPCMultistepScheduler (bh2, order 2, data prediction):
    driven by the same exact model on diffusers' time grid, the two agree to float32 precision."""
    diffusers = pytest.importorskip("diffusers")
    from sciogen.diffusion import DiscreteSchedule

    sched = DiscreteSchedule.linear(1000)
    model = GMM.denoiser(sched, "eps")
    x_T = _noise(256, dtype=torch.float32)
    scheduler = diffusers.UniPCMultistepScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(8)
    x = x_T.clone()
    for k in scheduler.timesteps:
        x = scheduler.step(model(x, torch.full((x.shape[0],), (float(k) + 1) / 1000)), k, x).prev_sample
    grid = torch.tensor([(float(k) + 1) / 1000 for k in scheduler.timesteps] + [0.0], dtype=torch.float64)
    ours = sample(model, x_T, schedule=sched, prediction="eps", solver="unipc", grid=grid)
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("corrector", [True, False])
def test_nan_raises_naming_the_step(corrector):
    """The 4th output is NaN: the corrector of step 2 uses it first; without it, step 3."""
    calls = []

    def model(x, t):
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) >= 4 else torch.zeros_like(x)

    step = 2 if corrector else 3
    with pytest.raises(FloatingPointError, match=rf"non-finite values appeared at solver step {step} \(t = "):
        sample(model, _noise(4, dtype=torch.float32), schedule=LinearSchedule(), prediction="eps", solver="unipc",
               steps=8, solver_options={"corrector": corrector, "order": 3})


def test_bad_options_are_named():
    sched = LinearSchedule()
    model = GMM.denoiser(sched, "eps")
    with pytest.raises(ValueError, match="unipc order must be 1, 2 or 3, got 4"):
        sample(model, _noise(4), schedule=sched, solver="unipc", steps=5, solver_options={"order": 4})
    with pytest.raises(ValueError, match="unipc variant must be 'bh1' or 'bh2', got 'bh3'"):
        sample(model, _noise(4), schedule=sched, solver="unipc", steps=5, solver_options={"variant": "bh3"})
