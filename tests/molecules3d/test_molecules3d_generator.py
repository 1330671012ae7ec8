"""The EDM-style 3D molecule generator: equivariance of its denoiser, training and sampling on
a user's molecules, conditions and guidance, save / load, SDF output, the CLI and bad input."""

import math

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from sciogen.molecules3d.config import Molecule3DConfig
from sciogen.molecules3d.generator import GeneratedMolecules, Molecule3DGenerator
from sciogen.molecules3d.network import EDMDynamics

from ..helpers import run_sciogen

SMILES = ["CCO", "CC(=O)O", "CCN", "OCCO", "CC#N", "C1CC1", "CC(C)O", "NCC(=O)O"]


def _mols():
    mols = []
    for i, smi in enumerate(SMILES * 2):
        m = Chem.AddHs(Chem.MolFromSmiles(smi))
        assert AllChem.EmbedMolecule(m, randomSeed=i) == 0
        mols.append(m)
    return mols


def _small(steps=15, **data):
    cfg = Molecule3DConfig()
    cfg.data.dataset, cfg.data.path = "file", "unused"
    for k, v in data.items():
        setattr(cfg.data, k, v)
    cfg.model.hidden, cfg.model.layers = 16, 2
    cfg.train.steps, cfg.train.batch_size, cfg.train.validate_every, cfg.train.progress = steps, 8, 0, False
    cfg.train.log_every = steps
    return cfg


@pytest.fixture(scope="module")
def trained():
    gen = Molecule3DGenerator(_small())
    gen.fit(_mols())
    return gen


def _rotation(seed):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_denoiser_is_equivariant_and_ignores_padding():
    torch.manual_seed(0)
    net = EDMDynamics(5, hidden=16, layers=2, conditional=True).double()
    mask = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    pos = torch.randn(2, 7, 3, dtype=torch.float64) * mask[..., None]
    pos = pos - (pos.sum(1, keepdim=True) / mask.sum(1)[:, None, None]) * mask[..., None]
    types = torch.randn(2, 7, 5, dtype=torch.float64) * mask[..., None]
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    cond = torch.tensor([0.5, float("nan")], dtype=torch.float64)
    out = net({"pos": pos, "types": types}, t, mask=mask, condition=cond)
    for seed in (1, 2):
        r = _rotation(seed)
        if seed == 2:
            r = r * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # a reflection
        rotated = net({"pos": pos @ r.T, "types": types}, t, mask=mask, condition=cond)
        torch.testing.assert_close(rotated["pos"], out["pos"] @ r.T, atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(rotated["types"], out["types"], atol=1e-9, rtol=1e-7)
    # the position noise has zero mean over the real atoms; padded outputs are zero
    torch.testing.assert_close((out["pos"] * mask[..., None]).sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-9, rtol=0)
    assert float(out["pos"][0, 5:].abs().max()) == 0.0 and float(out["types"][0, 5:].abs().max()) == 0.0
    # a missing property (NaN) is the learned null, not a number
    null = net({"pos": pos, "types": types}, t, mask=mask, condition=None)
    torch.testing.assert_close(null["types"][1], out["types"][1])
    assert not torch.allclose(null["types"][0], out["types"][0])


def test_fit_and_sample_on_your_own_molecules(trained):
    mols = trained.sample(6, seed=0, steps=8)
    assert isinstance(mols, GeneratedMolecules) and len(mols) == 6
    assert trained.elements == ["H", "C", "N", "O"]
    counts = mols.mask.sum(1)
    assert set(counts.tolist()) <= {int(c) for c in torch.nonzero(trained.atom_counts).flatten()}
    centre = (mols.positions * mols.mask[..., None]).sum(1) / counts[:, None]
    assert float(centre.abs().max()) < 1e-4 and bool(torch.isfinite(mols.positions).all())
    again = trained.sample(6, seed=0, steps=8)
    assert torch.equal(again.positions, mols.positions) and torch.equal(again.types, mols.types)
    # two chunks merge into one padded set
    chunked = trained.sample(6, seed=0, steps=8, batch_size=4)
    assert chunked.types.shape[0] == 6 and len(chunked) == 6
    fixed = trained.sample(3, seed=1, steps=5, atoms=7)
    assert fixed.mask.sum(1).tolist() == [7, 7, 7]
    metrics = trained.evaluate(mols)
    for key in ("atom_stability", "molecule_stability", "validity", "uniqueness"):
        assert 0.0 <= metrics[key] <= 1.0 and not math.isnan(metrics[key])


def test_any_core_solver_and_save_load(trained, tmp_path):
    for solver in ("dpm++2m", "ddim", "heun"):
        assert len(trained.sample(2, seed=0, steps=4, solver=solver)) == 2
    path = trained.save(tmp_path / "m.pt")
    loaded = Molecule3DGenerator.load(path, device="cpu")
    a, b = trained.sample(3, seed=4, steps=5), loaded.sample(3, seed=4, steps=5)
    assert torch.equal(a.positions, b.positions) and loaded.elements == trained.elements


def test_bad_sampling_input_is_named(trained):
    with pytest.raises(ValueError, match="atoms"):
        trained.sample(2, atoms=0)
    with pytest.raises(ValueError, match="without a property condition"):
        trained.sample(2, condition={"gap": 0.3})
    with pytest.raises(ValueError, match="unknown sampling conditions"):
        trained.sample(2, temperature=2.0)


def test_written_sdf_holds_3d_molecules(trained, tmp_path):
    mols = trained.sample(4, seed=0, steps=5, atoms=6)
    mols[0] = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mols[0], randomSeed=0)
    path = Molecule3DGenerator.write_samples(mols, tmp_path / "out.sdf")
    back = [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None]
    assert back and back[0].GetNumAtoms() == 9 and back[0].GetConformer().Is3D()
    generated = trained.sample(3, seed=0, steps=5, atoms=6)
    xyz = Molecule3DGenerator.write_samples(generated, tmp_path / "out.xyz").read_text().splitlines()
    assert xyz[0] == "6" and len(xyz) == 3 * 8 and xyz[2].split()[0] in trained.elements
    with pytest.raises(TypeError, match="sdf"):
        Molecule3DGenerator.write_samples(list(generated), tmp_path / "list.xyz")


def test_property_conditioned_training_and_guidance(shared_datasets):
    xyz = shared_datasets / "molecules" / "qm9" / "qm9_xyz.csv.gz"
    if not (xyz.parent / "qm9_properties.csv.gz").exists():
        pytest.skip("qm9_properties.csv.gz is not in the shared datasets")
    cfg = _small(steps=4)
    cfg.data.dataset, cfg.data.path, cfg.data.limit, cfg.data.condition = "qm9", str(xyz), 64, "gap"
    gen = Molecule3DGenerator(cfg)
    gen.fit()
    assert gen.elements == ["H", "C", "N", "O", "F"] and gen.condition_stats[1] > 0
    plain = gen.sample(3, seed=0, steps=4)
    guided = gen.sample(3, seed=0, steps=4, condition={"gap": 0.25}, guidance=2.0)
    assert plain.mask.sum(1).tolist() == guided.mask.sum(1).tolist()
    assert not torch.equal(plain.positions, guided.positions)
    with pytest.raises(ValueError, match="conditioned on 'gap'"):
        gen.sample(2, condition={"mu": 1.0})


def test_cli_trains_and_samples_an_sdf(tmp_path):
    data = tmp_path / "mine.sdf"
    writer = Chem.SDWriter(str(data))
    for m in _mols():
        writer.write(m)
    writer.close()
    run = tmp_path / "run"
    result = run_sciogen("train", "molecules3d", "--data", str(data), "--run-dir", str(run),
                         "--set", "train.steps=3", "--set", "train.batch_size=4", "--set", "model.hidden=8",
                         "--set", "model.layers=1", "--set", "model.heads=2", "--set", "model.head_width=16",
                         "--set", "train.validate_every=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "gen.sdf"
    result = run_sciogen("sample", str(run), "-n", "3", "--out", str(out), "--steps", "3", "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.exists() and "sampled 3" in result.stdout
    typo = run_sciogen("train", "molecules3d", "--data", str(tmp_path / "mine.sfd"), "--run-dir", str(tmp_path / "r2"),
                       cwd=tmp_path)
    assert typo.returncode != 0 and "mine.sfd" in typo.stderr


def _unigenx_config(steps=25):
    cfg = _small(steps=steps)
    m = cfg.model
    m.kind, m.hidden, m.layers, m.heads, m.head_width, m.head_depth, m.diffusion_repeats = "unigenx", 32, 1, 2, 32, 2, 1
    cfg.sampling.solver, cfg.sampling.steps = "ddim", 5
    return cfg


@pytest.fixture(scope="module")
def unigenx():
    gen = Molecule3DGenerator(_unigenx_config())
    gen.fit(_mols())
    return gen


def test_unigenx_kind_samples_de_novo_and_conformers(unigenx, trained, tmp_path):
    assert unigenx.config.model.tokens and unigenx.tokenizer.vocab_size == 5 + len(unigenx.config.model.tokens)
    mols = unigenx.sample(4, seed=0)
    assert len(mols) == 4 and mols.types.shape[0] == 4 and bool(torch.isfinite(mols.positions).all())
    assert 0.0 <= unigenx.evaluate(mols)["atom_stability"] <= 1.0
    conf = unigenx.conformers("CCO", 3, seed=0)
    assert conf.GetNumConformers() == 3 and conf.GetNumAtoms() == 9
    loaded = Molecule3DGenerator.load(unigenx.save(tmp_path / "u.pt"), device="cpu")
    again = loaded.conformers("CCO", 3, seed=0)
    torch.testing.assert_close(torch.as_tensor(again.GetConformer(0).GetPositions()),
                               torch.as_tensor(conf.GetConformer(0).GetPositions()))
    with pytest.raises(ValueError, match="UniGenX model"):
        trained.conformers("CCO", 2)
    with pytest.raises(ValueError, match="atoms"):
        unigenx.sample(2, atoms=5)
    with pytest.raises(Exception, match="C1CC"):
        unigenx.conformers("C1CC", 2)


def test_cli_conformers_writes_an_sdf(unigenx, trained, tmp_path):
    model = unigenx.save(tmp_path / "u.pt")
    out = tmp_path / "c.sdf"
    result = run_sciogen("conformers", "OCCO", "-n", "4", "--out", str(out), "--model", str(model), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    confs = [m for m in Chem.SDMolSupplier(str(out), removeHs=False) if m is not None]
    assert len(confs) == 4 and all(m.GetNumAtoms() == 10 for m in confs) and "wrote 4 conformers" in result.stdout
    again = run_sciogen("conformers", "OCCO", "-n", "4", "--out", str(out), "--model", str(model), cwd=tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr
    edm = run_sciogen("conformers", "CCO", "--out", str(tmp_path / "e.sdf"), "--model", str(trained.save(tmp_path / "e.pt")),
                      cwd=tmp_path)
    assert edm.returncode != 0 and "UniGenX" in edm.stderr
