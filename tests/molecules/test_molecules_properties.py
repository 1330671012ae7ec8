"""The QM9 property predictor that scores property-conditioned samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch  # noqa: E402

from sciogen.config import ConfigError, from_dict  # noqa: E402
from sciogen.molecules import UnknownAtomTypeError  # noqa: E402
from sciogen.molecules.properties import (  # noqa: E402
    PropertyModelConfig,
    PropertyNet,
    PropertyPredictor,
    PropertyRunConfig,
    featurize,
    load_property_predictor,
    train_property_predictor,
)

ELEMENTS = ("C", "N", "O", "F")


def test_features_do_not_depend_on_how_the_molecule_was_written():
    from rdkit import Chem

    a, b = featurize("OCC(=O)N", ELEMENTS), featurize(Chem.MolFromSmiles("NC(=O)CO"), ELEMENTS)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_attr, b.edge_attr)
    assert a.x.shape[0] == 5 and a.edge_index.shape == (2, 8) and a.edge_attr.shape == (8, 6)
    ring = featurize("C1CC1", ELEMENTS)
    assert ring.x[:, -5].eq(1).all()  # every atom is in a 3-ring


def test_unknown_element_is_named_with_its_index():
    with pytest.raises(UnknownAtomTypeError, match=r"element S \(molecule 3\)"):
        featurize("CS", ELEMENTS, index=3)
    predictor = PropertyPredictor(PropertyModelConfig(hidden=8, layers=1))
    with pytest.raises(UnknownAtomTypeError, match=r"molecule 1"):
        predictor.predict(["CC", "CCl"])


def test_network_is_invariant_to_atom_order():
    torch.manual_seed(0)
    net = PropertyNet(PropertyModelConfig(hidden=16, layers=2)).eval()
    g = featurize("CC(O)C1=NC=CO1", ELEMENTS)
    perm = torch.randperm(g.num_nodes)
    inverse = torch.argsort(perm)
    h = g.clone()
    h.x = g.x[perm]
    h.edge_index = inverse[g.edge_index]
    out_g, out_h = net(Batch.from_data_list([g])), net(Batch.from_data_list([h]))
    assert torch.allclose(out_g, out_h, atol=1e-5)


def test_predict_save_load_and_errors(tmp_path):
    torch.manual_seed(0)
    predictor = PropertyPredictor(PropertyModelConfig(properties=("mu", "gap"), hidden=8, layers=1),
                                  mean=torch.tensor([2.0, 0.25]), std=torch.tensor([1.5, 0.05]))
    values = predictor.predict(["CCO", None, "c1ccoc1"])
    assert values.shape == (3, 2) and np.isnan(values[1]).all() and np.isfinite(values[[0, 2]]).all()
    assert np.allclose(predictor.predict(["CCO", None, "c1ccoc1"], "gap"), values[:, 1], equal_nan=True)
    with pytest.raises(ValueError, match="'homo' is not predicted"):
        predictor.predict(["CCO"], "homo")
    path = predictor.save(tmp_path / "p.pt")
    again = PropertyPredictor.load(path)
    assert again.properties == ("mu", "gap")
    assert np.allclose(again.predict(["CCO", None, "c1ccoc1"]), values, equal_nan=True)
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a sciogen checkpoint"):
        PropertyPredictor.load(tmp_path / "bad.pt")
    # files of the older format (before predictors were sciogen checkpoints) still load
    old = {"format": "sciogen-molecule-properties", "config": again.config.__dict__ | {}, "mean": again.mean,
           "std": again.std, "model": again.net.state_dict(), "metadata": {}}
    old["config"] = __import__("sciogen.config", fromlist=["to_dict"]).to_dict(again.config)
    torch.save(old, tmp_path / "old.pt")
    assert np.allclose(PropertyPredictor.load(tmp_path / "old.pt").predict(["CCO"]), values[:1])


def test_predictors_go_through_the_registry(tmp_path):
    import sciogen
    from sciogen.registry import available_predictors, read_predictor
    from sciogen.train.checkpoint import CheckpointError

    assert "molecules/qm9-properties" in available_predictors()
    checkpoint, where = read_predictor("molecules/qm9-properties", "molecules")
    assert checkpoint["kind"] == "predictor" and where == "molecules/qm9-properties"
    shipped = load_property_predictor("qm9")
    assert set(shipped.properties) >= {"gap", "mu"} and shipped.metadata["test_mae"]
    with pytest.raises(ValueError, match="is a molecules property predictor, not a generator"):
        sciogen.load(shipped.save(tmp_path / "p.pt"))
    with pytest.raises(CheckpointError, match="is a toy generator, not a molecules property predictor"):
        read_predictor(sciogen.load("toy/gmm").save(tmp_path / "g.pt"), "molecules")
    with pytest.raises(sciogen.registry.UnknownNameError, match="shipped predictors: molecules/qm9-properties"):
        load_property_predictor("zinc")
    with pytest.raises(ConfigError, match="unknown \\['qed'\\]"):
        PropertyModelConfig(properties=("qed",))


def test_short_training_beats_the_mean(shared_datasets):
    """200 steps on 2,000 QM9 molecules must predict gap and mu better than their mean does."""
    folder = shared_datasets / "molecules" / "qm9"
    config = from_dict(PropertyRunConfig, {
        "model": {"properties": ["mu", "gap"], "hidden": 32, "layers": 3},
        "data": {"path": str(folder), "limit": 2000},
        "train": {"steps": 200, "batch_size": 64, "lr": 2e-3, "progress": False, "tensorboard": False},
    })
    predictor, report = train_property_predictor(config)
    from sciogen.molecules import load_qm9

    test = load_qm9("test", path=folder, limit=2000)
    y = torch.cat([g.y for g in test.graphs])[:, [0, 4]].numpy()
    mean_mae = np.abs(y - predictor.mean.numpy()).mean(0)
    assert report["test_mae"]["gap"] < 0.75 * mean_mae[1]
    assert report["test_mae"]["mu"] < 0.9 * mean_mae[0]
    assert report["train_molecules"] == 2000 and report["steps"] == 200


def test_shipped_predictor_on_held_out_qm9(shared_datasets):
    from sciogen.molecules import load_qm9

    predictor = load_property_predictor("qm9")
    test = load_qm9("test", path=shared_datasets / "molecules" / "qm9", limit=1000)
    predicted = predictor.predict(test.smiles)
    truth = torch.cat([g.y for g in test.graphs]).numpy()
    mae = np.abs(predicted - truth).mean(0)
    spread = np.abs(truth - truth.mean(0)).mean(0)
    # far better than the mean on every property (gap: DiGress-scale regressors reach ~0.1-0.2 eV)
    assert (mae < 0.35 * spread).all(), dict(zip(predictor.properties, mae / spread))
    assert mae[predictor.properties.index("gap")] < 0.01  # hartree
    with pytest.raises(LookupError, match="'molecules/zinc-properties' is neither a predictor file nor a shipped predictor"):
        load_property_predictor("zinc")
