"""The deformation process: the loss is zero for the exact recovery, the sampler composes and
stays folding-free, and a tiny network learns something measurable."""

from __future__ import annotations

import pytest
import torch

from sciogen.deformation import (  # noqa: E402
    DeformationProcess,
    RecoveryUNet,
    ShapeNotDivisibleError,
    integrate_velocity,
    jacobian_determinant,
    recovery_times,
)


def checkerboard(size: int, batch: int = 4) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((i // 4) + (j // 4)) % 2).float()[None, None].expand(batch, 1, size, size).contiguous()


def test_recovery_times():
    assert recovery_times(1.0, 4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert recovery_times(0.8, 2, 0.2) == pytest.approx([0.8, 0.5, 0.2])
    with pytest.raises(ValueError, match="level"):
        recovery_times(1.5, 4)
    with pytest.raises(ValueError, match="t_end"):
        recovery_times(0.5, 4, 0.6)


@pytest.mark.parametrize("foreground", [0.0, 0.05])
def test_loss_terms_for_the_exact_recovery_and_for_none(foreground):
    process = DeformationProcess(grids=(4, 8), foreground=foreground)
    x0 = checkerboard(32)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    # replay the loss's draws (t, then the noise) to build an oracle that knows the deformation
    process.t_min + (1 - process.t_min) * torch.rand(4, generator=g)
    eps = process.noise(4, (32, 32), generator=g)
    g.set_state(state)
    exact = process.loss_terms(lambda x, t: -eps, x0, generator=g)  # velocity in units of sigma(t)
    none = process.loss_terms(lambda x, t: torch.zeros_like(eps), x0, generator=torch.Generator().manual_seed(0))
    assert float(exact["rse"].max()) < 1e-6 and float(exact["fold"].max()) == 0.0
    assert float(exact["cos"].max()) < 0.02
    assert torch.allclose(none["rse"], torch.ones(4)) and torch.allclose(none["cos"], torch.ones(4))


def test_recover_with_a_silent_model_returns_the_initial_deformation():
    process = DeformationProcess(grids=(4, 8))
    x = checkerboard(32, 2)
    eps = process.noise(2, (32, 32), generator=torch.Generator().manual_seed(1))
    ddf = process.recover(lambda x, t: torch.zeros(2, 2, 32, 32), x, level=0.7, steps=3, eps=eps,
                          generator=torch.Generator())
    expected = integrate_velocity(process.velocity(eps, torch.full((2,), 0.7)))
    assert torch.allclose(ddf, expected, atol=1e-5)


def test_recover_with_the_inverse_velocity_undoes_the_deformation():
    """A model that always answers -v_T' / sigma(t) recovers the full deformation in one step."""
    process = DeformationProcess(grids=(4,))
    x = checkerboard(32, 1)
    eps = process.noise(1, (32, 32), generator=torch.Generator().manual_seed(2))
    ddf = process.recover(lambda x, t: -eps, x, level=1.0, steps=1, eps=eps, generator=torch.Generator())
    start = integrate_velocity(process.velocity(eps, torch.ones(1)))
    assert ddf[..., 4:-4, 4:-4].norm(dim=1).mean() < 0.05 * start.norm(dim=1).mean()
    assert float(jacobian_determinant(ddf).min()) > 0


@pytest.mark.parametrize("dim,size", [(2, 32), (3, 16)])
def test_network_shapes_and_clear_errors(dim, size):
    net = RecoveryUNet(dim, 1, (4, 8))
    x = torch.rand(2, 1, *(size,) * dim)
    assert net(x, torch.rand(2)).shape == (2, dim, *(size,) * dim)
    assert torch.count_nonzero(net(x, torch.rand(2))) == 0  # zero-initialised output
    with pytest.raises(ShapeNotDivisibleError, match="divisible"):
        net(torch.rand(1, 1, *(size + 1,) * dim), torch.rand(1))


@pytest.mark.parametrize("dim", [2, 3])
def test_a_strided_stem_keeps_the_input_grid(dim):
    """stem=2: the blocks work on half the grid, the velocity comes back on the input grid,
    smooth (linear upsampling) and still zero before training."""
    net = RecoveryUNet(dim, 1, (4, 8), stem=2)
    assert net.divisor == 4
    x = torch.rand(2, 1, *(16,) * dim)
    assert torch.count_nonzero(net(x, torch.rand(2))) == 0
    torch.nn.init.normal_(net.conv_out.weight)
    seen = []
    net.conv_out.register_forward_hook(lambda module, args, out: seen.append(out))
    w = net(x, torch.full((2,), 0.5))
    assert w.shape == (2, dim, *(16,) * dim) and torch.count_nonzero(w) > 0
    assert seen[0].shape[2:] == (8,) * dim  # the output layer ran on the coarse grid
    mode = "bilinear" if dim == 2 else "trilinear"
    assert torch.allclose(w, torch.nn.functional.interpolate(seen[0], size=x.shape[2:], mode=mode), atol=1e-6)
    with pytest.raises(ShapeNotDivisibleError, match="divisible"):
        net(torch.rand(1, 1, *(18,) * dim), torch.rand(1))  # 18 = 2 * 9: fine for the blocks' 2, not for stem 2 x 2
    with pytest.raises(ValueError, match="stem"):
        RecoveryUNet(dim, 1, (4, 8), stem=0)


def test_a_tiny_network_learns_to_recover():
    """End to end: 120 steps on one image beat the zero prediction (loss 2) clearly."""
    torch.manual_seed(0)
    process = DeformationProcess(grids=(4, 8))
    net = RecoveryUNet(2, 1, (8, 16))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x0, g = checkerboard(32), torch.Generator().manual_seed(0)
    for _ in range(120):
        loss = process.loss(net, x0, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = process.loss(net, checkerboard(32, 16), generator=torch.Generator().manual_seed(99)).mean()
    assert float(final) < 1.6
