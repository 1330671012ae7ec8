import math

import pytest
import torch

from sciogen.diffusion import CosineSchedule, DiscreteSchedule, LinearSchedule, make_schedule

SCHEDULES = [LinearSchedule(), CosineSchedule(), DiscreteSchedule.linear(1000), DiscreteSchedule.scaled_linear(1000)]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_variance_preserving_and_monotone(schedule):
    t = torch.linspace(schedule.t_min, 1.0, 257, dtype=torch.float64)
    a, s = schedule.alpha(t), schedule.sigma(t)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t))
    lam = schedule.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all()), "log-SNR must decrease with t"
    torch.testing.assert_close(lam, torch.log(a / s))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_log_snr_inverse(schedule):
    t = torch.linspace(schedule.t_min, 1.0, 101, dtype=torch.float64)
    torch.testing.assert_close(schedule.t_from_log_snr(schedule.log_snr(t)), t, atol=1e-7, rtol=1e-7)


def test_discrete_table_matches_cumprod():
    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    sched = DiscreteSchedule(betas)
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000
    torch.testing.assert_close(sched.alpha(t) ** 2, torch.cumprod(1 - betas, 0))
    assert sched.t_min == pytest.approx(1e-3)
    torch.testing.assert_close(sched.timestep(t), torch.arange(1000, dtype=torch.float64))


def test_linear_matches_closed_form():
    sched = LinearSchedule(0.1, 20.0)
    t = torch.tensor(0.5, dtype=torch.float64)
    assert float(sched.alpha(t)) == pytest.approx(math.exp(-0.25 * 0.25 * 19.9 - 0.5 * 0.5 * 0.1))


def test_bad_schedule_names_the_options():
    with pytest.raises(ValueError, match="allowed: linear, cosine, discrete"):
        make_schedule("quadratic")
    with pytest.raises(ValueError):
        DiscreteSchedule([0.5, 1.5])
