"""The trainer: schedule, data plan, EMA, checkpoints, signals and exact resume."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from torch import nn

from sciogen.diffusion import GaussianProcess
from sciogen.toy import MLPDenoiser
from sciogen.train import EMA, ShardedBatchSampler, TrainConfig, Trainer, TrainingInterrupted
from sciogen.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    record_stages,
    save_checkpoint,
)
from sciogen.train.metrics import read_metrics
from sciogen.train.optim import lr_factor

PROCESS = GaussianProcess("cosine", "v")
DATA = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))



class _Rows(torch.utils.data.Dataset):
    """A map-style dataset, to exercise the DataLoader path."""

    def __len__(self):
        return DATA.shape[0]

    def __getitem__(self, i):
        return DATA[i]


class _DropoutDenoiser(nn.Module):
    """Dropout draws from the global RNG, so an exact resume must restore it."""

    def __init__(self):
        super().__init__()
        self.net = MLPDenoiser(2, hidden=16, depth=1, time_dim=8)
        self.drop = nn.Dropout(0.2)

    def forward(self, x, t):
        return self.drop(self.net(x, t))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _DropoutDenoiser()


def _loss(model, batch, generator):
    return PROCESS.loss(model, batch, generator=generator)


def _config(**kw) -> TrainConfig:
    base = dict(steps=12, batch_size=32, grad_accum=2, lr=1e-2, warmup_steps=3, ema_decay=0.9, log_every=1,
                checkpoint_every=100, validate_every=1, progress=False, tensorboard=False)
    return TrainConfig(**{**base, **kw})


# -- schedule, data plan, EMA ---------------------------------------------------------------------


def test_lr_factor_warms_up_then_decays_to_the_floor():
    kw = dict(steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert [lr_factor(s, **kw) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, decay="cosine", **kw) == pytest.approx(1.0)
    assert lr_factor(60, decay="cosine", **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(60, decay="linear", **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, decay="cosine", **kw) == pytest.approx(0.1)
    assert lr_factor(80, decay="constant", **kw) == 1.0
    with pytest.raises(ValueError, match="train.decay must be one of 'cosine', 'linear', 'constant'"):
        lr_factor(1, steps=10, decay="step")


def test_global_batches_do_not_depend_on_the_number_of_processes():
    def step_batches(world, accum):
        per_rank = [list(ShardedBatchSampler(100, 16, 9, world_size=world, rank=r, grad_accum=accum, seed=5)) for r in range(world)]
        steps = []
        for s in range(9):  # each rank yields `accum` micro-batches per step
            steps.append(sorted(i for r in range(world) for b in per_rank[r][s * accum:(s + 1) * accum] for i in b))
        return steps

    single = step_batches(1, 1)
    assert step_batches(2, 1) == single == step_batches(2, 2) == step_batches(1, 4)
    epoch = [i for s in single[:6] for i in s]  # 100 // 16 = 6 steps per epoch
    assert len(set(epoch)) == 96  # no sample twice within an epoch
    assert single[6] != single[0]  # a new permutation next epoch


def test_sampler_resumes_mid_epoch_and_checks_divisibility():
    full = list(ShardedBatchSampler(100, 16, 9, seed=1))
    assert list(ShardedBatchSampler(100, 16, 9, start_step=4, seed=1)) == full[4:]
    with pytest.raises(ValueError, match=r"batch_size=30 must divide by processes x grad_accum = 2 x 4 = 8"):
        ShardedBatchSampler(100, 30, 5, world_size=2, grad_accum=4)
    with pytest.raises(ValueError, match="has 10 samples, fewer than train.batch_size=16"):
        ShardedBatchSampler(10, 16, 5)


def test_ema_follows_the_update_rule():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.75, warmup=False)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.75 * before + 0.25 * model.weight)
    warm = EMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with pytest.raises(ValueError, match="EMA decay must be in"):
        EMA(model, decay=1.0)


# -- exact resume -----------------------------------------------------------------------------------


def _stop_at(step):
    def validate(model, current):
        if current == step:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C here
        return {"score": float(current)}

    return validate


@pytest.mark.parametrize("data", ["tensor", "dataset"])
def test_interrupted_and_resumed_training_equals_training_in_one_go(tmp_path, data):
    dataset = DATA if data == "tensor" else _Rows()
    whole = Trainer(_model(), _loss, dataset, _config(), run_dir=tmp_path / "whole", validate=_stop_at(-1)).fit()

    first = Trainer(_model(), _loss, dataset, _config(), run_dir=tmp_path / "split", validate=_stop_at(6))
    with pytest.raises(TrainingInterrupted, match="interrupted by SIGINT at step 6") as info:
        first.fit()
    assert info.value.checkpoint.name == "step-00000006.pt"
    torch.randn(1000)  # disturb the global RNG: the resume must not depend on it
    resumed = Trainer(_model(seed=99), _loss, dataset, _config(), run_dir=tmp_path / "split", validate=_stop_at(-1))
    resumed.fit(resume=True)

    assert resumed.step == whole.step == 12
    for key, value in whole.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    for key, value in whole.ema.module.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[key]), key
    a, b = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
    rows_whole = read_metrics(tmp_path / "whole" / "metrics.csv")
    rows_split = read_metrics(tmp_path / "split" / "metrics.csv")
    assert [r["step"] for r in rows_split] == list(range(1, 13))
    assert [r["loss"] for r in rows_split] == [r["loss"] for r in rows_whole]
    assert [r["step"] for r in read_metrics(tmp_path / "split" / "validation.csv")] == list(range(1, 13))


def test_different_seeds_give_different_runs(tmp_path):
    a = Trainer(_model(), _loss, DATA, _config(steps=3, validate_every=0), run_dir=None).fit()
    b = Trainer(_model(), _loss, DATA, _config(steps=3, validate_every=0, seed=1), run_dir=None).fit()
    assert not torch.equal(a.module.net.inp.weight, b.module.net.inp.weight)


# -- checkpoints, logging, errors -----------------------------------------------------------------------


def test_checkpoints_every_n_steps_keep_the_last_k(tmp_path):
    trainer = Trainer(_model(), _loss, DATA, _config(steps=10, checkpoint_every=3, keep_last=2, validate_every=0),
                      run_dir=tmp_path, header=lambda: {"domain": "test", "metadata": {"note": "x"}})
    trainer.fit()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [9, 10]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "step-00000010.pt")
    assert ckpt["domain"] == "test" and ckpt["metadata"] == {"note": "x"}
    assert ckpt["trainer"]["step"] == 10 and ckpt["trainer"]["data"]["epoch"] == 10 // (200 // 32)
    assert set(ckpt["ema"]) == set(ckpt["model"])
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "checkpoints").iterdir())
    assert (tmp_path / "config.yaml").is_file()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["step", "loss", "lr", "grad_norm", "steps_per_s"]
    assert rows[0]["lr"] == pytest.approx(1e-2 / 3)  # the warm-up rate used by step 1
    assert all(math.isfinite(r["loss"]) for r in rows)


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    Trainer(_model(), _loss, DATA, _config(steps=2, validate_every=0), run_dir=tmp_path).fit()
    with pytest.raises(CheckpointError, match="already has checkpoints .*resume it"):
        Trainer(_model(), _loss, DATA, _config(steps=4, validate_every=0), run_dir=tmp_path).fit()
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(_model(), _loss, DATA, _config(steps=4), run_dir=tmp_path / "new").fit(resume=True)


def test_resuming_extends_a_finished_run(tmp_path):
    Trainer(_model(), _loss, DATA, _config(steps=4, validate_every=0), run_dir=tmp_path).fit()
    trainer = Trainer(_model(), _loss, DATA, _config(steps=6, validate_every=0), run_dir=tmp_path).fit(resume=True)
    assert trainer.step == 6
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2, 3, 4, 5, 6]


def test_init_from_starts_a_second_stage_from_another_runs_ema_weights(tmp_path):
    first = Trainer(_model(), _loss, DATA, _config(steps=4, validate_every=0), run_dir=tmp_path / "a").fit()
    trained = {k: v.clone() for k, v in first.ema.module.state_dict().items()}
    stage2 = Trainer(_model(seed=5), _loss, DATA, _config(steps=1, validate_every=0, init_from=str(tmp_path / "a")))
    stage2._fresh()
    for name, value in stage2.module.state_dict().items():  # the EMA weights, in the network and its EMA copy
        assert torch.equal(value, trained[name]) and torch.equal(stage2.ema.module.state_dict()[name], trained[name])
    assert stage2.step == 0 and stage2.ema.num_updates == 0  # a new run, not a resume
    stage2.fit()
    assert stage2.step == 1 and not torch.equal(stage2.module.net.inp.weight, trained["net.inp.weight"])
    HEADER = {"format": FORMAT, "format_version": FORMAT_VERSION}
    exported = record_stages({"metadata": {"trained_steps": 1}}, str(tmp_path / "a"), 1)["metadata"]
    assert exported == {"trained_steps": 1, "stage_steps": [4, 1], "stage1_trained_steps": 4, "total_trained_steps": 5}
    save_checkpoint({**HEADER, "model": {}, "metadata": {"trained_steps": 1, **exported}}, tmp_path / "stage2.pt")
    third = record_stages({"metadata": {"trained_steps": 3}}, str(tmp_path / "stage2.pt"), 3)["metadata"]
    assert third["stage_steps"] == [4, 1, 3] and third["stage1_trained_steps"] == 4 and third["total_trained_steps"] == 8
    old = {**HEADER, "model": {}, "metadata": {"trained_steps": 8000, "stage1_trained_steps": 6000, "total_trained_steps": 14000}}
    save_checkpoint(old, tmp_path / "old.pt")  # a two-stage export from before stage_steps
    assert record_stages({"metadata": {}}, str(tmp_path / "old.pt"), 6000)["metadata"]["stage_steps"] == [6000, 8000, 6000]
    assert record_stages({"metadata": {}}, None, 1) == {"metadata": {}}  # a single-stage run: unchanged


def test_init_from_names_a_checkpoint_that_does_not_fit(tmp_path):
    Trainer(_model(), _loss, DATA, _config(steps=1, validate_every=0), run_dir=tmp_path / "a").fit()
    wider = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(CheckpointError, match="train.init_from=.*do not fit this network"):
        Trainer(wider, _loss, DATA, _config(steps=1, init_from=str(tmp_path / "a"))).fit()
    with pytest.raises(FileNotFoundError, match="no checkpoint file or run folder"):
        Trainer(_model(), _loss, DATA, _config(steps=1, init_from=str(tmp_path / "missing"))).fit()


def test_a_non_finite_loss_stops_training_with_advice():
    def nan_loss(model, batch, generator):
        return model(batch, torch.zeros(batch.shape[0])).sum() * float("nan")

    with pytest.raises(FloatingPointError, match="loss became nan between steps 0 and 1; lower train.lr"):
        Trainer(_model(), nan_loss, DATA, _config(steps=2, validate_every=0)).fit()


def test_bf16_autocast_runs_on_cpu():
    trainer = Trainer(_model(), _loss, DATA, _config(steps=3, validate_every=0, precision="bf16")).fit()
    assert trainer.amp_dtype == torch.bfloat16
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
