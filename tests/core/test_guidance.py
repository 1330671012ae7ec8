"""Guidance wrappers against exact answers (Gaussian-mixture conditionals)."""

import pytest
import torch
from scipy import stats

from sciogen.diffusion import (
    SOLVERS,
    GaussianMixture,
    LinearSchedule,
    classifier_free,
    inpaint,
    observation_guidance,
    sample,
)
from sciogen.diffusion.testing import repaint, smc_inpaint

GMM = GaussianMixture.example()
SCHED = LinearSchedule()


def test_smc_inpainting_reproduces_the_exact_conditional():
    model = GMM.denoiser(SCHED, "eps")
    n, value = 600, -1.5
    exact = GMM.conditional([0], [value]).sample(20000, torch.Generator().manual_seed(1))[:, 0].numpy()
    known = torch.tensor([value, 0.0]).expand(n, 2)
    mask = torch.tensor([True, False])
    g = torch.Generator().manual_seed(0)
    x = smc_inpaint(model, known, mask, schedule=SCHED, prediction="eps", steps=400, particles=16, generator=g)
    assert bool((x[:, 0] == value).all())
    w_smc = stats.wasserstein_distance(x[:, 1].numpy(), exact)
    assert stats.ks_2samp(x[:, 1].numpy(), exact).pvalue > 0.01, w_smc
    # replacement is a known approximation: on the same problem SMC must be closer
    x_rep = sample(inpaint(model, known, mask, schedule=SCHED, prediction="eps", generator=g),
                   torch.randn(n, 2, generator=g), schedule=SCHED, prediction="eps", solver="ddpm", steps=400, generator=g)
    w_rep = stats.wasserstein_distance(x_rep[:, 1].numpy(), exact)
    assert w_smc < w_rep, (w_smc, w_rep)


def test_smc_inpainting_exact_on_a_correlated_gaussian():
    gauss = GaussianMixture([[0.0, 0.0]], torch.tensor([[[1.0, 0.8], [0.8, 1.0]]]))
    model = gauss.denoiser(SCHED, "x0")
    n = 600
    x = smc_inpaint(model, torch.tensor([1.5, 0.0]).expand(n, 2), torch.tensor([True, False]), schedule=SCHED,
                    prediction="x0", steps=300, particles=16, generator=torch.Generator().manual_seed(0))
    # exact conditional: N(1.2, 0.6^2)
    assert abs(float(x[:, 1].mean()) - 1.2) < 4 * 0.6 / n**0.5
    assert abs(float(x[:, 1].std()) - 0.6) < 0.06


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_replacement_inpainting_keeps_known_entries_with_every_solver(solver):
    model = GMM.denoiser(SCHED, "v")
    known = torch.tensor([1.0, 0.0]).expand(64, 2)
    mask = torch.tensor([True, False])
    g = torch.Generator().manual_seed(0)
    x = sample(inpaint(model, known, mask, schedule=SCHED, prediction="v", generator=g), torch.randn(64, 2, generator=g),
               schedule=SCHED, prediction="v", solver=solver, steps=15, generator=g)
    torch.testing.assert_close(x[:, 0], known[:, 0], atol=1e-4, rtol=0)
    assert float(x[:, 1].std()) > 0.3  # the free coordinate is still random


def test_repaint_keeps_known_entries_and_improves_on_plain_replacement_in_moments():
    model = GMM.denoiser(SCHED, "eps")
    known = torch.tensor([1.0, 0.0]).expand(400, 2)
    mask = torch.tensor([True, False])
    x = repaint(model, torch.randn(400, 2, generator=torch.Generator().manual_seed(0)), known, mask, schedule=SCHED,
                prediction="eps", steps=30, resample=5, generator=torch.Generator().manual_seed(1))
    assert bool((x[:, 0] == 1.0).all())
    exact = GMM.conditional([0], [1.0])
    assert abs(float(x[:, 1].mean()) - float(exact.mean()[0])) < 0.25


def test_classifier_free_guidance_is_the_affine_combination():
    def model(x, t, y=None):
        return x * 0 + (0.0 if y is None else y)

    g = classifier_free(model, 3.0)
    x = torch.zeros(2, 1)
    torch.testing.assert_close(g(x, torch.ones(2), y=torch.tensor([[1.0], [2.0]])), torch.tensor([[3.0], [6.0]]))
    assert classifier_free(model, 1.0)(x, torch.ones(2), y=torch.ones(2, 1)).eq(1).all()


def _two_point_model():
    """Exact denoiser of a symmetric two-Gaussian mixture on the line."""
    return GaussianMixture([[-2.0], [2.0]], [0.3, 0.3])


@pytest.mark.parametrize("loss", ["mse", "quantile"])
def test_observation_self_guidance_pulls_samples_to_the_observation(loss):
    gmm = _two_point_model()
    model = gmm.denoiser(SCHED, "eps")
    n = 256
    observed = torch.full((n, 1), 2.0)
    mask = torch.ones(n, 1)
    x_T = torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    free = sample(model, x_T, schedule=SCHED, prediction="eps", solver="ddim", steps=30)
    guided_model = observation_guidance(model, observed, mask, schedule=SCHED, prediction="eps", scale=2.0, loss=loss)
    guided = sample(guided_model, x_T, schedule=SCHED, prediction="eps", solver="ddim", steps=30)
    frac_free = float((free > 0).float().mean())
    frac_guided = float((guided > 0).float().mean())
    assert 0.35 < frac_free < 0.65
    assert frac_guided > 0.95, frac_guided


def test_observation_guidance_rejects_unknown_loss():
    with pytest.raises(ValueError, match="allowed: mse, quantile"):
        observation_guidance(lambda x, t: x, torch.zeros(1), torch.ones(1), schedule=SCHED, prediction="eps", loss="l1")


def test_classifier_free_guidance_combines_each_field_of_a_dict_model():
    def model(x, t, y=None):
        bump = 0.0 if y is None else 1.0
        return {"a": x["a"] + bump, "b": 2 * x["b"] - bump}

    x = {"a": torch.zeros(2, 3), "b": torch.ones(2)}
    out = classifier_free(model, 3.0)(x, torch.ones(2), y=torch.ones(2, 1))
    torch.testing.assert_close(out["a"], torch.full((2, 3), 3.0))
    torch.testing.assert_close(out["b"], torch.full((2,), -1.0))
