"""Molecule metrics: DiGress calibration, relaxed validity, FCD cache, MOSES set, null model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciogen.molecules import MoleculeSpec, NullModel, evaluate, sample_smiles  # noqa: E402
from sciogen.molecules.metrics import FCDReference, fcd, validity_metrics  # noqa: E402
from sciogen.molecules.moses_metrics import (  # noqa: E402
    MosesFilters,
    MosesReference,
    count_cosine,
    internal_diversity,
    load_filters,
    moses_metrics,
)


def _digress_graphs(shared_datasets):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from molecules import read_digress_graphs

    return read_digress_graphs(shared_datasets / "molecules" / "reference_samples" / "digress_samples_qm9_no_h.txt")


def test_calibration_on_digress_qm9_samples(shared_datasets):
    graphs = _digress_graphs(shared_datasets)
    assert len(graphs) == 10_000
    strict, relaxed = sample_smiles(graphs, MoleculeSpec.qm9(charges=False))
    m = validity_metrics(strict, relaxed)
    assert abs(100 * m["validity"] - 99.2) <= 0.2
    assert abs(100 * m["uniqueness"] - 96.9) <= 0.2
    # the published SMILES file of the same run ("None" = invalid) agrees
    lines = (shared_datasets / "molecules" / "reference_samples" / "digress_final_smiles_qm9_noH.txt").read_text().split()
    s, _ = sample_smiles(lines)
    assert sum(x is not None for x in s) == sum(x is not None for x in strict)


def test_relaxed_rule_charges_a_tetravalent_nitrogen():
    spec = MoleculeSpec.qm9(charges=False)
    x = torch.tensor([1, 0, 0, 0, 0])  # N bonded to four carbons
    e = torch.zeros(5, 5, dtype=torch.long)
    e[0, 1:] = 1
    e = e + e.T
    strict, relaxed = sample_smiles([(x, e)], spec)
    assert strict == [None] and relaxed == ["C[N+](C)(C)C"]
    # a pentavalent carbon stays invalid either way
    x = torch.zeros(6, dtype=torch.long)
    e = torch.zeros(6, 6, dtype=torch.long)
    e[0, 1:] = 1
    e = e + e.T
    assert sample_smiles([(x, e)], spec) == ([None], [None])


def test_largest_fragment_and_uniqueness_novelty():
    spec = MoleculeSpec.qm9()
    graphs = spec.to_graphs(["CCO", "CCO", "CC.O", "C1CC1"])
    m = evaluate(graphs, spec, train_smiles=["CCO"], fcd=False, properties=False)
    assert m["validity"] == 1.0
    assert m["uniqueness"] == pytest.approx(3 / 4)  # CCO, CCO, CC (largest fragment of CC.O), C1CC1
    assert m["novelty"] == pytest.approx(2 / 3)  # CC and C1CC1 are not in the training set


def test_smiles_and_none_samples():
    m = evaluate(["CCO", "None", None, "C1CC"], fcd=False, properties=False)
    assert m["validity"] == 0.25 and m["uniqueness"] == 1.0


def test_fcd_cache_and_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path))
    ref = ["CCO", "CCN", "CCC", "CCOC", "c1ccccc1", "CC(=O)O", "CN", "OCCO", "C1CCCC1", "CC#N"] * 3
    r = FCDReference.from_smiles(ref)
    files = list((tmp_path / "molecules" / "fcd").glob("*.npz"))
    assert len(files) == 1
    again = FCDReference.from_smiles(list(reversed(ref)))  # order does not matter: read from the cache
    assert np.array_equal(again.mu, r.mu)
    assert fcd(ref, r) == pytest.approx(0.0, abs=1e-3)
    assert fcd(["CCCCCCCCCCCCCCCC", "CCCCCCCCCCCCCCC", "FC(F)(F)C(F)(F)F", "ClCCl"], r) > 5.0


def test_moses_metrics_identities():
    smiles = ["CCOc1ccccc1", "CC(=O)Nc1ccc(O)cc1", "c1ccc2ccccc2c1", "CCN(CC)CC"]
    assert internal_diversity(smiles[:1] * 3) == pytest.approx(0.0)
    ref = MosesReference.from_smiles(smiles)
    m = moses_metrics(smiles, ref, filters=MosesFilters([]))
    assert m["snn"] == pytest.approx(1.0)
    assert m["frag"] == pytest.approx(1.0) and m["scaf"] == pytest.approx(1.0)
    assert 0 < m["intdiv2"] <= m["intdiv"] < 1  # (mean T^2)^(1/2) >= mean T
    assert count_cosine({}, {"a": 1}) != count_cosine({}, {"a": 1})  # NaN
    rules = MosesFilters([])
    assert rules.passes("CCO") and not rules.passes("C[NH3+]") and not rules.passes("C1CCCCCCC1") and not rules.passes("CCP")


def test_moses_filters_from_cache_or_wheel(shared_datasets):
    try:
        filters = load_filters()
    except FileNotFoundError as err:
        pytest.skip(f"MOSES filter files not cached ({err})")
    assert len(filters.patterns) == 502
    assert not filters.passes("C=CC#N")  # MCF1: alpha,beta-unsaturated nitrile
    assert filters.passes("CC(=O)Nc1ccc(O)cc1")


def test_null_model_reproducible_and_marginal(shared_datasets):
    from sciogen.molecules import load_qm9

    data = load_qm9("train", path=shared_datasets / "molecules" / "qm9", limit=2000, properties=False)
    spec = data.spec
    null = NullModel.fit(data.graphs, spec)
    assert null.atom_probs.sum().item() == pytest.approx(1.0)
    a = null.sample(300, generator=torch.Generator().manual_seed(0))
    b = null.sample(300, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x.x, y.x) and torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))
    freq = torch.bincount(torch.cat([g.x for g in a]), minlength=spec.num_atom_types).double()
    assert (freq / freq.sum() - null.atom_probs).abs().max() < 0.05
    m = evaluate(a, spec, fcd=False, properties=False)
    assert m["validity"] < 0.5  # no structure learned
