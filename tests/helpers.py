"""Statistics used by several tests."""

from __future__ import annotations

import torch


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Szekely's energy distance between two samples (n, d) and (m, d)."""
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def energy_test_pvalue(x: torch.Tensor, y: torch.Tensor, permutations: int = 200, seed: int = 0) -> float:
    """Permutation p-value of the two-sample energy test (H0: same distribution)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.cat([x, y]).double()
    d = torch.cdist(z, z)
    n = x.shape[0]

    def stat(idx):
        a, b = idx[:n], idx[n:]
        return 2 * d[a][:, b].mean() - d[a][:, a].mean() - d[b][:, b].mean()

    observed = stat(torch.arange(z.shape[0]))
    count = sum(bool(stat(torch.randperm(z.shape[0], generator=g)) >= observed) for _ in range(permutations))
    return (count + 1) / (permutations + 1)
