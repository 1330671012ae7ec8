"""A Gaussian mixture with its exact diffusion denoiser: the core's ground truth.

For data ``x0 ~ sum_k w_k N(mu_k, S_k)`` and ``x_t = alpha x0 + sigma eps`` (any schedule),

    p(x_t)        = sum_k w_k N(alpha mu_k, alpha^2 S_k + sigma^2 I)
    E[x0 | x_t]   = sum_k r_k(x_t) [mu_k + alpha S_k C_k^{-1} (x_t - alpha mu_k)],
    C_k           = alpha^2 S_k + sigma^2 I,    r_k = posterior weight of component k,

so solvers, guidance and samplers can be checked against exact answers (error vs steps,
distributions, conditionals) without training anything.
"""

from __future__ import annotations

import math

import torch

from .parametrization import check_prediction, from_x0
from .schedules import Schedule, make_schedule

__all__ = ["GaussianMixture"]


class GaussianMixture:
    """Mixture of K Gaussians in R^D (float64 internally).

    Args:
        means: (K, D).
        covs: (K, D, D) covariance matrices, or (K,) / (K, D) standard deviations.
        weights: (K,) non-negative, normalised here; uniform when omitted.
    """

    def __init__(self, means, covs, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(self.means.shape)}")
        k, d = self.means.shape
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.shape == (k,):
            covs = covs[:, None, None] ** 2 * torch.eye(d, dtype=torch.float64)
        elif covs.shape == (k, d):
            covs = torch.diag_embed(covs**2)
        elif covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape (K,), (K, D) or (K, D, D) with K={k}, D={d}; got {tuple(covs.shape)}")
        self.covs = covs
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be K non-negative numbers with a positive sum")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        mu = self.mean()
        diff = self.means - mu
        return torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum("k,ki,kj->ij", self.weights, diff, diff)

    def sample(self, n: int, generator: torch.Generator | None = None, return_components: bool = False):
        """Draw n samples, float64 of shape (n, D) (and the component index of each draw)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[comp] + torch.einsum("nij,nj->ni", chol[comp], z)
        return (x, comp) if return_components else x

    def _noisy_components(self, alpha, sigma):
        """Means (B, K, D) and covariances (B, K, D, D) of p(x_t | component k)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        mean = alpha[:, None, None] * self.means
        cov = alpha[:, None, None, None] ** 2 * self.covs + sigma[:, None, None, None] ** 2 * eye
        return mean, cov

    def log_prob_noisy(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """Log p_t(x_t) of the noised mixture. Shapes: x_t (B, D), alpha/sigma (B,) -> (B,)."""
        return torch.logsumexp(self._component_log_probs(x_t.double(), alpha, sigma), dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log density of the clean mixture. Shapes: (B, D) -> (B,)."""
        b = x.shape[0]
        return self.log_prob_noisy(x, torch.ones(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64))

    def _component_log_probs(self, x, alpha, sigma):
        mean, cov = self._noisy_components(alpha.double(), sigma.double())
        diff = x[:, None, :] - mean
        chol = torch.linalg.cholesky(cov)
        sol = torch.cholesky_solve(diff[..., None], chol)[..., 0]
        maha = (diff * sol).sum(-1)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return torch.log(self.weights) - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))

    def posterior_mean(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """E[x0 | x_t], the exact denoiser. Shapes: x_t (B, D), alpha/sigma (B,) -> (B, D)."""
        x = x_t.double()
        alpha = alpha.double()
        mean, cov = self._noisy_components(alpha, sigma.double())
        logits = self._component_log_probs(x, alpha, sigma)
        resp = torch.softmax(logits, dim=1)
        gain = torch.linalg.solve(cov, (x[:, None, :] - mean)[..., None])[..., 0]
        cond = self.means + alpha[:, None, None] * torch.einsum("kij,bkj->bki", self.covs, gain)
        return (resp[..., None] * cond).sum(1)

    def denoiser(self, schedule: Schedule | str = "linear", prediction: str = "eps"):
        """The exact model callable ``model(x_t, t) -> prediction`` for this mixture.

        Shapes: x_t (B, D), t (B,) -> (B, D), in x_t's dtype.
        """
        schedule = make_schedule(schedule)
        check_prediction(prediction, schedule)

        def model(x_t: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
            t = torch.as_tensor(t, dtype=torch.float64).expand(x_t.shape[0])
            alpha, sigma = schedule.alpha(t), schedule.sigma(t)
            x0 = self.posterior_mean(x_t, alpha, sigma)
            derivatives = [d[:, None] for d in schedule.derivatives(t)] if prediction == "flow" else []
            pred = from_x0(x0, x_t.double(), alpha[:, None], sigma[:, None], prediction, *derivatives)
            return pred.to(x_t.dtype)

        return model

    def conditional(self, index, values) -> "GaussianMixture":
        """The mixture of the coordinates not in ``index`` given x[index] = values.

        Args:
            index: indices (or a boolean mask of length D) of the observed coordinates.
            values: (len(index),) observed values.
        """
        d = self.dim
        obs = torch.zeros(d, dtype=torch.bool)
        obs[torch.as_tensor(index)] = True
        values = torch.as_tensor(values, dtype=torch.float64)
        mis = ~obs
        s_oo = self.covs[:, obs][:, :, obs]
        s_mo = self.covs[:, mis][:, :, obs]
        s_mm = self.covs[:, mis][:, :, mis]
        diff = values - self.means[:, obs]
        gain = torch.linalg.solve(s_oo, s_mo.transpose(1, 2)).transpose(1, 2)
        means = self.means[:, mis] + torch.einsum("kmo,ko->km", gain, diff)
        covs = s_mm - gain @ s_mo.transpose(1, 2)
        chol = torch.linalg.cholesky(s_oo)
        sol = torch.cholesky_solve(diff[..., None], chol)[..., 0]
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        logw = torch.log(self.weights) - 0.5 * ((diff * sol).sum(-1) + logdet)
        return GaussianMixture(means, 0.5 * (covs + covs.transpose(1, 2)), torch.softmax(logw, 0))

    @classmethod
    def example(cls, dim: int = 2) -> "GaussianMixture":
        """A fixed, asymmetric, correlated test mixture (3 components) in R^dim."""
        g = torch.Generator().manual_seed(1234)
        means = torch.tensor([[-2.0, -1.0], [1.5, 1.0], [0.5, -2.5]], dtype=torch.float64)
        if dim > 2:
            means = torch.cat([means, torch.randn(3, dim - 2, generator=g, dtype=torch.float64)], 1)
        means = means[:, :dim]
        a = torch.randn(3, dim, dim, generator=g, dtype=torch.float64) * 0.35
        covs = a @ a.transpose(1, 2) + 0.08 * torch.eye(dim, dtype=torch.float64)
        return cls(means, covs, torch.tensor([0.5, 0.3, 0.2]))
