"""A run folder has one trainer at a time and survives kills: lock, partial writes, corrupt checkpoints, metrics."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sciogen.train import TrainConfig, Trainer
from sciogen.train.checkpoint import CheckpointError, list_checkpoints
from sciogen.train.lock import RunFolderBusy, RunLock

from ..helpers import run_sciogen

REPO = Path(__file__).resolve().parents[2]


def _trainer(run_dir: Path, steps: int = 6) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    data = torch.randn(64, 2)

    def loss(m, batch, generator):
        return ((m(batch) - batch) ** 2).mean(dim=1)

    config = TrainConfig(steps=steps, batch_size=8, lr=1e-2, warmup_steps=0, checkpoint_every=2, keep_last=5,
                         log_every=1, progress=False, tensorboard=False)
    return Trainer(model, loss, data, config, run_dir=run_dir)


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    code = (f"import sys, time\nfrom sciogen.train.lock import RunLock\nlock = RunLock({str(run_dir)!r}).acquire()\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_trainer_on_the_same_folder_refuses_naming_the_holder(tmp_path):
    holder = _hold_lock(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusy, match=rf"holds the run folder .*pid {holder.pid} on .*started"):
            _trainer(tmp_path / "run").fit()
        assert not (tmp_path / "run" / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    # the OS released the lock with the process: the folder is usable again, with a message
    _trainer(tmp_path / "run").fit()
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2, 4, 6]


def test_sciogen_train_refuses_a_busy_run_folder(tmp_path):
    holder = _hold_lock(tmp_path / "run")
    try:
        done = run_sciogen("train", "toy", "--run-dir", tmp_path / "run", "--set", "train.steps=2", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert f"another training run holds the run folder {tmp_path / 'run'} (pid {holder.pid}" in done.stderr


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_message(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "2026-01-01 00:00:00"}))
    _trainer(run, steps=2).fit()
    assert "taking over the lock" in capsys.readouterr().err and "pid 999999" not in (run / ".lock").read_text()
    with RunLock(run):  # released cleanly after the run
        pass


def test_partial_checkpoint_writes_are_removed(tmp_path, capsys):
    run = tmp_path / "run"
    _trainer(run, steps=2).fit()
    partial = run / "checkpoints" / ".step-00000004.pt.12345.abcdef12.tmp"
    partial.write_bytes(b"half a checkpoint")
    trainer = _trainer(run, steps=4)
    trainer.fit(resume=True)
    assert not partial.exists() and "whose write was interrupted" in capsys.readouterr().err


def test_resume_falls_back_past_a_corrupt_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    _trainer(run, steps=4).fit()
    newest = list_checkpoints(run)[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # a truncated file, as a full disk leaves it
    trainer = _trainer(run, steps=6)
    with pytest.warns(UserWarning, match=rf"{newest.name} cannot be read .* previous checkpoint step-00000002.pt"):
        trainer.fit(resume=True)
    assert trainer.step == 6
    for _, path in list_checkpoints(run):
        path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no checkpoint of .* can be read"):
        _trainer(run, steps=8).fit(resume=True)


def test_a_fresh_start_after_a_run_without_checkpoints_starts_metrics_anew(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as f:  # a run killed before its first checkpoint
        csv.writer(f).writerows([["step", "loss"], [1, 9.0], [2, 8.0], [3, 7.0]])
    _trainer(run, steps=2).fit()
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert steps == [1, 2] and "starting them anew" in capsys.readouterr().err


def test_the_lock_is_released_when_training_fails(tmp_path):
    trainer = _trainer(tmp_path / "run", steps=2)
    trainer.loss_fn = lambda m, b, g: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(FloatingPointError):
        trainer.fit()
    start = time.perf_counter()
    with RunLock(tmp_path / "run"):
        assert time.perf_counter() - start >= 0  # acquired at once: no holder remains


@pytest.mark.parametrize("content, message", [
    (b"", "is empty (0 bytes)"),
    (b"\x80\x04garbage bytes", "is not a file written by torch.save"),
])
def test_unreadable_checkpoint_files_get_a_reason_from_the_shell(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    for command in (("info", path), ("sample", path, "-n", "2", "--out", tmp_path / "x.csv")):
        done = run_sciogen(*command, cwd=tmp_path)
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert "weights_only=False" not in done.stderr and "will likely succeed" not in done.stderr


def test_a_pickle_that_builds_objects_is_refused_naming_the_object(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "sciogen-checkpoint", "payload": print}, path)
    done = run_sciogen("info", path, cwd=tmp_path)
    assert done.returncode == 1 and "would build a print object" in done.stderr
    assert "weights_only" not in done.stderr


@pytest.mark.parametrize("drop", ["model", "config"])
def test_a_checkpoint_without_model_or_config_is_named(tmp_path, drop):
    import sciogen
    from sciogen.registry import read_checkpoint

    checkpoint, _ = read_checkpoint("toy/gmm")
    del checkpoint[drop]
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=f"no '{drop}' entry"):
        sciogen.load(path, device="cpu")


def test_unknown_or_absent_devices_are_refused_by_name(tmp_path):
    done = run_sciogen("sample", "toy/gmm", "-n", "2", "--out", tmp_path / "x.csv", "--device", "cdua", cwd=tmp_path)
    assert done.returncode == 1 and "unknown device 'cdua'" in done.stderr
    if not torch.cuda.is_available():
        done = run_sciogen("sample", "toy/gmm", "-n", "2", "--out", tmp_path / "x.csv", "--device", "cuda", cwd=tmp_path)
        assert done.returncode == 1 and "has no CUDA GPU" in done.stderr


def test_resume_with_a_changed_model_says_so(tmp_path):
    _trainer(tmp_path / "run", steps=2).fit()
    trainer = _trainer(tmp_path / "run", steps=4)
    trainer.module = torch.nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match="do not fit this network .* model settings changed"):
        trainer.fit(resume=True)
