"""Dataset loaders: the DiGress / PARD QM9 split, properties, MOSES, user SMILES."""

from __future__ import annotations

import numpy as np
import pytest

from sciogen.molecules import MoleculeSpec, from_smiles, load_moses, load_qm9, qm9_split  # noqa: E402
from sciogen.molecules.datasets import load_zinc250k  # noqa: E402


def test_qm9_split_matches_pandas_sample():
    pd = pytest.importorskip("pandas")
    split = qm9_split()
    rows = pd.DataFrame({"r": np.arange(133_885)}).sample(frac=1, random_state=42).index.to_numpy()
    assert np.array_equal(split["train"], rows[:100_000] + 1)
    assert np.array_equal(split["test"], rows[-13_388:] + 1)
    assert len(split["val"]) == 20_497
    assert len(set(np.concatenate(list(split.values())))) == 133_885


def test_qm9_split_sizes_and_properties(shared_datasets):
    folder = shared_datasets / "molecules" / "qm9"
    test = load_qm9("test", path=folder, graphs=False)
    assert len(test) == 13_055  # 13,388 minus the uncharacterized molecules
    assert set(test.ids) <= set(qm9_split()["test"].tolist())
    head = load_qm9("test", path=folder, limit=20)
    assert head.ids == test.ids[:20] and head.smiles == test.smiles[:20]
    g = head[0]
    assert g.y.shape == (1, 6) and head.property_names == ("mu", "alpha", "homo", "lumo", "gap", "cv")
    assert head.spec.to_smiles(g) == g.smiles
    gap = head[0].y[0, 4].item()
    assert 0.05 < gap < 1.0  # hartree


def test_moses_local_copy(shared_datasets):
    data = load_moses("test", path=shared_datasets / "molecules" / "moses", limit=50)
    assert len(data) == 50 and data.spec == MoleculeSpec.moses()


def test_missing_copies_give_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_zinc250k("train")


def test_from_smiles_skip_and_report():
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        data = from_smiles(["CCO", "C1CC", "CCN"], MoleculeSpec.qm9(), on_error="skip")
    assert data.smiles == ["CCO", "CCN"] and data.skipped[0].index == 1
    with pytest.raises(ValueError, match=r"molecule 1 \('C1CC'\)"):
        from_smiles(["CCO", "C1CC"], MoleculeSpec.qm9())
