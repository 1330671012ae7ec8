import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sciogen.diffusion import LinearSchedule, convert, expand_time
from sciogen.diffusion.parametrization import check_prediction

KINDS = ["eps", "x0", "v"]


@settings(max_examples=30, deadline=None)
@given(t=st.floats(0.01, 0.99), seed=st.integers(0, 2**16))
def test_conversions_round_trip(t, seed):
    g = torch.Generator().manual_seed(seed)
    sched = LinearSchedule()
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = sched.alpha(tt), sched.sigma(tt)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    x_t = alpha * x0 + sigma * eps
    truth = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}
    for src in KINDS:
        for dst in KINDS:
            torch.testing.assert_close(convert(truth[src], x_t, alpha, sigma, src, dst), truth[dst])
    torch.testing.assert_close(convert(eps, x_t, alpha, sigma, "eps", "score"), -eps / sigma)


def test_expand_time_per_sample_and_per_token():
    x = torch.zeros(4, 7, 3)
    assert expand_time(torch.ones(4), x).shape == (4, 1, 1)
    assert expand_time(torch.ones(4, 7), x).shape == (4, 7, 1)
    with pytest.raises(ValueError, match="does not broadcast"):
        expand_time(torch.ones(5), x)


def test_unknown_prediction():
    with pytest.raises(ValueError, match="allowed: eps, x0, v"):
        check_prediction("score")
