"""AdaLN-Zero layers and the AdaLN-MLP denoiser."""

import pytest
import torch

from sciogen.diffusion import GaussianProcess, sample
from sciogen.nn.adaln import AdaLNMLP, AdaLNResBlock, modulate


def _perturb(module, scale=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def test_adaln_zero_starts_as_identity_and_zero_output():
    torch.manual_seed(0)
    block = AdaLNResBlock(8, 5)
    x, c = torch.randn(3, 8), torch.randn(3, 5)
    torch.testing.assert_close(block(x, c), x)
    head = AdaLNMLP(3, 5, width=16, depth=2)
    assert torch.equal(head(torch.randn(4, 3), torch.rand(4), cond=torch.randn(4, 5)), torch.zeros(4, 3))


def test_modulate():
    x = torch.ones(2, 3)
    torch.testing.assert_close(modulate(x, torch.full((2, 3), 0.5), torch.full((2, 3), 1.0)), torch.full((2, 3), 2.5))


def test_adaln_mlp_shapes_and_conditioning():
    torch.manual_seed(0)
    head = _perturb(AdaLNMLP(3, 5, width=16, depth=2))
    x, t, h = torch.randn(4, 3), torch.rand(4), torch.randn(4, 5)
    out = head(x, t, cond=h)
    assert out.shape == (4, 3)
    # per-token inputs with one time per sample
    xs, hs = torch.randn(4, 7, 3), torch.randn(4, 7, 5)
    assert head(xs, t, cond=hs).shape == (4, 7, 3)
    # time and condition both matter once the zero init is perturbed
    assert (head(x, t * 0.5, cond=h) - out).abs().max() > 1e-4
    assert (head(x, t, cond=h + 1) - out).abs().max() > 1e-4
    # each row depends only on its own condition
    h2 = h.clone()
    h2[0] += 1
    torch.testing.assert_close(head(x, t, cond=h2)[1:], out[1:])
    with pytest.raises(ValueError, match="time of shape"):
        head(x, torch.rand(5), cond=h)
    with pytest.raises(ValueError, match="expects x_t"):
        head(torch.randn(4, 2), t, cond=h)


def test_adaln_mlp_is_a_core_model_callable():
    torch.manual_seed(0)
    head = _perturb(AdaLNMLP(2, 4, width=16, depth=2)).double()
    proc = GaussianProcess("cosine", "v")
    x0, h = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    loss = proc.loss(head, x0, generator=torch.Generator().manual_seed(0), cond=h)
    assert loss.shape == (8,) and bool(torch.isfinite(loss).all())
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out = sample(head, x_T, schedule="cosine", prediction="v", solver="dpm++2m", steps=8, cond=h)
    assert out.shape == (8, 2) and out.dtype == torch.float64
