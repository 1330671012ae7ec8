"""Field metrics: folding %, determinants, magnitude in % of the side, bending energy."""

from __future__ import annotations

import pytest
import torch

from sciogen.deformation import evaluate, field_metrics, folding_fraction  # noqa: E402


@pytest.mark.parametrize("dim", [2, 3])
def test_translation(dim):
    shape = (20,) * dim
    u = torch.zeros(1, dim, *shape)
    u[:, 0] = 2.0  # 2 voxels along axis 0 = 10 % of a 20-voxel side
    m = field_metrics(u)
    assert m["folding_pct"] == 0 and m["min_det"] == pytest.approx(1.0)
    assert m["mean_disp_pct"] == pytest.approx(10.0) and m["max_disp_pct"] == pytest.approx(10.0)
    assert m["mean_disp_vox"] == pytest.approx(2.0) and m["bending_energy"] == pytest.approx(0.0, abs=1e-10)


def test_folding_counts_only_interior_voxels():
    u = torch.zeros(1, 2, 20, 20)
    u[0, 0, 5, 5], u[0, 0, 6, 5] = 1.5, -1.5  # a local fold: neighbours cross
    u[0, 0, 0, :] = 5.0  # garbage on the border row, excluded by the border
    frac = float(folding_fraction(u))
    assert 0 < frac < 0.1
    m = field_metrics(u)
    assert m["folding_pct"] == pytest.approx(frac * 100) and m["min_det"] < 0


def test_evaluate_accepts_tensors_lists_and_sample_dicts():
    u = torch.zeros(3, 2, 10, 14)
    u[:, 1] = 1.4  # 10 % of the 14-voxel side along axis 1
    as_tensor = evaluate(u)
    as_list = evaluate([f for f in u])
    as_dicts = evaluate([{"ddf": f, "image": None} for f in u])
    assert as_tensor == as_list == as_dicts
    assert as_tensor["n"] == 3 and as_tensor["mean_disp_pct"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="shape"):
        evaluate(torch.zeros(1, 3, 10, 10))
