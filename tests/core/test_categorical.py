import math

import pytest
import torch
from scipy import stats

from sciogen.diffusion.categorical import CategoricalProcess, sample_categorical

K = 4
MARGINALS = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
TRANSITIONS = ["uniform", "marginal", "absorbing"]


def make(transition, schedule="cosine"):
    return CategoricalProcess(K, transition, MARGINALS if transition == "marginal" else None, schedule=schedule)


def stationary(transition):
    if transition == "uniform":
        return torch.full((K,), 1.0 / K, dtype=torch.float64)
    if transition == "marginal":
        return MARGINALS
    return torch.eye(K, dtype=torch.float64)[K - 1]


def rank_one(keep, m):
    """The explicit K x K matrix keep * I + (1 - keep) 1 m^T; row = from, column = to."""
    return keep * torch.eye(K, dtype=torch.float64) + (1 - keep) * torch.ones(K, 1, dtype=torch.float64) * m


def data_distribution(transition):
    """A known per-element data distribution (no mass on the mask class for absorbing)."""
    if transition == "absorbing":
        return torch.tensor([0.6, 0.1, 0.3, 0.0], dtype=torch.float64)
    return torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def exact_denoiser(proc, p_data):
    """p(x0 | x_t) ∝ p_data(x0) q(x_t | x0), as logits of shape x_t.shape + (K,)."""
    m = proc.stationary

    def model(x_t, t):
        abar = proc.alpha_bar(t.double()).reshape(t.shape + (1,) * (x_t.ndim - t.ndim + 1))
        like = abar * torch.nn.functional.one_hot(x_t, K) + (1 - abar) * m[x_t].unsqueeze(-1)
        joint = p_data * like
        return torch.where(joint > 0, joint.log(), torch.full_like(joint, -math.inf))

    return model


def chi2_stat(samples, probs):
    counts = torch.bincount(samples.flatten(), minlength=K).double()
    expected = probs * samples.numel()
    keep = expected > 0
    assert counts[~keep].sum() == 0, f"drew classes of probability 0: {counts}"
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_alpha_bar_runs_from_one_to_almost_zero(schedule):
    proc = CategoricalProcess(3, schedule=schedule)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    abar = proc.alpha_bar(t)
    assert abar[0] == 1.0 and 0 < abar[-1] <= 1e-5
    assert bool((abar[1:] <= abar[:-1]).all())
    s = 0.008
    expected = (math.cos(0.5 * math.pi * (0.5 + s) / (1 + s)) / math.cos(0.5 * math.pi * s / (1 + s))) ** 2
    assert float(proc.alpha_bar(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(
        expected if schedule == "cosine" else 0.5, rel=1e-12
    )


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_q_probs_rows_are_distributions_from_one_hot_to_stationary(transition):
    proc = make(transition)
    x0 = torch.randint(0, K, (3, 5, 5), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    q = proc.q_probs(x0, t)
    assert q.shape == (3, 5, 5, K) and q.dtype == torch.float64
    torch.testing.assert_close(q.sum(-1), torch.ones(3, 5, 5, dtype=torch.float64))
    torch.testing.assert_close(q[0], torch.nn.functional.one_hot(x0[0], K).double())
    torch.testing.assert_close(q[2], stationary(transition).expand(5, 5, K), atol=1e-5, rtol=0)
    # per-token times (B, N) broadcast over the edge dimension
    t_tok = torch.rand(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q_tok = proc.q_probs(x0, t_tok)
    torch.testing.assert_close(q_tok[1, 2], proc.q_probs(x0[1, 2], t_tok[1, 2]))


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_noise_frequencies_match_q_probs(transition):
    proc = make(transition)
    n = 20000
    x0 = torch.tensor([0, 1, 2]).expand(n, 3)
    t = torch.tensor([0.2, 0.5, 0.8]).expand(n, 3)  # one time per token
    x_t = proc.noise(x0, t, generator=torch.Generator().manual_seed(0))
    assert x_t.dtype == torch.long and x_t.shape == (n, 3)
    q = proc.q_probs(x0[0], t[0]).double()
    for col in range(3):
        stat, dof = chi2_stat(x_t[:, col], q[col])
        assert stat < stats.chi2.ppf(0.999, dof), (col, stat)
    if transition == "absorbing":  # a token is either kept or masked
        assert bool(((x_t == x0) | (x_t == K - 1)).all())


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_posterior_matches_bayes_with_explicit_matrices(transition):
    proc = make(transition)
    m = stationary(transition)
    t, s = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64)
    abar_t, abar_s = proc.alpha_bar(t), proc.alpha_bar(s)
    q_t, q_s, q_st = rank_one(abar_t, m), rank_one(abar_s, m), rank_one(abar_t / abar_s, m)
    torch.testing.assert_close(q_s @ q_st, q_t)  # Qbar_s Q_{s->t} = Qbar_t

    x_t, x0 = torch.cartesian_prod(torch.arange(K), torch.arange(K)).T  # every (x_t, x0) pair
    post = proc.posterior_probs(x_t, x0, t, s)
    for j, c, row in zip(x_t.tolist(), x0.tolist(), post):
        if q_t[c, j] == 0:  # absorbing: an unmasked x_t != x0 cannot happen
            assert float(row.abs().sum()) == 0.0
            continue
        brute = torch.tensor([q_st[i, j] * q_s[c, i] / q_t[c, j] for i in range(K)], dtype=torch.float64)
        torch.testing.assert_close(row, brute)
        torch.testing.assert_close(row.sum(), torch.tensor(1.0, dtype=torch.float64))

    # the model posterior of a soft x0 prediction, summed over x0 by brute force
    g = torch.Generator().manual_seed(0)
    probs = torch.distributions.Dirichlet(torch.ones(K, dtype=torch.float64)).sample((K,))
    probs = probs[torch.randperm(K, generator=g)]
    x_t = torch.arange(K)
    got = proc.model_posterior(x_t, probs, t, s)
    for j in range(K):
        possible = [c for c in range(K) if q_t[c, j] > 0]
        brute = sum(
            probs[j, c] * torch.tensor([q_st[i, j] * q_s[c, i] / q_t[c, j] for i in range(K)], dtype=torch.float64)
            for c in possible
        )
        torch.testing.assert_close(got[j], brute / brute.sum())


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_model_posterior_of_a_one_hot_prediction_is_the_posterior(transition):
    proc = make(transition)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K - 1, (4, 6, 6), generator=g)
    t = torch.tensor([0.05, 0.3, 0.6, 1.0], dtype=torch.float64)
    s = t - torch.tensor([0.05, 0.1, 0.3, 0.001], dtype=torch.float64)
    x_t = proc.noise(x0, t, generator=g)
    post = proc.posterior_probs(x_t, x0, t, s)
    model = proc.model_posterior(x_t, torch.nn.functional.one_hot(x0, K).double(), t, s)
    torch.testing.assert_close(model, post)
    torch.testing.assert_close(post.sum(-1), torch.ones(4, 6, 6, dtype=torch.float64))
    # at s = 0 the model posterior is the x0 prediction itself
    probs = torch.softmax(torch.randn(4, 6, 6, K, generator=g, dtype=torch.float64), -1)
    if transition == "absorbing":  # an unmasked token is known to be its own x0
        keep = (x_t != K - 1).unsqueeze(-1)
        probs = torch.where(keep, torch.nn.functional.one_hot(x_t, K).double(), probs)
    torch.testing.assert_close(proc.model_posterior(x_t, probs, t, torch.zeros(4, dtype=torch.float64)), probs)


def test_absorbing_model_posterior_keeps_unmasked_tokens_whatever_the_model_says():
    proc = make("absorbing")
    x_t = torch.tensor([0, 2, 3])
    wrong = torch.tensor([[0.0, 1.0, 0.0, 0.0]] * 3, dtype=torch.float64)  # all mass on class 1
    t, s = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    post = proc.model_posterior(x_t, wrong, t, s)
    torch.testing.assert_close(post[0], torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(post[1], torch.tensor([0, 0, 1.0, 0], dtype=torch.float64))
    assert post[2, 1] > 0 and post[2, 0] == 0 and post[2, 2] == 0  # masked: unmask to 1 or stay masked


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_vlb_is_non_negative_and_vanishes_for_the_true_x0(transition):
    proc = make(transition)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K - 1, (64, 7), generator=g)
    t = torch.rand(64, generator=g, dtype=torch.float64)
    x_t = proc.noise(x0, t, generator=g)
    random_logits = 3 * torch.randn(64, 7, K, generator=g, dtype=torch.float64)
    vlb = proc.loss(random_logits, x0, x_t, t, kind="vlb", num_steps=50)
    assert vlb.shape == (64,) and bool((vlb >= -1e-12).all()) and float(vlb.max()) > 1e-3
    perfect = 60.0 * torch.nn.functional.one_hot(x0, K).double()
    assert float(proc.loss(perfect, x0, x_t, t, kind="vlb", num_steps=50).abs().max()) < 1e-12
    assert float(proc.loss(perfect, x0, kind="ce").abs().max()) < 1e-12
    hybrid = proc.loss(random_logits, x0, x_t, t, kind="hybrid", num_steps=50, hybrid_weight=0.5)
    ce = proc.loss(random_logits, x0, kind="ce")
    torch.testing.assert_close(hybrid, vlb + 0.5 * ce)


def test_vlb_at_the_first_step_is_the_reconstruction_cross_entropy():
    proc = make("uniform")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (16, 5), generator=g)
    t = torch.full((16,), 0.01, dtype=torch.float64)  # s = max(t - 1/50, 0) = 0
    x_t = proc.noise(x0, t, generator=g)
    logits = torch.randn(16, 5, K, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        proc.loss(logits, x0, x_t, t, kind="vlb", num_steps=50), proc.loss(logits, x0, kind="ce")
    )


def test_loss_mask_leaves_out_padding():
    proc = make("marginal")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (2, 6), generator=g)
    logits = torch.randn(2, 6, K, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    garbage = logits.clone()
    garbage[0, 3:] = 100 * torch.randn(3, K, generator=g)
    masked = proc.loss(garbage, x0, mask=mask)
    torch.testing.assert_close(masked[0], proc.loss(logits[:1, :3], x0[:1, :3])[0])
    torch.testing.assert_close(masked[1], proc.loss(logits[1:], x0[1:])[0])


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_ancestral_sampling_with_the_exact_denoiser_reproduces_the_data(transition):
    proc = make(transition)
    p_data = data_distribution(transition)
    g = torch.Generator().manual_seed(0)
    x_T = proc.prior((2000, 10), generator=g)
    x0 = sample_categorical(exact_denoiser(proc, p_data), x_T, proc, steps=10, generator=g)
    assert x0.shape == (2000, 10) and x0.dtype == torch.long
    stat, dof = chi2_stat(x0, p_data)
    assert stat < stats.chi2.ppf(0.999, dof), stat


def test_the_sampling_test_detects_a_wrong_denoiser():
    proc = make("marginal")
    p_data = data_distribution("marginal")
    wrong = exact_denoiser(proc, torch.tensor([0.15, 0.2, 0.3, 0.35], dtype=torch.float64))
    x0 = sample_categorical(wrong, proc.prior((2000, 10), generator=torch.Generator().manual_seed(0)), proc, 10,
                            torch.Generator().manual_seed(1))
    stat, dof = chi2_stat(x0, p_data)
    assert stat > stats.chi2.ppf(0.999, dof)


def test_training_loss_prefers_the_exact_denoiser():
    proc = make("uniform")
    p_data = data_distribution("uniform")
    x0 = torch.multinomial(p_data.float(), 4000 * 6, replacement=True, generator=torch.Generator().manual_seed(0))
    x0 = x0.reshape(4000, 6)
    exact = exact_denoiser(proc, p_data)
    for kind in ("ce", "vlb"):
        good = proc.training_loss(exact, x0, kind=kind, generator=torch.Generator().manual_seed(1))
        bad = proc.training_loss(
            lambda x, t: 0.5 * exact(x, t), x0, kind=kind, generator=torch.Generator().manual_seed(1)
        )
        assert good.shape == (4000,) and float(good.mean()) < float(bad.mean())
    with pytest.raises(ValueError, match="model output has shape"):
        proc.training_loss(lambda x, t: torch.zeros(x.shape + (K - 1,)), x0)


def test_prior_draws_the_stationary_distribution():
    proc = make("marginal")
    x = proc.prior((20000,), generator=torch.Generator().manual_seed(0))
    stat, dof = chi2_stat(x, MARGINALS)
    assert stat < stats.chi2.ppf(0.999, dof)
    assert bool((make("absorbing").prior((3, 4)) == K - 1).all())


def test_bad_input_raises_helpful_errors():
    proc = make("uniform")
    with pytest.raises(ValueError, match=r"outside the allowed 0 \.\. 3"):
        proc.q_probs(torch.tensor([0, 4]), torch.tensor(0.5))
    with pytest.raises(ValueError, match=r"outside the allowed"):
        proc.noise(torch.tensor([-1, 2]), torch.tensor(0.5))
    with pytest.raises(ValueError, match="integer tensor of class labels"):
        proc.q_probs(torch.tensor([0.0, 1.0]), torch.tensor(0.5))
    with pytest.raises(ValueError, match="need s <= t"):
        proc.posterior_probs(torch.tensor([0]), torch.tensor([1]), torch.tensor(0.2), torch.tensor(0.5))
    with pytest.raises(ValueError, match="logits have shape"):
        proc.loss(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs x_t and t"):
        proc.loss(torch.zeros(2, K), torch.tensor([0, 1]), kind="vlb")
    with pytest.raises(ValueError, match="allowed: ce, vlb, hybrid"):
        proc.loss(torch.zeros(2, K), torch.tensor([0, 1]), kind="mse")
    with pytest.raises(ValueError, match="allowed: logits, probs"):
        proc.step(torch.tensor([0]), torch.zeros(1, K), 0.5, 0.2, prediction="x0")
    with pytest.raises(ValueError, match="allowed: uniform, marginal, absorbing"):
        CategoricalProcess(K, "masked")
    with pytest.raises(ValueError, match="allowed: cosine, linear"):
        CategoricalProcess(K, schedule="sqrt")
    with pytest.raises(ValueError, match="needs marginals"):
        CategoricalProcess(K, "marginal")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        CategoricalProcess(K, "marginal", [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        CategoricalProcess(K, "marginal", [0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        CategoricalProcess(K, "marginal", [1.2, -0.2, 0.0, 0.0])
    with pytest.raises(ValueError, match="only used with transition='marginal'"):
        CategoricalProcess(K, "uniform", MARGINALS)
    with pytest.raises(ValueError, match="num_classes"):
        CategoricalProcess(1)
