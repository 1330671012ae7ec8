"""Checkpoints: plain values only, atomic writes, refusal of code-running pickles."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from sciogen.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    check_plain,
    checkpoint_path,
    export_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)


def _plain_checkpoint(**extra):
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "sciogen_version": "0.1.0", "domain": "toy",
        "config": {"train": {"betas": [0.9, 0.999], "grad_clip": None}}, "metadata": {"shift": torch.zeros(2)},
        "model": {"w": torch.arange(6.0).reshape(2, 3)}, "ema": None, **extra,
    }


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_keeps_tensors_and_values(tmp_path):
    ckpt = _plain_checkpoint(trainer={"step": 3, "rng": [torch.tensor([1, 2], dtype=torch.uint8)], "flag": True})
    path = save_checkpoint(ckpt, tmp_path / "a" / "model.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], ckpt["model"]["w"])
    assert back["config"] == ckpt["config"]
    assert back["trainer"]["step"] == 3 and back["trainer"]["flag"] is True
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary files left


def test_non_plain_values_are_refused_with_their_key(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint\['metadata'\]\['when'\] is a datetime.date"):
        import datetime

        check_plain({"metadata": {"when": datetime.date(2024, 1, 1)}})
    with pytest.raises(CheckpointError, match="key of type tuple"):
        check_plain({(1, 2): 3})
    with pytest.raises(CheckpointError):
        save_checkpoint(_plain_checkpoint(metadata={"module": torch.nn.Linear(2, 2)}), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_loading_refuses_a_pickle_that_would_run_code(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"format": FORMAT, "format_version": 1, "model": _RunsCode(marker)}
    path = tmp_path / "evil.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"refused to load .*evil\.pt.*never executes code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_foreign_or_newer_file_is_rejected(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a sciogen checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(_plain_checkpoint(format_version=FORMAT_VERSION + 1), tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer than this sciogen understands"):
        load_checkpoint(tmp_path / "new.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_run_folder_listing_pruning_and_resolution(tmp_path):
    for step in (10, 2, 30, 20):
        save_checkpoint(_plain_checkpoint(), checkpoint_path(tmp_path, step))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 10, 20, 30]
    assert latest_checkpoint(tmp_path).name == "step-00000030.pt"
    assert resolve_checkpoint(tmp_path) == latest_checkpoint(tmp_path)
    removed = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step-00000002.pt", "step-00000010.pt"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [20, 30]
    with pytest.raises(FileNotFoundError, match="no checkpoint file or run folder"):
        resolve_checkpoint(tmp_path / "absent")


def test_resolve_checkpoint_on_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder without checkpoints"):
        resolve_checkpoint(tmp_path)


def test_export_strips_the_trainer_state(tmp_path):
    optimizer_state = {"state": {0: {"exp_avg": torch.ones(1000)}}, "param_groups": []}
    save_checkpoint(_plain_checkpoint(trainer={"step": 42, "optimizer": optimizer_state}), checkpoint_path(tmp_path, 42))
    out = export_checkpoint(tmp_path, tmp_path / "model.pt")
    exported = load_checkpoint(out)
    assert "trainer" not in exported
    assert exported["metadata"]["trained_steps"] == 42
    assert torch.equal(exported["model"]["w"], torch.arange(6.0).reshape(2, 3))
