import pytest
import torch

from sciogen.diffusion import GaussianMixture, GaussianProcess, LinearSchedule, from_x0


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_x0_weighting_gives_the_same_loss_for_every_prediction(prediction):
    """With weighting "x0" the loss is |x0_hat - x0|^2 whatever the network predicts."""
    proc = GaussianProcess(LinearSchedule(), prediction, loss_weighting="x0")
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 64, dtype=torch.float64)
    offset = 0.1

    def model(x_t, t):  # a model whose x0 estimate is off by a constant
        alpha, sigma = proc.coefficients(t, x_t)
        return from_x0(x0 + offset, x_t, alpha, sigma, prediction)

    loss = proc.loss(model, x0, t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, torch.full((64,), offset**2, dtype=torch.float64))


def test_noise_statistics_and_per_token_time():
    proc = GaussianProcess("cosine")
    x0 = torch.ones(20000, 4)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8]).expand(20000, 4)
    x_t, eps = proc.noise(x0, t, generator=torch.Generator().manual_seed(0))
    alpha, sigma = proc.schedule.alpha(t[0]), proc.schedule.sigma(t[0])
    torch.testing.assert_close(x_t.mean(0), alpha, atol=0.02, rtol=0)
    torch.testing.assert_close(x_t.std(0), sigma, atol=0.02, rtol=0.02)


def test_exact_denoiser_has_lower_loss_than_a_wrong_one():
    gmm = GaussianMixture.example()
    proc = GaussianProcess(LinearSchedule(), "eps")
    x0 = gmm.sample(4000, torch.Generator().manual_seed(0)).float()
    exact = proc.loss(gmm.denoiser(proc.schedule, "eps"), x0, generator=torch.Generator().manual_seed(1)).mean()
    shrunk = gmm.denoiser(proc.schedule, "eps")
    wrong = proc.loss(lambda x, t: 0.8 * shrunk(x, t), x0, generator=torch.Generator().manual_seed(1)).mean()
    assert exact < wrong


def test_mask_and_shape_errors():
    proc = GaussianProcess()
    x0 = torch.randn(2, 5)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    loss = proc.loss(lambda x, t: torch.zeros_like(x), x0, mask=mask, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (2,)
    with pytest.raises(ValueError, match="model output has shape"):
        proc.loss(lambda x, t: x[:, :3], x0)
    with pytest.raises(ValueError, match="allowed: none, snr, min_snr, x0"):
        GaussianProcess(loss_weighting="p2")
