"""EGNN (EDM variant): E(3) and permutation symmetry, masking of padded atoms, zero-CoM helpers."""

import pytest
import torch

from sciogen.nn import EGNN, check_mean_zero, equivariant_displacement, remove_mean

F64 = torch.float64
COUNTS = (5, 3, 1, 4)  # real atoms per molecule: padding, and a single atom without edges


def _model(seed=0, **kw):
    """A float64 EGNN whose near-zero coordinate heads are re-drawn, so coordinates really move."""
    torch.manual_seed(seed)
    model = EGNN(4, hidden=16, layers=2, **kw).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for block in model.blocks:
            w = block.coord.mlp[-1].weight
            w.copy_(0.3 * torch.randn(w.shape, generator=g, dtype=F64))
    return model


def _batch(seed=0, counts=COUNTS, n=6, garbage=0.0):
    """h, x, node_mask for molecules of ``counts`` atoms padded to ``n``; padded inputs hold ``garbage``."""
    g = torch.Generator().manual_seed(seed)
    b = len(counts)
    mask = torch.arange(n)[None, :] < torch.tensor(counts)[:, None]
    h = torch.randn(b, n, 4, generator=g, dtype=F64)
    x = 2.0 * torch.randn(b, n, 3, generator=g, dtype=F64)
    h = torch.where(mask[..., None], h, garbage)
    x = torch.where(mask[..., None], x, garbage)
    return h, x, mask


def _orthogonal(seed, reflect):
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=F64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
    if (torch.linalg.det(q) < 0) != reflect:
        q = q.clone()
        q[:, 0] = -q[:, 0]
    return q


def _moves(model, h, x, mask):
    """Largest coordinate update, so a symmetry test cannot pass because nothing moved."""
    with torch.no_grad():
        _, x_out = model(h, x, mask)
    return float((x_out - x)[mask].abs().max())


def _pair(pair, hi, hj, e):
    """The pair layer as the plain ``Linear([h_i, h_j, e_ij])`` of the paper."""
    w = torch.cat([pair.source.weight, pair.target.weight, pair.edge.weight], dim=1)
    return torch.cat([hi, hj, e]) @ w.T + pair.source.bias


def _reference(model, h, x, n):
    """EGNN (EDM variant) of one molecule of ``n`` real atoms, written edge by edge from the equations."""
    h, x0 = model.embedding(h[:n]), x[:n]
    xl = x0.clone()
    c, mean = model.norm_constant, model.aggregation == "mean"
    z = [max(n - 1, 1) if mean else model.normalization_factor] * n
    for block in model.blocks:
        d2 = lambda a, i, j: ((a[i] - a[j]) ** 2).sum()[None]
        e = {(i, j): torch.cat([model._distance(d2(xl, i, j)), model._distance(d2(x0, i, j))])
             for i in range(n) for j in range(n) if i != j}
        for layer in block.layers:
            new = []
            for i in range(n):
                agg = torch.zeros_like(h[i])
                for j in range(n):
                    if j != i:
                        m = layer.edge_mlp(_pair(layer.edge_in, h[i], h[j], e[i, j]))
                        agg = agg + (m * layer.gate(m) if layer.gate is not None else m)
                new.append(h[i] + layer.node_mlp(torch.cat([h[i], agg / z[i]])))
            h = torch.stack(new)
        moved = []
        for i in range(n):
            step = torch.zeros(3, dtype=x.dtype)
            for j in range(n):
                if j != i:
                    phi = block.coord.mlp(_pair(block.coord.edge_in, h[i], h[j], e[i, j]))
                    phi = block.coord.coords_range * torch.tanh(phi) if block.coord.tanh else phi
                    step = step + (xl[i] - xl[j]) / (torch.sqrt(d2(xl, i, j) + 1e-8) + c) * phi
            moved.append(xl[i] + step / z[i])
        xl = torch.stack(moved)
    return model.embedding_out(h), x0 + (xl - x0) - (xl - x0).mean(0)


@pytest.mark.parametrize("kw", [{}, {"sin_embedding": True, "aggregation": "mean", "tanh": False, "attention": False},
                                {"normalization_factor": 100.0, "norm_constant": 0.0}], ids=["edm", "sin-mean", "nf100-c0"])
def test_matches_edge_by_edge_equations(kw):
    model = _model(**kw)
    h, x, mask = _batch()
    with torch.no_grad():
        h_out, x_out = model(h, x, mask)
        for b, n in enumerate(COUNTS):
            h_ref, x_ref = _reference(model, h[b], x[b], n)
            torch.testing.assert_close(h_out[b, :n], h_ref, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(x_out[b, :n], x_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
@pytest.mark.parametrize("kw", [{}, {"sin_embedding": True, "aggregation": "mean", "tanh": False, "attention": False}],
                         ids=["edm", "sin-mean-notanh-noattn"])
def test_e3_equivariance(reflect, kw):
    model = _model(**kw)
    h, x, mask = _batch()
    assert _moves(model, h, x, mask) > 1e-2
    q = _orthogonal(3, reflect)
    assert torch.isclose(torch.linalg.det(q), torch.tensor(-1.0 if reflect else 1.0, dtype=F64))
    shift = torch.tensor([1.5, -2.0, 0.7], dtype=F64)
    h_out, x_out = model(h, x, mask)
    h_rot, x_rot = model(h, torch.where(mask[..., None], x @ q.T + shift, 0.0), mask)
    torch.testing.assert_close(h_rot, h_out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x_rot, torch.where(mask[..., None], x_out @ q.T + shift, 0.0), rtol=1e-9, atol=1e-9)


def test_translation_leaves_displacement_and_features_unchanged():
    model = _model()
    h, x, mask = _batch()
    h_out, x_out = model(h, x, mask)
    shift = torch.tensor([10.0, -3.0, 4.0], dtype=F64)
    h_t, x_t = model(h, x + shift, mask)
    torch.testing.assert_close(h_t, h_out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(equivariant_displacement(x_t, x + shift, mask), equivariant_displacement(x_out, x, mask))


def test_wrong_transformation_is_detected():
    # the symmetry tests can fail: a non-orthogonal map of the input changes h_out
    model = _model()
    h, x, mask = _batch()
    scale = torch.diag(torch.tensor([1.0, 2.0, 1.0], dtype=F64))
    h_out, _ = model(h, x, mask)
    h_bad, _ = model(h, x @ scale, mask)
    assert (h_bad - h_out).abs().max() > 1e-3


def test_permutation_equivariance_with_edge_attributes():
    torch.manual_seed(0)
    model = _model(edge_features=2)
    h, x, mask = _batch()
    e = torch.randn(*mask.shape, mask.shape[1], 2, dtype=F64)
    perm = torch.randperm(mask.shape[1])
    h_out, x_out = model(h, x, mask, edge_attr=e)
    h_p, x_p = model(h[:, perm], x[:, perm], mask[:, perm], edge_attr=e[:, perm][:, :, perm])
    torch.testing.assert_close(h_p, h_out[:, perm], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x_p, x_out[:, perm], rtol=1e-9, atol=1e-9)
    # the edge attributes are used
    h_e, _ = model(h, x, mask, edge_attr=e + 1.0)
    assert (h_e - h_out)[mask].abs().max() > 1e-3


@pytest.mark.parametrize("garbage", [7.0, float("nan"), float("inf")])
def test_padded_atoms_do_not_influence_real_ones(garbage):
    model = _model(edge_features=1)
    h, x, mask = _batch()
    e = torch.randn(*mask.shape, mask.shape[1], 1, dtype=F64, generator=torch.Generator().manual_seed(1))
    e_bad = e.clone()
    e_bad[~(mask[:, :, None] & mask[:, None, :])] = garbage
    h_ref, x_ref = model(h, x, mask, edge_attr=e)
    h_g, x_g = model(*_batch(garbage=garbage), edge_attr=e_bad)
    assert torch.equal(h_g, h_ref) and torch.equal(x_g, x_ref)
    pad = ~mask
    assert torch.equal(h_g[pad], torch.zeros_like(h_g[pad])) and torch.equal(x_g[pad], torch.zeros_like(x_g[pad]))
    assert bool(torch.isfinite(h_g).all() and torch.isfinite(x_g).all())


def test_molecules_in_a_batch_are_independent():
    model = _model()
    h, x, mask = _batch()
    h_all, x_all = model(h, x, mask)
    h_one, x_one = model(h[1:2, :3], x[1:2, :3], mask[1:2, :3])  # molecule 1 alone, without padding
    torch.testing.assert_close(h_one, h_all[1:2, :3], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_one, x_all[1:2, :3], rtol=1e-10, atol=1e-10)


def test_coordinate_output_keeps_the_centre_of_mass():
    model = _model()
    h, x, mask = _batch()
    x = remove_mean(x, mask)
    check_mean_zero(x, mask, atol=1e-12)
    _, x_out = model(h, x, mask)
    check_mean_zero(x_out, mask, atol=1e-12)  # a zero-CoM input stays in the zero-CoM subspace
    eps = equivariant_displacement(x_out, x, mask)
    check_mean_zero(eps, mask, atol=1e-12)
    torch.testing.assert_close(eps, x_out - x)


def test_remove_mean_and_check_mean_zero():
    h, x, mask = _batch(garbage=float("nan"))
    y = remove_mean(x, mask)
    n = mask.sum(1, keepdim=True)
    torch.testing.assert_close(y.sum(1) / n, torch.zeros(len(COUNTS), 3, dtype=F64), rtol=0, atol=1e-12)
    assert torch.equal(y[~mask], torch.zeros_like(y[~mask]))
    torch.testing.assert_close(y[mask], (x - torch.nan_to_num(x, nan=0.0).sum(1, keepdim=True) / n[..., None])[mask])
    torch.testing.assert_close(remove_mean(y, mask), y)  # a projection
    assert torch.equal(y[2, 0], torch.zeros(3, dtype=F64))  # a single atom sits at the origin
    with pytest.raises(ValueError, match="molecule 0 has \\|mean\\|"):
        check_mean_zero(torch.where(mask[..., None], y + 1.0, 0.0), mask)
    with pytest.raises(ValueError, match="not masked: molecule 1"):
        check_mean_zero(torch.where(mask[..., None], y, torch.tensor([[0.0], [1.0], [0.0], [0.0]], dtype=F64)[:, :, None]), mask)
    with pytest.raises(ValueError, match="node_mask must have shape"):
        remove_mean(x, mask[:, :4])


def test_single_atom_molecule_and_empty_molecule():
    model = _model()
    h, x, mask = _batch(counts=(1, 0), n=3)
    h_out, x_out = model(h, x, mask)
    assert bool(torch.isfinite(h_out).all() and torch.isfinite(x_out).all())
    assert torch.equal(x_out[0, 0], x[0, 0])  # no edges: the atom does not move
    assert torch.equal(h_out[1], torch.zeros_like(h_out[1])) and torch.equal(x_out[1], torch.zeros_like(x_out[1]))
    # moved elsewhere, it stays there, and its features do not depend on where it is
    h_far, x_far = model(h[:1], x[:1] + 5.0 * mask[:1, :, None], mask[:1])
    torch.testing.assert_close(x_far[0, 0], x[0, 0] + 5.0, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_far, h_out[:1], rtol=0, atol=1e-12)


def test_gradients_flow_to_parameters_and_inputs():
    model = _model(sin_embedding=True)
    h, x, mask = _batch()
    x[0, 1] = x[0, 0]  # two coincident atoms: the square roots must stay differentiable
    x = x.clone().requires_grad_(True)
    h = h.clone().requires_grad_(True)
    h_out, x_out = model(h, x, mask)
    (h_out.pow(2).sum() + equivariant_displacement(x_out, x, mask).pow(2).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().sum() > 0, name
    assert bool(torch.isfinite(x.grad).all()) and x.grad[mask].abs().sum() > 0
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))
    assert torch.equal(h.grad[~mask], torch.zeros_like(h.grad[~mask]))


def test_float32_model_and_output_shapes():
    torch.manual_seed(0)
    model = EGNN(4, hidden=8, layers=2, out_node_features=2)
    h, x, mask = _batch()
    h_out, x_out = model(h.float(), x.float(), mask)
    assert h_out.shape == (4, 6, 2) and h_out.dtype == torch.float32 and x_out.shape == (4, 6, 3)
    assert x_out.dtype == torch.float32
    check_mean_zero(x_out - x.float().masked_fill(~mask[..., None], 0.0), mask, atol=1e-5)


def test_bad_inputs_raise_value_errors():
    model = _model(edge_features=2)
    h, x, mask = _batch()
    e = torch.zeros(*mask.shape, mask.shape[1], 2, dtype=F64)
    with pytest.raises(ValueError, match="^x must have shape"):
        model(h, x[..., :2], mask, e)
    with pytest.raises(ValueError, match="^x must have shape"):
        model(h, x[:, :5], mask, e)
    with pytest.raises(ValueError, match="^node_mask must have shape"):
        model(h, x, mask[:, :5], e)
    with pytest.raises(ValueError, match="^node_mask must have shape"):
        model(h, x, mask[:3], e)
    with pytest.raises(ValueError, match="^h must have shape .*node_features=4"):
        model(h[..., :3], x, mask, e)
    with pytest.raises(ValueError, match="^h must have shape"):
        model(h[0], x, mask, e)
    with pytest.raises(ValueError, match="^edge_attr .* is required"):
        model(h, x, mask)
    with pytest.raises(ValueError, match="^edge_attr must have shape"):
        model(h, x, mask, e[..., :1])
    with pytest.raises(ValueError, match="^edge_attr was given"):
        _model()(h, x, mask, e)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        EGNN(4, aggregation="max")
    with pytest.raises(ValueError, match="layers must be >= 1"):
        EGNN(4, layers=0)
