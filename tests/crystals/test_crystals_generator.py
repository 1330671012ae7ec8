"""CrystalGenerator end to end on tiny models (CSPNet and UniGenX): fit, CSP and de novo sampling,
save / load, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pymatgen.core import Lattice, Structure  # noqa: E402

from sciogen.ar import TokenAR  # noqa: E402
from sciogen.crystals import CrystalConfig, CrystalGenerator, UnknownElementError, read_structures  # noqa: E402
from sciogen.crystals.config import CrystalDataConfig, CrystalModelConfig, CrystalSamplingConfig  # noqa: E402
from sciogen.registry import load_run_config  # noqa: E402
from sciogen.train.config import ConfigError, from_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _perovskites(n=24):
    """Cubic ABO3 perovskites with a = 3.9 .. 4.2 Å (A at the centre, B at the corner)."""
    pairs = [("Sr", "Ti"), ("Ba", "Zr"), ("Ca", "Ti"), ("K", "Nb")]
    out = []
    for i in range(n):
        a, b = pairs[i % len(pairs)]
        out.append(Structure(Lattice.cubic(3.9 + 0.3 * (i % 5) / 4), [a, b, "O", "O", "O"],
                             [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    config = CrystalConfig(data=CrystalDataConfig(dataset="file", path="unused", max_atoms=6),
                           model=CrystalModelConfig(hidden=32, layers=2, frequencies=4, time_dim=16),
                           sampling=CrystalSamplingConfig(steps=10, batch_size=4))
    config.train.steps, config.train.batch_size, config.train.progress = 30, 16, False
    config.train.tensorboard, config.train.log_every, config.train.checkpoint_every = False, 10, 30
    run = tmp_path_factory.mktemp("run")
    gen = CrystalGenerator(config).fit(_perovskites(), run_dir=run)
    return gen, run


def test_fit_sets_statistics_from_the_data(trained):
    gen, _ = trained
    assert gen.trained_steps == 30
    present = {gen.spec.elements[i] for i in torch.nonzero(gen.type_marginals).flatten().tolist()}
    assert present == {8, 38, 22, 56, 40, 20, 19, 41}
    assert float(gen.atom_count_probs[5]) == 1.0
    assert 2.0 < gen.scale < 2.6  # (V / N)^(1/3) of 4 Å cubes with 5 atoms: 2.3 .. 2.5 Å


def test_csp_keeps_the_composition_and_is_reproducible(trained):
    gen, _ = trained
    a = gen.sample(6, composition="SrTiO3", seed=3)
    b = gen.sample(6, composition="SrTiO3", seed=3)
    assert all(s is not None and s.composition.reduced_formula == "SrTiO3" for s in a)
    assert [s.frac_coords.tolist() for s in a] == [s.frac_coords.tolist() for s in b]
    mixed = gen.sample(6, composition=["SrTiO3", "BaZrO3", "KNbO3", "SrTiO3", "CaTiO3", "BaZrO3"], seed=0)
    assert [s.composition.reduced_formula for s in mixed] == ["SrTiO3", "BaZrO3", "KNbO3", "SrTiO3", "CaTiO3", "BaZrO3"]
    with pytest.raises(UnknownElementError, match="Fe"):
        gen.sample(2, composition="FeTiO3")
    with pytest.raises(ValueError, match="compositions for n=3"):
        gen.sample(3, composition=["SrTiO3", "BaZrO3"])


def test_de_novo_uses_the_training_elements(trained):
    gen, _ = trained
    out = gen.sample(8, seed=1)
    assert len(out) == 8
    allowed = {8, 38, 22, 56, 40, 20, 19, 41}
    for s in out:
        assert s is not None and len(s) == 5
        assert {site.specie.Z for site in s} <= allowed


def test_save_load_round_trip(trained, tmp_path):
    gen, _ = trained
    path = gen.save(tmp_path / "model.pt")
    back = CrystalGenerator.load(path, device="cpu")
    assert back.scale == pytest.approx(gen.scale)
    assert torch.equal(back.type_marginals, gen.type_marginals)
    a = gen.sample(3, composition="SrTiO3", seed=5)
    b = back.sample(3, composition="SrTiO3", seed=5)
    assert [s.frac_coords.tolist() for s in a] == [s.frac_coords.tolist() for s in b]


def test_config_errors():
    with pytest.raises(ConfigError, match="data.dataset"):
        CrystalDataConfig(dataset="perov5x")
    with pytest.raises(ConfigError, match="csp_fraction"):
        from sciogen.crystals.config import CrystalDiffusionConfig

        CrystalDiffusionConfig(csp_fraction=2.0)


def test_cli_sample_and_evaluate(trained, tmp_path):
    gen, _ = trained
    model = gen.save(tmp_path / "model.pt")
    out = tmp_path / "structures"
    cmd = [sys.executable, "-m", "sciogen", "sample", str(model), "-n", "4", "--out", str(out),
           "--composition", "SrTiO3", "--seed", "0"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    recs = read_structures(out)
    assert len(recs) == 4 and all(s.composition.reduced_formula == "SrTiO3" for s in recs.structures)
    assert (out / "summary.csv").is_file()
    ref = tmp_path / "ref"
    CrystalGenerator.write_samples(_perovskites(6), ref)
    res = subprocess.run([sys.executable, "-m", "sciogen", "evaluate", "crystals", str(out), "--reference", str(ref), "--json"],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    metrics = json.loads(res.stdout)
    assert 0.0 <= metrics["structural_validity"] <= 1.0 and "wdist_density" in metrics


# -- model.kind: unigenx ------------------------------------------------------------------------

ALLOWED = {8, 38, 22, 56, 40, 20, 19, 41}


@pytest.fixture(scope="module")
def trained_unigenx(tmp_path_factory):
    torch.set_num_threads(1)
    config = CrystalConfig(data=CrystalDataConfig(dataset="file", path="unused", max_atoms=6),
                           model=CrystalModelConfig(kind="unigenx", hidden=32, layers=2, heads=2, head_width=32,
                                                    head_depth=2, frac_scale=1.5),
                           sampling=CrystalSamplingConfig(solver="ddim", steps=5, batch_size=4))
    config.train.steps, config.train.batch_size, config.train.progress = 40, 16, False
    config.train.tensorboard, config.train.log_every, config.train.checkpoint_every = False, 10, 40
    run = tmp_path_factory.mktemp("run")
    gen = CrystalGenerator(config).fit(_perovskites(), run_dir=run)
    return gen, run


def test_unigenx_fit_builds_a_unigenx_model_and_learns(trained_unigenx):
    gen, run = trained_unigenx
    assert isinstance(gen.model, TokenAR) and gen.trained_steps == 40
    assert gen.tokenizer.frac_scale == 1.5 and gen.model.config.max_len == gen.tokenizer.max_len
    losses = [float(line.split(",")[1]) for line in (run / "metrics.csv").read_text().splitlines()[1:] if line.count(",") >= 2]
    assert losses[-1] < losses[0]


def test_unigenx_csp_keeps_the_composition_and_is_reproducible(trained_unigenx):
    gen, _ = trained_unigenx
    a = gen.sample(6, composition="SrTiO3", seed=3)
    b = gen.sample(6, composition="SrTiO3", seed=3)
    assert all(s is not None and s.composition.reduced_formula == "SrTiO3" for s in a)
    assert [s.frac_coords.tolist() for s in a] == [s.frac_coords.tolist() for s in b]
    mixed = gen.sample(5, composition=["SrTiO3", "BaZrO3", "KNbO3", "CaTiO3", "BaZrO3"], seed=0)
    assert [s.composition.reduced_formula for s in mixed] == ["SrTiO3", "BaZrO3", "KNbO3", "CaTiO3", "BaZrO3"]
    with pytest.raises(UnknownElementError, match="Fe"):
        gen.sample(2, composition="FeTiO3")


def test_unigenx_de_novo_uses_the_training_elements(trained_unigenx):
    gen, _ = trained_unigenx
    out = gen.sample(8, seed=1, steps=3, solver="dpm++2m")
    assert len(out) == 8
    for s in out:
        assert s is None or (1 <= len(s) <= 6 and {site.specie.Z for site in s} <= ALLOWED)


def test_unigenx_options_of_the_other_kind_are_rejected(trained_unigenx):
    gen, _ = trained_unigenx
    with pytest.raises(ValueError, match="step_lr belong to CSPNet"):
        gen.sample(2, composition="SrTiO3", step_lr=1e-5)
    with pytest.raises(ValueError, match="solver 'pc'"):
        gen.sample(2, composition="SrTiO3", solver="pc")


def test_unigenx_save_load_round_trip(trained_unigenx, tmp_path):
    gen, _ = trained_unigenx
    back = CrystalGenerator.load(gen.save(tmp_path / "model.pt"), device="cpu")
    assert back.config.model.kind == "unigenx" and back.tokenizer.frac_scale == 1.5
    a = gen.sample(3, composition="BaZrO3", seed=5, temperature=0.5)
    b = back.sample(3, composition="BaZrO3", seed=5, temperature=0.5)
    assert [s.frac_coords.tolist() for s in a] == [s.frac_coords.tolist() for s in b]


def test_unigenx_config_checks_solver_against_kind():
    with pytest.raises(ConfigError, match="does not fit model.kind='unigenx'"):
        from_dict(CrystalConfig, {"model": {"kind": "unigenx"}})
    with pytest.raises(ConfigError, match="does not fit model.kind='cspnet'"):
        from_dict(CrystalConfig, {"sampling": {"solver": "ddim"}})
    with pytest.raises(ConfigError, match="sampling.solver must be one of 'pc', .*; got 'rk4'"):
        CrystalSamplingConfig(solver="rk4")
    with pytest.raises(ConfigError, match="divisible by model.heads"):
        CrystalModelConfig(kind="unigenx", hidden=30, heads=4)
    config = load_run_config(ROOT / "domains" / "crystals" / "perov5_unigenx.yaml")
    assert config.model.kind == "unigenx" and config.sampling.solver == "ddim"


def test_unigenx_cli_sample_with_temperature(trained_unigenx, tmp_path):
    gen, _ = trained_unigenx
    model = gen.save(tmp_path / "model.pt")
    out = tmp_path / "structures"
    cmd = [sys.executable, "-m", "sciogen", "sample", str(model), "-n", "3", "--out", str(out),
           "--composition", "KNbO3", "--seed", "0", "--temperature", "0.7"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    recs = read_structures(out)
    assert len(recs) == 3 and all(s.composition.reduced_formula == "KNbO3" for s in recs.structures)


def test_shipped_unigenx_beats_the_random_coordinate_floor(shared_datasets):
    """The shipped UniGenX model on the last 150 Perov-5 test crystals (48 % measured): above the
    floor of random coordinates in the true lattice (35.6 % on the benchmark subset at stol 0.5),
    and every sample keeps its composition."""
    import sciogen
    from sciogen.crystals import read_cdvae_csv
    from sciogen.crystals.metrics import match_rate_and_rmse

    if "crystals/perov5-unigenx" not in sciogen.available():
        pytest.skip("crystals/perov5-unigenx is not shipped in this checkout")
    test = read_cdvae_csv(shared_datasets / "crystals" / "perov_5" / "test.csv")
    truth = test.structures[-150:]
    gen = sciogen.load("crystals/perov5-unigenx", device="cpu")
    pred = gen.sample(len(truth), composition=truth, seed=0, steps=20)
    assert [p.composition.reduced_formula for p in pred] == [t.composition.reduced_formula for t in truth]
    assert match_rate_and_rmse(pred, truth)["match_rate"] > 0.42
