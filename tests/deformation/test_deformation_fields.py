"""Displacement fields: warping, integration, composition, Jacobians (2D and 3D side by side)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciogen.deformation.fields import (  # noqa: E402
    compose,
    fraction_to_voxels,
    integrate_velocity,
    jacobian_determinant,
    limit_folding,
    multiscale_noise,
    voxels_to_fraction,
    warp,
)
from sciogen.deformation.metrics import interior  # noqa: E402
from sciogen.deformation.process import DeformationProcess  # noqa: E402

SHAPES = {2: (40, 36), 3: (20, 18, 16)}


def smooth_field(dim: int, scale: float, seed: int = 0, batch: int = 1, grids=(4, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return fraction_to_voxels(scale * multiscale_noise(batch, SHAPES[dim], grids, generator=g))


def image(dim: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 2, *SHAPES[dim], generator=g)


def smooth_image(dim: int) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.linspace(0, 3, n) for n in SHAPES[dim]], indexing="ij"))
    return torch.sin(grid).prod(0)[None, None]


@pytest.mark.parametrize("dim", [2, 3])
def test_zero_field_is_identity(dim):
    x = image(dim)
    assert torch.allclose(warp(x, torch.zeros(1, dim, *SHAPES[dim])), x, atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_warp_matches_monai_warp(dim, mode):
    from monai.networks.blocks import Warp

    x, u = image(dim), smooth_field(dim, 0.05)
    expected = Warp(mode=mode, padding_mode="border")(x, u)
    assert torch.allclose(warp(x, u, mode=mode), expected, atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_integration_matches_monai_dvf2ddf(dim):
    from monai.networks.blocks import DVF2DDF

    v = smooth_field(dim, 0.08)
    expected = DVF2DDF(num_steps=7, padding_mode="border")(v)
    assert torch.allclose(integrate_velocity(v, steps=7), expected, atol=1e-4)


@pytest.mark.parametrize("dim", [2, 3])
def test_exp_of_constant_velocity_is_the_translation(dim):
    v = torch.zeros(1, dim, *SHAPES[dim])
    v[:, 0] = 1.5
    u = integrate_velocity(v)
    assert torch.allclose(interior(u, 3, dim), interior(v, 3, dim), atol=1e-5)


@pytest.mark.parametrize("dim", [2, 3])
def test_exp_minus_v_inverts_exp_v(dim):
    v = smooth_field(dim, 0.06, grids=(4,))
    residual = compose(integrate_velocity(-v), integrate_velocity(v))
    moved = integrate_velocity(v).norm(dim=1).mean()
    assert interior(residual, 3, dim).norm(dim=1).mean() < 0.05 * moved


@pytest.mark.parametrize("dim", [2, 3])
def test_compose_matches_two_warps(dim):
    x = smooth_image(dim)
    a, b = smooth_field(dim, 0.1, seed=2, grids=(4,)), smooth_field(dim, 0.1, seed=3, grids=(4,))
    twice = warp(warp(x, b), a)
    once = warp(x, compose(b, a))
    zero_order = warp(x, a + b)  # the naive sum is worse than the composition
    err_once = interior(twice - once, 4, dim).abs().mean()
    err_sum = interior(twice - zero_order, 4, dim).abs().mean()
    assert err_once < 0.25 * err_sum


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_of_a_linear_field_is_exact(dim):
    g = torch.Generator().manual_seed(0)
    a = 0.3 * torch.randn(dim, dim, generator=g, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in SHAPES[dim]], indexing="ij"))
    u = torch.einsum("ij,j...->i...", a, grid)[None]
    det = jacobian_determinant(u)
    assert torch.allclose(det, torch.det(torch.eye(dim, dtype=torch.float64) + a).expand_as(det), atol=1e-9)


@pytest.mark.parametrize("dim", [2, 3])
def test_jacobian_matches_simpleitk(dim):
    """Cross-check with SimpleITK's DisplacementFieldJacobianDeterminantFilter (interior voxels)."""
    sitk = pytest.importorskip("SimpleITK")
    for seed in range(3):
        u = smooth_field(dim, 0.15, seed=seed).double()  # strong enough to contain folds
        arr = u[0].numpy()  # (D, *S), channel i along axis i
        # ITK: numpy axes (z, y, x) are image axes (x, y, z) reversed, vector components in x, y, z order
        img = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(arr[::-1], 0, -1)), isVector=True)
        det_itk = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(img))
        ours = jacobian_determinant(u)[0].numpy()
        inner = (slice(1, -1),) * dim
        np.testing.assert_allclose(ours[inner], det_itk[inner], atol=1e-4)
        assert (ours[inner] <= 0).any() or seed > 0  # the test field really has folds for seed 0


def test_multiscale_noise_is_reproducible_and_smooth():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = multiscale_noise(2, (32, 32), (4, 8, 16, 64), generator=g1)
    b = multiscale_noise(2, (32, 32), (4, 8, 16, 64), generator=g2)
    assert torch.equal(a, b) and a.shape == (2, 2, 32, 32)
    assert not torch.equal(a[0], a[1])
    # the 64-grid is capped at half the side: neighbouring voxels stay correlated
    assert (a[..., 1:, :] - a[..., :-1, :]).std() < 0.5 * a.std()
    with pytest.raises(ValueError, match="grids"):
        multiscale_noise(1, (8, 8), (), generator=g1)


@pytest.mark.parametrize("dim,size", [(2, 64), (3, 32)])
def test_forward_process_is_folding_free_at_full_level(dim, size):
    process = DeformationProcess()
    g = torch.Generator().manual_seed(0)
    eps = process.noise(4, (size,) * dim, generator=g)
    u = integrate_velocity(process.velocity(eps, torch.ones(4)))
    assert float(jacobian_determinant(u).min()) > 0
    assert float(voxels_to_fraction(u).norm(dim=1).amax()) > 0.10  # and it moves > 10 % of the side


@pytest.mark.parametrize("dim", [2, 3])
def test_limit_folding_projects_onto_positive_determinants(dim):
    folded = smooth_field(dim, 0.4, batch=2)
    folded[1] *= 0.01  # second field: tiny, already fine
    assert float(jacobian_determinant(folded[:1]).min()) < 0
    out, lam = limit_folding(folded, min_det=0.1)
    assert float(jacobian_determinant(out).min()) >= 0.1 - 1e-6
    assert 0 < lam[0] < 1 and lam[1] == 1 and torch.equal(out[1], folded[1])


def test_fraction_round_trip_and_errors():
    u = smooth_field(3, 0.1)
    assert torch.allclose(fraction_to_voxels(voxels_to_fraction(u)), u)
    with pytest.raises(ValueError, match="shape"):
        warp(torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mode"):
        warp(torch.rand(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), mode="bicubic")
