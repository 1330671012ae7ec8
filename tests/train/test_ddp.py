"""DDP under torchrun: 2 CPU processes with gloo against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sciogen.cli import main
from sciogen.train.checkpoint import load_checkpoint
from sciogen.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
GMM_YAML = REPO / "domains" / "toy" / "gmm.yaml"
SMALL = ["--set", "train.steps=8", "--set", "train.batch_size=64", "--set", "data.num_samples=512",
         "--set", "model.hidden=32", "--set", "model.depth=1", "--set", "train.log_every=1",
         "--set", "train.checkpoint_every=4", "--set", "train.validate_every=0", "--set", "train.progress=false"]



pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # two CPU processes, gloo
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sciogen", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path):
    _torchrun("train", str(GMM_YAML), "--run-dir", str(tmp_path / "ddp"), *SMALL)
    # one process, same global batch: the batch is cut into the same two halves by grad_accum
    assert main(["train", str(GMM_YAML), "--run-dir", str(tmp_path / "one"), *SMALL, "--set", "train.grad_accum=2"]) == 0

    ddp, one = read_metrics(tmp_path / "ddp" / "metrics.csv"), read_metrics(tmp_path / "one" / "metrics.csv")
    assert [r["step"] for r in ddp] == list(range(1, 9))  # only rank 0 wrote: one row per step
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert [r["grad_norm"] for r in ddp] == pytest.approx([r["grad_norm"] for r in one], rel=1e-4)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step-00000008.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoints" / "step-00000008.pt")
    for key, value in b["model"].items():
        assert torch.allclose(a["model"][key], value, atol=1e-6), key
    assert len(a["trainer"]["rng"]) == 2 and len(b["trainer"]["rng"]) == 1  # a random state per rank
    losses = [r["loss"] for r in one]
    assert min(losses[4:]) < losses[0]  # and the run is learning, not flat


def test_torchrun_sampling_splits_the_work_and_writes_one_deterministic_file(tmp_path):
    options = ["-n", "250", "--batch-size", "100", "--seed", "3", "--steps", "5"]
    result = _torchrun("sample", "toy/gmm", *options, "--out", str(tmp_path / "two.csv"))
    assert result.stdout.count("sampled 250 from") == 1  # rank 0 alone writes
    assert main(["sample", "toy/gmm", *options, "--out", str(tmp_path / "one.csv")]) == 0
    two, one = (tmp_path / "two.csv").read_text(), (tmp_path / "one.csv").read_text()
    assert two == one and len(one.splitlines()) == 251
    assert main(["sample", "toy/gmm", *options[:-4], "--seed", "4", "--steps", "5", "--out", str(tmp_path / "other.csv")]) == 0
    assert (tmp_path / "other.csv").read_text() != one
