"""Molecules reliability (issue 22): valid-only SMILES / SDF files, a CSV that keeps invalid rows,
non-finite network output named by block and step, sample arguments checked before any work,
disconnected graphs: 'connected' as its own metric, and what is written decided by a flag."""

import math

import pytest
import torch  # noqa: E402
from rdkit import Chem  # noqa: E402

from sciogen.molecules import MoleculeGenerator  # noqa: E402

from .test_molecules_generator import tiny_config  # noqa: E402

MOLS = [Chem.MolFromSmiles("CCO"), None, Chem.MolFromSmiles("c1ccccc1")]


@pytest.fixture
def gen():
    g = MoleculeGenerator(tiny_config())
    g.cond_mean, g.cond_std = torch.zeros(2), torch.ones(2)
    return g


@pytest.mark.parametrize("suffix", [".smi", ".txt", ".sdf"])
def test_smiles_and_sdf_files_hold_valid_molecules_only(tmp_path, capsys, suffix):
    path = MoleculeGenerator.write_samples(MOLS, tmp_path / f"out{suffix}")
    assert "1 of 3 molecules are invalid and were not written" in capsys.readouterr().err
    text = path.read_text()
    assert "None" not in text and "invalid" not in text
    if suffix == ".sdf":
        mols = list(Chem.SDMolSupplier(str(path)))
    else:
        supplier = Chem.SmilesMolSupplier(str(path), titleLine=False, nameColumn=-1)
        mols = [supplier[i] for i in range(len(supplier))]
    assert [Chem.MolToSmiles(m) for m in mols] == ["CCO", "c1ccccc1"]


def test_csv_keeps_every_row_and_reads_back_invalid_as_invalid(tmp_path, capsys):
    path = MoleculeGenerator.write_samples(MOLS, tmp_path / "out.csv")
    assert "not written" not in capsys.readouterr().err
    lines = path.read_text().splitlines()
    assert lines[0].startswith("smiles,valid,") and len(lines) == 4
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "0", "1"]
    back = MoleculeGenerator.read_samples(path)
    assert [m is None for m in back] == [False, True, False]
    assert math.isclose(MoleculeGenerator.evaluate_samples(back)["validity"], 2 / 3)


def _nan_params(model):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))


def test_nan_network_output_names_the_block(gen):
    _nan_params(gen.model)
    with pytest.raises(FloatingPointError, match="block size and degree logits at block 0, before its denoising"):
        gen.sample(2, steps=2, seed=0)


def test_nan_denoiser_output_names_block_and_step(gen, monkeypatch):
    real = gen.model.denoise
    calls = []

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        return (out[0] * float("nan") if len(calls) == 2 else out[0], *out[1:])

    monkeypatch.setattr(gen.model, "denoise", poisoned)
    with pytest.raises(FloatingPointError, match=r"atom type logits at block 0, denoising step 2 of 3 \(t = 0.66667\)"):
        gen.sample(1, steps=3, seed=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"guidance": float("inf")}, "guidance must be finite"),
    ({"guidance": "2"}, "guidance must be a real number"),
    ({"condition": {"qed": float("nan")}}, "condition qed must be finite"),
    ({"condition": {"qed": "high"}}, "condition qed must be a real number"),
    ({"condition": ["qed=0.5"]}, "condition must be a mapping"),
    ({"condition": {"pIC50": 7.0}}, "unknown condition"),
    ({"valence_retries": -1}, "valence_retries"),
    ({"valence_retries": 1.5}, "valence_retries"),
    ({"scaffold": "c1ccc"}, "scaffold 'c1ccc' cannot be used"),
    ({"scaffold": ""}, "scaffold must be a SMILES"),
    ({"fragments": "biggest"}, "fragments must be one of largest, whole"),
])
def test_sample_arguments_are_checked_before_any_work(gen, monkeypatch, kwargs, match):
    def no_work(*args, **kw):
        raise AssertionError("sampling started")

    monkeypatch.setattr(MoleculeGenerator, "sample_batch", no_work)
    with pytest.raises(ValueError, match=match):
        gen.sample(2, steps=2, seed=0, **kwargs)


# -- disconnected graphs: what is written, and the 'connected' metric ---------------------------


def test_connected_is_its_own_metric():
    from sciogen.molecules import evaluate

    out = evaluate(["CCO", "C.C.FC(F)(F)F", None, "C1CC1"], fcd=False, properties=False)
    assert out["validity"] == 0.75  # the disconnected one is valid through its largest fragment
    assert out["connected"] == 0.5  # but its graph is not connected, and None is not either


def test_fragments_flag_decides_what_is_written_and_csv_properties_follow(gen, tmp_path):
    graph = gen.spec.to_graph("CC.FC(F)(F)F")
    largest = gen.graph_to_mol(graph, fragments="largest")
    whole = gen.graph_to_mol(graph, fragments="whole")
    assert Chem.MolToSmiles(largest) == "FC(F)(F)F" and Chem.MolToSmiles(whole) == "CC.FC(F)(F)F"
    from sciogen.molecules import evaluate

    # the cut molecule still counts as not connected: it remembers its graph's fragments
    assert evaluate([largest], fcd=False, properties=False)["connected"] == 0.0
    rows = {}
    for name, mol in (("largest", largest), ("whole", whole)):
        lines = MoleculeGenerator.write_samples([mol], tmp_path / f"{name}.csv").read_text().splitlines()
        header = lines[0].split(",")
        rows[name] = dict(zip(header, lines[1].split(",")))
    assert rows["largest"]["smiles"] == "FC(F)(F)F" and rows["whole"]["smiles"] == "CC.FC(F)(F)F"
    assert rows["largest"]["fragments"] == rows["whole"]["fragments"] == "2"
    # the properties are those of the molecule written, not of the whole graph
    assert float(rows["largest"]["weight"]) == pytest.approx(88.00, abs=0.01)
    assert float(rows["whole"]["weight"]) == pytest.approx(118.07, abs=0.01)


def test_sampling_keeps_the_configured_fragments(gen):
    gen.model.eval()
    assert gen.config.sampling.fragments == "largest"
    mols = gen.sample(6, steps=2, seed=0)
    whole = gen.sample(6, steps=2, seed=0, fragments="whole")
    for a, b in zip(mols, whole):
        assert (a is None) == (b is None)
        if a is not None:
            assert "." not in Chem.MolToSmiles(a)
            parts = Chem.MolToSmiles(b).split(".")
            assert Chem.MolToSmiles(a) in parts
