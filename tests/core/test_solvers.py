"""Solvers against exact answers: a Gaussian mixture whose denoiser is known in closed form."""

import math

import numpy as np
import pytest
import torch

from sciogen.diffusion import (
    SOLVERS,
    CosineSchedule,
    DiscreteSchedule,
    GaussianMixture,
    LinearSchedule,
    sample,
    time_grid,
)
from sciogen.diffusion.solvers import _dpmpp_multistep, ddim

from ..helpers import energy_test_pvalue

GMM = GaussianMixture.example()


def _noise(n=512, seed=0, dim=2, dtype=torch.float64):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_equals_first_order_dpm_solver_pp(prediction):
    sched = LinearSchedule()
    model = GMM.denoiser(sched, prediction)
    from sciogen.diffusion.sampling import make_denoiser

    denoise = make_denoiser(model, sched, prediction, torch.float64)
    ts = time_grid(sched, 12, "logsnr")
    x = _noise().float()
    a = ddim(denoise, x, ts, sched)
    b = _dpmpp_multistep(denoise, x, ts, sched, order=1, lower_order_final=True, callback=None)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_noise_is_eq_16_and_eta_one_is_ddpm(eta):
    """One step from t to s: the noise scale is eta * sqrt(DDPM posterior variance) (DDIM Eq. 16),
    and with eta = 1 the whole step equals the ancestral DDPM step for the same draw."""
    from sciogen.diffusion.solvers import ddpm

    sched = LinearSchedule()
    x0 = torch.full((4096, 1), 0.3, dtype=torch.float64)
    x = torch.randn(4096, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = torch.tensor([0.6, 0.4], dtype=torch.float64)
    a_t, a_s = float(sched.alpha(ts[:1])), float(sched.alpha(ts[1:]))
    s_t, s_s = float(sched.sigma(ts[:1])), float(sched.sigma(ts[1:]))
    posterior_var = s_s**2 / s_t**2 * (1 - (a_t / a_s) ** 2)
    a = ddim(lambda _x, _t: x0, x, ts, sched, eta=eta, generator=torch.Generator().manual_seed(2))
    b = ddim(lambda _x, _t: x0, x, ts, sched, eta=eta, generator=torch.Generator().manual_seed(3))
    assert float((a - b).var() / 2) == pytest.approx(eta**2 * posterior_var, rel=0.06)
    if eta == 1.0:
        c = ddpm(lambda _x, _t: x0, x, ts, sched, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(a, c)


def _errors(solver, steps_list, sched, prediction="eps"):
    model = GMM.denoiser(sched, prediction)
    x_T = _noise(1024)
    ref = sample(model, x_T, schedule=sched, prediction=prediction, solver="dpm++3m", steps=600, grid="logsnr",
                 denoise_final=False)
    errs = []
    for n in steps_list:
        x = sample(model, x_T, schedule=sched, prediction=prediction, solver=solver, steps=n, denoise_final=False)
        errs.append(float((x - ref).norm(dim=1).mean()))
    return np.array(errs)


def _order(steps_list, errs):
    slope, _ = np.polyfit(np.log(steps_list), np.log(errs), 1)
    return -slope


@pytest.mark.parametrize(
    "solver, expected, tol",
    [("ddim", 1.0, 0.2), ("dpm++2m", 2.0, 0.25), ("heun", 2.0, 0.3)],
)
@pytest.mark.parametrize("sched", [LinearSchedule(), CosineSchedule()], ids=["linear", "cosine"])
def test_convergence_order(solver, expected, tol, sched):
    steps = [20, 40, 80, 160]
    errs = _errors(solver, steps, sched)
    assert np.all(np.diff(errs) < 0), f"error must fall with steps: {errs}"
    order = _order(steps, errs)
    assert abs(order - expected) < tol, f"{solver}: fitted order {order:.2f}, errors {errs}"


def test_dpmpp_3m_beats_2m_at_equal_steps():
    sched = LinearSchedule()
    steps = [20, 40, 80]
    e2, e3 = _errors("dpm++2m", steps, sched), _errors("dpm++3m", steps, sched)
    assert np.all(e3 < e2), (e2, e3)
    assert _order(steps, e3) > 2.0


@pytest.mark.parametrize("solver, steps", [("ddpm", 500), ("dpm++2m", 20), ("euler-maruyama", 500), ("heun", 20)])
def test_samples_match_the_mixture(solver, steps):
    sched = LinearSchedule()
    model = GMM.denoiser(sched, "eps")
    n = 1500
    x = sample(model, _noise(n, seed=1, dtype=torch.float32), schedule=sched, prediction="eps",
               solver=solver, steps=steps, generator=torch.Generator().manual_seed(2)).double()
    exact, comp = GMM.sample(20000, torch.Generator().manual_seed(3), return_components=True)
    # moments within ~4 standard errors
    se_mean = exact.std(0) / math.sqrt(n)
    assert bool(((x.mean(0) - GMM.mean()).abs() < 4 * se_mean).all()), (x.mean(0), GMM.mean())
    torch.testing.assert_close(torch.cov(x.T), GMM.covariance(), atol=0.25, rtol=0.1)
    # mixture weights: assign samples to their most likely component
    logits = GMM._component_log_probs(x, torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
    freq = torch.bincount(logits.argmax(1), minlength=3).double() / n
    ref_logits = GMM._component_log_probs(exact, torch.ones(20000, dtype=torch.float64), torch.zeros(20000, dtype=torch.float64))
    ref_freq = torch.bincount(ref_logits.argmax(1), minlength=3).double() / 20000
    assert bool(((freq - ref_freq).abs() < 4 * torch.sqrt(ref_freq * (1 - ref_freq) / n)).all()), (freq, ref_freq)
    # and a two-sample energy test against exact draws
    assert energy_test_pvalue(x[:800], exact[:800], permutations=100) > 0.01


def test_same_seed_same_sample_and_dict_states():
    sched = LinearSchedule()
    model = GMM.denoiser(sched, "eps")
    x_T = _noise(16, dtype=torch.float32)
    a = sample(model, x_T, schedule=sched, prediction="eps", solver="ddpm", steps=30, generator=torch.Generator().manual_seed(5))
    b = sample(model, x_T, schedule=sched, prediction="eps", solver="ddpm", steps=30, generator=torch.Generator().manual_seed(5))
    c = sample(model, x_T, schedule=sched, prediction="eps", solver="ddpm", steps=30, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)

    def dict_model(state, t):
        out = model(torch.cat([state["u"], state["w"]], 1), t)
        return {"u": out[:, :1], "w": out[:, 1:]}

    d = sample(dict_model, {"u": x_T[:, :1], "w": x_T[:, 1:]}, schedule=sched, prediction="eps", solver="dpm++2m", steps=10)
    e = sample(model, x_T, schedule=sched, prediction="eps", solver="dpm++2m", steps=10)
    torch.testing.assert_close(torch.cat([d["u"], d["w"]], 1), e)


def test_dtype_is_kept_and_arithmetic_is_float32():
    sched = LinearSchedule()
    seen = []

    def model(x, t):
        seen.append(x.dtype)
        return torch.zeros_like(x)

    out = sample(model, _noise(4, dtype=torch.float16), schedule=sched, prediction="eps", solver="dpm++2m", steps=3)
    assert out.dtype == torch.float16 and set(seen) == {torch.float16}


@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
def test_time_grids(kind):
    sched = DiscreteSchedule.linear(1000)
    open_end = time_grid(sched, 10, kind, denoise_final=False)
    assert len(open_end) == 11 and open_end[0] == 1.0 and open_end[-1] == pytest.approx(1e-3)
    assert bool((open_end[1:] < open_end[:-1]).all())
    closed = time_grid(sched, 10, kind)
    torch.testing.assert_close(closed[:-1], open_end[:-1])
    assert closed[-1] == 0.0
    if kind == "logsnr":
        lam = sched.log_snr(open_end)
        torch.testing.assert_close(lam.diff(), torch.full((10,), float(lam.diff().mean()), dtype=torch.float64))


def test_bad_arguments_raise_clear_errors():
    sched = LinearSchedule()
    model = GMM.denoiser(sched, "eps")
    x_T = _noise(4, dtype=torch.float32)
    with pytest.raises(ValueError, match="unknown solver 'rk4'; allowed: ddpm, ddim"):
        sample(model, x_T, schedule=sched, prediction="eps", solver="rk4", steps=5)
    with pytest.raises(ValueError, match="allowed: eps, x0, v"):
        sample(model, x_T, schedule=sched, prediction="noise", steps=5)
    with pytest.raises(ValueError, match="allowed: linear, cosine, discrete"):
        sample(model, x_T, schedule="sigmoid", prediction="eps", steps=5)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sample(model, x_T, schedule=sched, prediction="eps", steps=0)
    with pytest.raises(ValueError, match="allowed: uniform, logsnr, karras"):
        sample(model, x_T, schedule=sched, prediction="eps", steps=5, grid="cubic")


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_nan_is_reported_with_its_step(solver):
    sched = LinearSchedule()
    calls = []

    def model(x, t):
        calls.append(1)
        return torch.full_like(x, float("nan")) if len(calls) >= 3 else torch.zeros_like(x)

    with pytest.raises(FloatingPointError, match=r"non-finite values appeared at solver step \d+ \(t = "):
        sample(model, _noise(4, dtype=torch.float32), schedule=sched, prediction="eps", solver=solver, steps=8)
