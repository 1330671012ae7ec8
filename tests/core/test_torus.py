import math

import pytest
import torch

from sciogen.diffusion.testing import sample_torus
from sciogen.diffusion.torus import WrappedNormalProcess, wrap_displacement, wrap_fractional

SIGMAS = [0.005, 0.05, 0.2, 0.5, 1.0]

# a mixture of wrapped normals on the 2-torus; the third centre straddles the cell corner
CENTRES = torch.tensor([[0.2, 0.3], [0.6, 0.8], [0.97, 0.02]])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2])
WIDTH = 0.04


def mixture_model(proc, width=WIDTH):
    """The exact normalised score of the mixture convolved with the noise at time t:
    again a mixture of wrapped normals, of width sqrt(width^2 + sigma(t)^2)."""

    def model(x, t):
        sigma = proc.sigma(t)
        v = (width**2 + sigma**2).sqrt()[:, None, None]
        xx = x[:, None, :]  # (B, 1, 2) against the centres (3, 2)
        resp = torch.softmax(proc.log_prob(xx, CENTRES, v).sum(-1) + WEIGHTS.log(), -1)
        score = (resp.unsqueeze(-1) * proc.score(xx, CENTRES, v)).sum(1)
        return score / proc.score_norm(sigma).sqrt()[:, None]

    return model


def test_wrapping_helpers_stay_in_range():
    x = torch.tensor([-1e-9, -1.0, 0.0, 0.5, 1.0, 2.999999, -3.5e-8], dtype=torch.float32)
    w = wrap_fractional(x)
    assert bool(((w >= 0) & (w < 1)).all())
    d = wrap_displacement(torch.tensor([-0.5, 0.5, 0.7, -0.7, 1.2]))
    torch.testing.assert_close(d, torch.tensor([-0.5, -0.5, -0.3, 0.3, 0.2]))


def test_noise_stays_in_the_cell_and_has_the_right_spread():
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.0, 1e-7, 0.5, 0.9999999]).expand(50000, 4).contiguous()
    t = torch.rand(50000, generator=g)
    x_t, eps = proc.noise(x0, t, generator=g)
    assert x_t.shape == x0.shape and bool(((x_t >= 0) & (x_t < 1)).all())
    # at small sigma the wrapped displacement is sigma * eps exactly
    t_small = torch.zeros(50000)
    x_t, eps = proc.noise(x0, t_small, generator=g)
    torch.testing.assert_close(wrap_displacement(x_t - x0), 0.005 * eps, atol=1e-6, rtol=0)
    # per-atom times (B, N) broadcast over the coordinates (B, N, 3)
    x_t, _ = proc.noise(torch.rand(2, 5, 3, generator=g), torch.rand(2, 5, generator=g), generator=g)
    assert x_t.shape == (2, 5, 3)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_the_gradient_of_log_prob(sigma):
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(200, generator=g, dtype=torch.float64)
    x_t = torch.rand(200, generator=g, dtype=torch.float64)
    h = 1e-8  # opposite the centre the score turns over a width sigma^2 (1e-5 at sigma = 0.005)
    fd = (proc.log_prob(x_t + h, x0, sigma) - proc.log_prob(x_t - h, x0, sigma)) / (2 * h)
    score = proc.score(x_t, x0, sigma)
    torch.testing.assert_close(score, fd, rtol=1e-6, atol=1e-5)
    gap = (score + wrap_displacement(x_t - x0) / sigma**2).abs()  # against an unwrapped Gaussian
    if sigma >= 0.2:  # the periodic images matter
        assert float(gap.max()) > 0.1
    else:  # they do not, away from the point opposite the centre
        assert float(gap[wrap_displacement(x_t - x0).abs() < 0.3].max()) < 1e-6 * max(1.0, 1 / sigma**2)


def test_score_vanishes_opposite_the_centre_and_uses_enough_images():
    proc = WrappedNormalProcess()
    x0 = torch.tensor([0.25], dtype=torch.float64)
    for sigma in SIGMAS:
        assert abs(float(proc.score(torch.tensor([0.75], dtype=torch.float64), x0, sigma))) < 1e-9
    # a fixed, too small number of images is topped up automatically for a large sigma
    few = WrappedNormalProcess(n_images=1)
    x_t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(few.score(x_t, x0, 1.0), WrappedNormalProcess(n_images=20).score(x_t, x0, 1.0))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_density_integrates_to_one_over_the_cell(sigma):
    proc = WrappedNormalProcess()
    n = 40000
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    total = proc.log_prob(x, torch.tensor(0.3, dtype=torch.float64), sigma).exp().sum() / n
    assert float(total) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3, 0.5])
def test_score_norm_matches_monte_carlo(sigma):
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x = wrap_fractional(sigma * torch.randn(200000, generator=g, dtype=torch.float64))
    sq = proc.score(x, torch.zeros((), dtype=torch.float64), sigma) ** 2
    se = float(sq.std()) / math.sqrt(sq.numel())
    norm = float(proc.score_norm(torch.tensor(sigma, dtype=torch.float64)))
    assert abs(float(sq.mean()) - norm) < 4 * se


def test_score_norm_table_matches_direct_quadrature_and_limits():
    proc = WrappedNormalProcess()
    sigma = torch.tensor([0.005, 0.0123, 0.05, 0.1777, 0.31, 0.5], dtype=torch.float64)
    table = proc.score_norm(sigma)
    direct = WrappedNormalProcess(sigma_min=1.0, sigma_max=2.0).score_norm(sigma)  # outside its table: quadrature
    torch.testing.assert_close(table, direct, rtol=1e-6, atol=0)
    # the quadrature itself against a brute-force Riemann sum over the whole cell
    x = (torch.arange(200000, dtype=torch.float64) + 0.5) / 200000
    for value in (0.005, 0.2):
        lp = proc.log_prob(x, torch.tensor(0.5, dtype=torch.float64), value)
        brute = (lp.exp() * proc.score(x, torch.tensor(0.5, dtype=torch.float64), value) ** 2).mean()
        assert float(proc.score_norm(torch.tensor(value, dtype=torch.float64))) == pytest.approx(float(brute), rel=1e-7)
    # outside the table: integrated directly; small sigma -> 1 / sigma^2, large sigma -> 0
    outside = proc.score_norm(torch.tensor([1e-4, 2.0], dtype=torch.float64))
    assert float(outside[0]) == pytest.approx(1e8, rel=1e-6)
    assert 0 <= float(outside[1]) < 1e-6
    assert proc.score_norm(torch.tensor([0.1, 0.2])).dtype == torch.float32
    with pytest.raises(ValueError, match="sigma must be > 0"):
        proc.score_norm(torch.tensor([0.0, 0.1]))


def test_normalised_target_has_unit_second_moment():
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(20000, 3, generator=g, dtype=torch.float64)
    for t_value in (0.0, 0.5, 1.0):
        t = torch.full((20000,), t_value, dtype=torch.float64)
        x_t, _ = proc.noise(x0, t, generator=g)
        target = proc.target(x0, x_t, t)
        assert float((target**2).mean()) == pytest.approx(1.0, abs=0.04)


def test_loss_is_per_sample_masked_and_zero_for_the_target():
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 5, 3, generator=g)
    t = torch.rand(4, generator=g)
    x_t, _ = proc.noise(x0, t, generator=torch.Generator().manual_seed(1))
    exact = proc.target(x0, x_t, t)
    loss = proc.loss(lambda x, tt: exact, x0, t, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (4,) and float(loss.abs().max()) < 1e-10
    mask = torch.ones(4, 5, 1)
    mask[:, 3:] = 0
    garbage = exact.clone()
    garbage[:, 3:] += 100.0
    masked = proc.loss(lambda x, tt: garbage, x0, t, generator=torch.Generator().manual_seed(1), mask=mask)
    assert float(masked.abs().max()) < 1e-10
    assert float(proc.loss(lambda x, tt: torch.zeros_like(x), x0, generator=g).min()) > 0
    with pytest.raises(ValueError, match="model output has shape"):
        proc.loss(lambda x, tt: x[..., :2], x0, generator=g)


def mixture_statistics(x):
    """Mixture weights, centre offsets and pooled spread of samples (n, 2), by nearest centre."""
    d = wrap_displacement(x[:, None, :] - CENTRES)
    label = d.norm(dim=-1).argmin(-1)
    weights = torch.bincount(label, minlength=3).double() / x.shape[0]
    offsets = torch.stack([d[label == j, j].mean(0) for j in range(3)])
    spread = torch.cat([d[label == j, j] for j in range(3)]).std()
    return weights, offsets, float(spread), torch.bincount(label, minlength=3)


def test_pc_sampler_with_the_exact_score_reproduces_a_wrapped_mixture():
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    n = 4000
    # step_lr below DiffCSP's 1e-5: with h = 0.4 sigma^2 the unadjusted Langevin corrector
    # flattens the mixture weights by ~0.02 (measured with 20000 samples); here h = 0.12 sigma^2
    x = sample_torus(mixture_model(proc), proc.prior((n, 2), generator=g), proc, steps=100, generator=g,
                     corrector_steps=1, step_lr=3e-6)
    assert x.shape == (n, 2) and bool(((x >= 0) & (x < 1)).all())
    weights, offsets, spread, counts = mixture_statistics(x)
    pi = WEIGHTS.double()
    assert bool(((weights - pi).abs() < 4.5 * (pi * (1 - pi) / n).sqrt()).all()), weights
    assert bool((offsets.abs() < 4.5 * WIDTH / counts.double().sqrt()[:, None]).all()), offsets
    # sampling error: 4 standard errors of a std (~0.8 %) plus ~3 % discretisation bias
    assert spread == pytest.approx(WIDTH, rel=0.06)


def test_the_mixture_test_detects_a_wrong_score():
    proc = WrappedNormalProcess()
    g = torch.Generator().manual_seed(0)
    x = sample_torus(mixture_model(proc, width=0.05), proc.prior((2000, 2), generator=g), proc, steps=30,
                     generator=g, corrector_steps=0)
    assert mixture_statistics(x)[2] > WIDTH * 1.15


def test_step_and_sampler_options():
    proc = WrappedNormalProcess()
    model = mixture_model(proc)
    x = proc.prior((8, 2), generator=torch.Generator().manual_seed(0))
    t, s = torch.full((8,), 0.5), torch.full((8,), 0.4)
    with pytest.raises(ValueError, match="needs model="):
        proc.step(x, model(x, t), t, s)
    with pytest.raises(ValueError, match="need s <= t"):
        proc.step(x, model(x, s), s, t, corrector_steps=0)
    a = proc.step(x, model(x, t), t, s, torch.Generator().manual_seed(1), model=model)
    b = proc.step(x, model(x, t), t, s, torch.Generator().manual_seed(1), model=model)
    torch.testing.assert_close(a, b)
    calls = []

    def counting(x, t):
        calls.append(float(t[0]))
        return model(x, t)

    sample_torus(counting, x, proc, steps=5, generator=torch.Generator().manual_seed(0), corrector_steps=2)
    assert len(calls) == 5 + 2 * 4 and calls[-1] == 0.0 and calls[0] == 1.0
    calls.clear()
    sample_torus(counting, x, proc, steps=5, corrector_steps=0, denoise_final=False)
    assert len(calls) == 5
    with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max"):
        WrappedNormalProcess(sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ValueError, match="n_images"):
        WrappedNormalProcess(n_images=0)
