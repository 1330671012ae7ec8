"""The sciogen command: train / resume / sample / evaluate / info / list / demo, and its errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sciogen import registry
from sciogen.cli import main

REPO = Path(__file__).resolve().parents[1]
GMM_YAML = REPO / "domains" / "toy" / "gmm.yaml"
SMALL = ["--set", "train.steps=30", "--set", "data.num_samples=1000", "--set", "model.hidden=32",
         "--set", "train.checkpoint_every=10", "--set", "train.log_every=10", "--set", "train.validate_every=0",
         "--set", "train.progress=false"]



def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sciogen", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def fake_domain():
    """A domain whose module needs a package that is not installed."""
    spec = registry.register_domain(registry.DomainSpec(
        name="fakechem", module="sciogen_test_absent_package.adapter", generator="G", extra="molecules"))
    yield spec
    registry._DOMAINS.pop(spec.name)  # noqa: SLF001 - test cleanup


def test_help_and_the_core_need_no_domain_extras():
    code = (
        "import sys; from sciogen.cli import main\n"
        "try: main(['--help'])\nexcept SystemExit as e: assert e.code == 0\n"
        "heavy = [m for m in ('torch', 'rdkit', 'pymatgen', 'monai', 'nibabel') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "sample" in result.stdout


def test_python_dash_m_runs_the_same_command():
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.strip() == "sciogen 0.1.0"


def test_a_missing_extra_names_the_pip_command(fake_domain, tmp_path, capsys):
    assert main(["evaluate", "fakechem", str(tmp_path / "x.sdf")]) == 1
    err = capsys.readouterr().err
    assert 'pip install "sciogen[molecules]"' in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["sample", "no/such-model", "-n", "3", "--out", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sciogen: error: 'no/such-model' is neither a checkpoint file") and "toy/gmm" in err
    with pytest.raises(registry.UnknownNameError):
        main(["--debug", "sample", "no/such-model", "-n", "3", "--out", str(tmp_path / "x.csv")])
    assert main(["train", str(GMM_YAML), "--set", "train.stepz=3"]) == 1
    assert "train.stepz; did you mean 'train.steps'" in capsys.readouterr().err


def test_train_resume_sample_evaluate_and_info(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(GMM_YAML), "--run-dir", str(run), *SMALL]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000020.pt", "step-00000030.pt"]  # keep_last: 2
    assert "steps: 30" in (run / "config.yaml").read_text()
    assert main(["train", str(GMM_YAML), "--run-dir", str(run), *SMALL]) == 1  # refuses to overwrite
    assert "already has checkpoints" in capsys.readouterr().err
    assert main(["train", str(GMM_YAML), "--run-dir", str(run), *SMALL, "--set", "train.steps=40", "--resume"]) == 0
    with open(run / "metrics.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [10, 20, 30, 40]

    out = tmp_path / "samples.csv"
    assert main(["sample", str(run), "-n", "64", "--out", str(out), "--solver", "ddim", "--steps", "10"]) == 0
    with open(out) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["x0", "x1"] and len(rows) == 65
    capsys.readouterr()
    assert main(["evaluate", "toy", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"energy_distance", "mean_error", "cov_error", "nll"} <= set(metrics)
    assert main(["info", str(run)]) == 0
    info = capsys.readouterr().out
    assert "domain:          toy" in info and "trained steps:   40" in info


def test_list_info_and_sample_help_for_the_shipped_model(capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "toy/gmm" in listing and "qm9" in listing and "perov_5" in listing
    assert main(["info", "toy/gmm"]) == 0
    assert "# toy/gmm" in capsys.readouterr().out  # the model card
    assert main(["sample", "toy/gmm", "--help"]) == 0
    assert "options of the 'toy' domain:" in capsys.readouterr().out


def test_unknown_domain_options_are_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "toy/gmm", "-n", "3", "--out", str(tmp_path / "x.csv"), "--colour", "red"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --colour red" in capsys.readouterr().err


def test_demo_writes_results_for_every_solver(tmp_path, capsys):
    assert main(["demo", "--quick", "--domain", "toy", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "toy" / "results.json").read_text())
    from sciogen.diffusion import SOLVERS

    assert {r["solver"] for r in rows if r["model"] == "exact denoiser"} == set(SOLVERS)
    assert {r["solver"] for r in rows if r["model"] == "toy/gmm"} == set(SOLVERS)
    assert (tmp_path / "toy" / "results.csv").is_file() and (tmp_path / "toy" / "scatter.png").is_file()
    assert "exact denoiser" in capsys.readouterr().out


def test_sigterm_writes_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "sciogen", "train", str(GMM_YAML), "--run-dir", str(run), "--set", "train.steps=1000000",
            "--set", "train.log_every=1", "--set", "train.validate_every=0", "--set", "train.progress=false"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 90
    while not (run / "metrics.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM at step" in err and "resume with: sciogen train" in err
    assert len(list((run / "checkpoints").glob("step-*.pt"))) == 1


def test_one_condition_parser_for_every_domain():
    from sciogen.cli import parse_conditions

    assert parse_conditions(["qed=0.55", " logp = -1e-1 ", "group=aromatic"]) == {
        "qed": 0.55, "logp": -0.1, "group": "aromatic"}
    for bad in ("qed", "=1", "qed="):
        with pytest.raises(ValueError, match="must look like NAME=VALUE"):
            parse_conditions([bad])
    with pytest.raises(ValueError, match="qed is given twice"):
        parse_conditions(["qed=0.5", "qed=0.6"])
