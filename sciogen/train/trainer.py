"""One training engine for every domain.

A domain plugs in a model, a loss and a dataset::

    trainer = Trainer(model, loss_fn, dataset, TrainConfig(steps=2000), run_dir="runs/toy")
    trainer.fit()                     # or trainer.fit(resume=True) to continue the run

``loss_fn(model, batch, generator) -> Tensor`` returns per-sample losses (B,) or a
scalar; ``generator`` is the only source of the loss's randomness (diffusion times and
noise). It is seeded from (seed, step, micro-batch), so the noise of every sample is fixed
by the step whatever the number of processes, and a resumed run draws the same noise.

What the trainer does: AdamW with warm-up and decay (:mod:`.optim`), gradient clipping,
gradient accumulation, an EMA of the weights (:mod:`.ema`), mixed precision on GPUs
(bf16, or fp16 with loss scaling), DDP under torchrun (:mod:`.distributed`; data sharded
by rank, see :mod:`.batches`), a tqdm progress bar, CSV / TensorBoard metrics
(:mod:`.metrics`), a periodic validation callback, atomic checkpoints keeping the last K
(:mod:`.checkpoint`), a checkpoint on SIGINT / SIGTERM, and exact resume: model,
optimizer, scheduler, scaler, EMA, step, RNG states and data position are restored, so
N steps in one go and N/2 + resume + N/2 give the same weights.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from sciogen.config import to_dict

from . import distributed
from .batches import ShardedBatchSampler
from .checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .ema import EMA
from .lock import RunLock
from .metrics import MetricsLogger
from .optim import build_optimizer, build_scheduler
from .progress import show_progress
from .seeding import derive_seed, get_rng_state, make_generator, seed_everything, set_rng_state

__all__ = ["Trainer", "TrainingInterrupted", "LossFn", "ValidateFn", "resolve_precision"]

LossFn = Callable[[nn.Module, Any, torch.Generator], torch.Tensor]
ValidateFn = Callable[[nn.Module, int], Mapping[str, float]]


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after writing a checkpoint (when it has a run folder)."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no run folder, so no checkpoint"
        super().__init__(f"training interrupted by {signal.Signals(signum).name} at step {step}; {where}")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device`` (None = full float32).

    ``"auto"`` is bf16 on GPUs that support it, else fp16 on GPUs, and float32 on CPU.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        raise ValueError(f"train.precision must be one of 'auto', 'fp32', 'bf16', 'fp16'; got {precision!r}")
    return table[precision]


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (and objects with ``.to``, e.g. PyG batches) inside ``batch`` to ``device``."""
    if isinstance(batch, torch.Tensor) or hasattr(batch, "to") and not isinstance(batch, type):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class _SignalGuard:
    """Records SIGINT / SIGTERM instead of dying, so the loop can checkpoint and stop."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Trains ``model`` on ``dataset`` with ``loss_fn`` (see the module docstring).

    Args:
        model: the network; moved to the trainer's device.
        loss_fn: ``loss_fn(model, batch, generator) -> (B,) or scalar``.
        dataset: a map-style ``Dataset``, or a tensor whose rows are samples (fast path).
        config: the :class:`TrainConfig`.
        run_dir: folder for checkpoints, metrics and the resolved config (default
            ``config.run_dir``); None keeps nothing on disk.
        collate_fn: merges a list of dataset items into a batch (default: stack).
        validate: ``validate(model, step) -> {name: value}``, run on rank 0 with the EMA
            weights every ``config.validate_every`` steps; its randomness does not disturb
            training.
        header: returns the checkpoint's constant entries: ``domain``, ``config`` (the full
            run config as a dict), ``metadata``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        dataset: Dataset | torch.Tensor,
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        collate_fn: Callable[[list], Any] | None = None,
        validate: ValidateFn | None = None,
        header: Callable[[], Mapping[str, Any]] | None = None,
    ):
        self.config = config
        self.dist = distributed.setup(config.device)
        self.device = self.dist.device
        self.module = model.to(self.device)
        self.loss_fn, self.dataset, self.validate = loss_fn, dataset, validate
        self.collate_fn = collate_fn or default_collate
        self.header = header or (lambda: {})
        run_dir = run_dir if run_dir is not None else config.run_dir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.amp_dtype = resolve_precision(config.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = EMA(self.module, config.ema_decay) if config.ema_decay is not None else None
        self.optimizer = build_optimizer(self.module, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.model = self._wrap(self.module)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self._saved_step = -1
        self.last_lr = config.lr

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.dist.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    @property
    def sampling_model(self) -> nn.Module:
        """The EMA weights if kept, else the trained weights."""
        return self.ema.module if self.ema is not None else self.module

    # -- the loop ----------------------------------------------------------------------

    def fit(self, resume: bool | str | Path = False) -> "Trainer":
        """Train until ``config.steps``; ``resume=True`` continues from the run folder's
        latest checkpoint, a path continues from that checkpoint. Returns ``self``.

        Rank 0 holds the run folder's lock (:class:`~sciogen.train.lock.RunLock`) throughout:
        a second trainer on the same folder refuses, naming the holder.
        """
        hold = self.run_dir is not None and self.dist.is_main
        with RunLock(self.run_dir) if hold else contextlib.nullcontext():
            return self._fit(resume)

    def _fit(self, resume: bool | str | Path) -> "Trainer":
        self._remove_partial_writes()
        start = self._restore(resume) if resume else self._fresh()
        self._write_config()
        sampler = self._sampler(start)
        batches = iter(self._batches(sampler))
        logger = MetricsLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=self.config.tensorboard,
                               resume_step=start if resume else self._stale_metrics())
        bar = tqdm(total=self.config.steps, initial=start, desc="training", unit="step", dynamic_ncols=True,
                   mininterval=0.5, disable=not (show_progress(self.config.progress) and self.dist.is_main))
        try:
            with _SignalGuard() as guard:
                self._loop(start, sampler, batches, logger, bar, guard)
        finally:
            bar.close()
            logger.close()
        self._save_once()
        return self

    def _loop(self, start, sampler, batches, logger, bar, guard) -> None:
        window = _Window(start)
        for step in range(start, self.config.steps):
            window.add(self._train_step(step, sampler, batches))
            self.step = step + 1
            bar.update(1)
            self._after_step(window, logger, bar)
            if self._stop_requested(guard):
                path = self._save_once()
                raise TrainingInterrupted(guard.received or signal.SIGTERM, self.step, path)

    def _after_step(self, window: "_Window", logger: MetricsLogger, bar) -> None:
        cfg, step = self.config, self.step
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = window.flush(step, self.last_lr)
            logger.log(row, step)
            bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.3g}")
        if self.validate is not None and cfg.validate_every and step % cfg.validate_every == 0:
            logger.log(self._run_validation(step), step, kind="validation")
        if step % cfg.checkpoint_every == 0:
            self._save_once()

    def _stop_requested(self, guard: _SignalGuard) -> bool:
        if not self.dist.distributed:
            return guard.received is not None
        # stop together, at the same step, whichever rank was signalled
        flag = torch.tensor(float(guard.received is not None), device=self.device)
        return bool(distributed.all_reduce_max(flag).item())

    def _train_step(self, step: int, sampler: ShardedBatchSampler, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, grad norm)."""
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for j in range(cfg.grad_accum):
            batch = _to_device(next(batches), self.device)
            generator = make_generator(derive_seed(cfg.seed, step, sampler.chunk_index(j)), self.device)
            last = j == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.distributed else self.model.no_sync()
            with sync:
                with self._autocast():
                    loss = self.loss_fn(self.model, batch, generator).float().mean()
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach()
        grad_norm = self._optimizer_step()
        return distributed.all_reduce_mean(total / cfg.grad_accum), grad_norm

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _optimizer_step(self) -> torch.Tensor:
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.module)
        return grad_norm.detach()

    def _run_validation(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            model = self.sampling_model
            was_training = model.training
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                model.eval()
                metrics = {k: float(v) for k, v in self.validate(model, step).items()}
            model.train(was_training)
        distributed.barrier()
        return metrics

    # -- data ------------------------------------------------------------------------------

    def _sampler(self, start: int) -> ShardedBatchSampler:
        cfg = self.config
        return ShardedBatchSampler(
            len(self.dataset), cfg.batch_size, cfg.steps, start_step=start, world_size=self.dist.world_size,
            rank=self.dist.rank, grad_accum=cfg.grad_accum, seed=derive_seed(cfg.seed, 0x5C10),
        )

    def _batches(self, sampler: ShardedBatchSampler):
        if isinstance(self.dataset, torch.Tensor):
            return (self.dataset[torch.as_tensor(idx)] for idx in sampler)
        # its own generator: creating the loader must not draw from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, self.dist.rank, sampler.start_step))
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn, generator=generator,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")

    # -- starting, saving and resuming -----------------------------------------------------------

    def _fresh(self) -> int:
        if self.run_dir is not None and latest_checkpoint(self.run_dir) is not None:
            raise CheckpointError(
                f"the run folder {self.run_dir} already has checkpoints (latest: {latest_checkpoint(self.run_dir).name}); "
                "resume it (fit(resume=True) / sciogen train ... --resume) or choose another run folder"
            )
        seed_everything(derive_seed(self.config.seed, self.dist.rank))
        if self.config.init_from:
            self._initialise_from(self.config.init_from)
        self.step = 0
        return 0

    def _remove_partial_writes(self) -> None:
        """Delete temporary files of checkpoints whose writer was killed mid-write (the lock
        guarantees no other process is writing here)."""
        if self.run_dir is None or not self.dist.is_main:
            return
        folder = self.run_dir / "checkpoints"
        for tmp in sorted(folder.glob(".step-*.tmp")) if folder.is_dir() else []:
            print(f"sciogen: removing {tmp.name}, a checkpoint whose write was interrupted", file=sys.stderr)
            tmp.unlink(missing_ok=True)

    def _stale_metrics(self) -> int | None:
        """0 (drop every row) when a fresh run finds metrics of an earlier run that left no
        checkpoint, so its rows are not mixed with this run's; else None."""
        if self.run_dir is None or not self.dist.is_main:
            return None
        stale = [n for n in MetricsLogger.FILES.values() if (self.run_dir / n).is_file()]
        if not stale:
            return None
        print(f"sciogen: {self.run_dir} has {', '.join(stale)} of an earlier run that wrote no checkpoint; "
              "starting them anew", file=sys.stderr)
        return 0

    def _initialise_from(self, source: str | Path) -> None:
        """Start a fresh run from another run's weights (its EMA weights when it kept them).

        Only the network is taken: the optimizer, schedule, step and EMA counter start anew,
        so this is a second training stage (fine-tuning, a warm restart), not a resume.
        """
        path = resolve_checkpoint(source)
        checkpoint = load_checkpoint(path, map_location=self.device)
        weights = checkpoint.get("ema") if checkpoint.get("ema") is not None else checkpoint.get("model")
        if weights is None:
            raise CheckpointError(f"train.init_from={source!s}: {path} holds no model weights")
        weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
        try:
            self.module.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(
                f"train.init_from={source!s}: the weights in {path} do not fit this network "
                f"(different model settings?): {str(err).splitlines()[0]}"
            ) from None
        if self.ema is not None:
            self.ema.module.load_state_dict(self.module.state_dict())

    def _write_config(self) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.header().get("config") or {"train": to_dict(self.config)}
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (collective: call it on every rank)."""
        sampler = self._sampler(self.step)
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema_num_updates": self.ema.num_updates if self.ema is not None else 0,
            "rng": distributed.all_gather_objects(get_rng_state()),
            "data": {**sampler.position(self.step), "num_samples": len(self.dataset), "batch_size": self.config.batch_size},
            "train_config": to_dict(self.config),
        }

    def checkpoint(self) -> dict[str, Any]:
        """The full checkpoint dict (collective)."""
        from sciogen._version import __version__

        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sciogen_version": __version__,
            "domain": "", "config": {"train": to_dict(self.config)}, "metadata": {},
            **dict(self.header()),
            "model": self.module.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "trainer": self.state_dict(),
        }

    def _save_once(self) -> Path | None:
        """Checkpoint the current step unless it is already saved (or there is no run folder)."""
        if self.run_dir is None:
            return None
        if self._saved_step != self.step:
            self.save()
        return self.last_checkpoint

    def save(self) -> Path:
        """Write ``run_dir/checkpoints/step-N.pt`` (rank 0) and keep the last ``keep_last``."""
        if self.run_dir is None:
            raise CheckpointError("this trainer has no run folder to write checkpoints to (pass run_dir=...)")
        checkpoint = self.checkpoint()  # every rank takes part in gathering RNG states
        path = checkpoint_path(self.run_dir, self.step)
        if self.dist.is_main:
            save_checkpoint(checkpoint, path)
            prune_checkpoints(self.run_dir, self.config.keep_last)
        distributed.barrier()
        self.last_checkpoint, self._saved_step = path, self.step
        return path

    def _restore(self, resume: bool | str | Path) -> int:
        if resume is True:
            if self.run_dir is None:
                raise CheckpointError("resume=True needs a run folder (run_dir=...) to find the latest checkpoint in")
            found = [p for _, p in reversed(list_checkpoints(self.run_dir))]
            if not found:
                raise FileNotFoundError(f"nothing to resume: no checkpoints in {self.run_dir / 'checkpoints'}")
            path, checkpoint = self._newest_readable(found)
        else:
            path = resolve_checkpoint(resume)
            checkpoint = load_checkpoint(path, map_location=self.device)
        self.load_state(checkpoint)
        self.last_checkpoint, self._saved_step = path, self.step
        return self.step

    def _newest_readable(self, paths: list[Path]) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that loads; each unreadable newer one is named in a warning."""
        for i, path in enumerate(paths):
            try:
                return path, load_checkpoint(path, map_location=self.device)
            except CheckpointError as err:
                if i == len(paths) - 1:
                    raise CheckpointError(f"no checkpoint of {self.run_dir} can be read; the oldest: {err}") from None
                warnings.warn(f"{path} cannot be read ({err}); resuming from the previous checkpoint {paths[i + 1].name}",
                              stacklevel=4)
        raise AssertionError("unreachable")  # pragma: no cover

    def load_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Restore weights, EMA and the trainer state from a checkpoint dict."""
        state = checkpoint.get("trainer")
        if state is None:
            raise CheckpointError(
                "this checkpoint has no trainer state (it was exported for sampling); it cannot resume training"
            )
        try:
            self.module.load_state_dict(checkpoint["model"])
        except RuntimeError as err:
            raise CheckpointError(
                f"cannot resume: the checkpoint's weights do not fit this network (were model settings changed "
                f"since the run started? resume with the run's own config.yaml): {str(err).splitlines()[0]}"
            ) from None
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.load_state_dict({"weights": checkpoint["ema"], "num_updates": state["ema_num_updates"]})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self._check_resumable(state)
        self._restore_rng(state["rng"])

    def _restore_rng(self, states: list) -> None:
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
            return
        warnings.warn(
            f"the checkpoint was written by {len(states)} processes, this run has {self.dist.world_size}: "
            "random states are re-seeded, so the run is not an exact continuation", stacklevel=3,
        )
        seed_everything(derive_seed(self.config.seed, self.dist.rank, self.step))

    def _check_resumable(self, state: Mapping[str, Any]) -> None:
        data, old = state["data"], state.get("train_config", {})
        changed = [k for k in ("batch_size", "grad_accum", "seed", "lr", "warmup_steps", "decay", "ema_decay")
                   if k in old and old[k] != to_dict(self.config)[k]]
        if data["num_samples"] != len(self.dataset):
            changed.append(f"dataset size ({data['num_samples']} -> {len(self.dataset)})")
        if changed and self.dist.is_main:
            warnings.warn(f"resuming with changed settings: {', '.join(changed)}; the run will not match an uninterrupted one",
                          stacklevel=3)


class _Window:
    """Accumulates losses between log steps without synchronising the device every step."""

    def __init__(self, step: int):
        self.losses: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []
        self.start_time, self.start_step = time.perf_counter(), step

    def add(self, result: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.losses.append(result[0])
        self.norms.append(result[1])

    def flush(self, step: int, lr: float) -> dict[str, float]:
        loss = float(torch.stack(self.losses).mean())
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss} between steps {self.start_step} and {step}; "
                "lower train.lr, enable train.grad_clip or check the data for NaN / inf"
            )
        now = time.perf_counter()
        row = {"loss": loss, "lr": lr, "grad_norm": float(torch.stack(self.norms).mean()),
               "steps_per_s": (step - self.start_step) / max(now - self.start_time, 1e-9)}
        self.__init__(step)
        return row
