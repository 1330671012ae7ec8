"""Checkpoints: plain dictionaries of tensors and primitive values, written atomically.

A sciogen checkpoint is a ``dict`` with these keys::

    format            "sciogen-checkpoint"
    format_version    1
    sciogen_version   the package version that wrote it
    domain            the domain's registered name, e.g. "toy"
    config            the resolved run config as a plain dict (model config included)
    metadata          domain metadata (tensors and plain values), e.g. data statistics
    model             the network's state_dict
    ema               the EMA weights' state_dict (used for sampling), or None
    trainer           (training checkpoints only) step, optimizer, scheduler, scaler,
                      EMA counter, RNG states per rank and data position

Everything in it is a tensor, ``int``, ``float``, ``bool``, ``str``, ``None``, or a
list / tuple / dict of those, so it loads with ``torch.load(..., weights_only=True)``:
loading never runs code. :func:`load_checkpoint` refuses any file that would.
"""

from __future__ import annotations

import os
import pickle
import re
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

__all__ = [
    "CheckpointError",
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "safe_torch_load",
    "check_plain",
    "checkpoint_path",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "resolve_checkpoint",
    "export_checkpoint",
    "record_stages",
]

FORMAT = "sciogen-checkpoint"
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
_PRIMITIVES = (bool, int, float, str, type(None))


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read safely, or is not a sciogen checkpoint."""


def check_plain(value: Any, key: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``value`` holds only tensors and plain values."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PRIMITIVES):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"{key} has a key of type {type(k).__name__} ({k!r}); use str or int keys")
            check_plain(v, f"{key}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{key}[{i}]")
        return
    raise CheckpointError(
        f"{key} is a {type(value).__module__}.{type(value).__name__}; a checkpoint may hold only "
        "tensors, numbers, strings, booleans, None and lists/dicts of them (convert it first)"
    )


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    A reader never sees a half-written file, even if the process is killed mid-write.
    """
    check_plain(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # same folder: rename is atomic
    try:
        with open(tmp, "xb") as handle:  # created with the usual umask permissions
            torch.save(dict(checkpoint), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_torch_load(path: str | Path, map_location: str | torch.device = "cpu", what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file.

    Never runs code from the file. An empty, truncated or foreign file, and a pickle that would
    build objects, each raise :class:`CheckpointError` naming the file (and the object it would
    build) without passing on torch's advice to load it unsafely.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a {what}; was it written completely?")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is noise here
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:
            raise CheckpointError(
                f"refused to load {path}: it would build a {found.group(1)} object when unpickled, and sciogen never "
                f"executes code from a {what}; only tensors, numbers, strings and lists / dicts of them are read. "
                "Re-save it with sciogen (or torch.save of plain tensors) from a trusted source."
            ) from None
        raise CheckpointError(
            f"refused to load {path}: it is not a file written by torch.save (a plain pickle, another format, or a "
            f"damaged file), and sciogen never executes code from a {what} to find out"
        ) from None
    except (RuntimeError, EOFError) as err:
        first = str(err).strip().split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read {path} as a {what}: the file is truncated or damaged ({first})") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {path} as a {what}: {err}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a sciogen checkpoint with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` when the file would execute code or build arbitrary
    objects when unpickled, or when it is not a sciogen checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = safe_torch_load(path, map_location, what="checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sciogen checkpoint (no format={FORMAT!r} entry)")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {data['format_version']}, newer than this sciogen "
            f"understands ({FORMAT_VERSION}); upgrade sciogen"
        )
    return data


# -- the checkpoints of a run folder -------------------------------------------------------


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step-00001000.pt``."""
    return Path(run_dir) / "checkpoints" / f"step-{int(step):08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted paths."""
    found = list_checkpoints(run_dir)
    doomed = [p for _, p in found[: max(len(found) - keep_last, 0)]]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path} is a folder without checkpoints (expected {path}/checkpoints/step-*.pt)")
        return latest
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or run folder at {path}")
    return path


def export_checkpoint(
    source: str | Path | Mapping[str, Any],
    destination: str | Path,
    *,
    ema_only: bool = True,
    half: bool = False,
    keep_fp32: Sequence[str] = (),
) -> Path:
    """Write a shippable checkpoint: no trainer state, the training stages recorded.

    ``source`` is a training checkpoint, a run folder (its latest checkpoint) or a checkpoint
    dict (:meth:`sciogen.train.generator.Generator.checkpoint`, after
    :meth:`~sciogen.train.generator.Generator.prepare_export`). The result holds the config,
    metadata and weights only: what :func:`sciogen.load` needs, a fraction of the size.

    Args:
        ema_only: keep the EMA weights as the model's weights (the ones sampling uses) and
            drop the raw ones; False keeps both.
        half: store floating-point weights in float16 (loading casts them back to the
            network's float32; measure the shipped file, since its numbers include the
            rounding), except the weights whose names contain one of ``keep_fp32``.
        keep_fp32: name fragments of weights kept in float32 under ``half`` (e.g. ``".kernel."``).

    The metadata gets ``trained_steps`` (this run's steps) and, when the run started from
    another run's weights (``train.init_from`` in its config), the steps of every stage
    (:func:`record_stages`).
    """
    checkpoint = dict(load_checkpoint(resolve_checkpoint(source)) if isinstance(source, (str, Path)) else source)
    trainer = checkpoint.pop("trainer", None) or {}
    metadata = checkpoint["metadata"] = dict(checkpoint.get("metadata") or {})
    if trainer:
        metadata["trained_steps"] = int(trainer.get("step", 0))
    metadata.setdefault("trained_steps", 0)
    if ema_only and checkpoint.get("ema") is not None:
        checkpoint["model"], checkpoint["ema"] = checkpoint["ema"], None
    if half:
        keep = tuple(keep_fp32)
        for key in ("model", "ema"):
            if checkpoint.get(key) is not None:
                checkpoint[key] = {k: v.half() if v.is_floating_point() and not any(f in k for f in keep) else v
                                   for k, v in checkpoint[key].items()}
    init_from = ((checkpoint.get("config") or {}).get("train") or {}).get("init_from")
    try:
        checkpoint = record_stages(checkpoint, init_from, metadata["trained_steps"])
    except FileNotFoundError:
        warnings.warn(f"train.init_from {init_from} is gone: the export records this run's "
                      f"{metadata['trained_steps']} steps only, not the earlier stage's", stacklevel=2)
    return save_checkpoint(checkpoint, destination)


def record_stages(checkpoint: dict[str, Any], init_from: str | Path | None, trained_steps: int) -> dict[str, Any]:
    """Note in an exported checkpoint's metadata how many steps each training stage ran.

    A run started from another run's weights (``train.init_from``) trained ``trained_steps``
    on top of that run's. ``stage_steps`` lists every stage in order: the earlier file's own
    ``stage_steps`` when it is itself a multi-stage export, else its one stage (a run
    checkpoint's trainer step, or an export's ``trained_steps``), then this run's. ``stage1_trained_steps`` (the
    first stage) and ``total_trained_steps`` are derived from it. Without ``init_from`` the
    checkpoint is returned unchanged.
    """
    if init_from:
        previous = load_checkpoint(resolve_checkpoint(init_from))
        earlier = previous.get("metadata") or {}
        if previous.get("trainer"):  # a training run's own checkpoint: its steps are one stage
            stages = [int(previous["trainer"].get("step", 0))]
        elif earlier.get("stage_steps"):
            stages = [int(s) for s in earlier["stage_steps"]]
        elif "stage1_trained_steps" in earlier:  # a two-stage export written before stage_steps existed
            stages = [int(earlier["stage1_trained_steps"]), int(earlier["total_trained_steps"]) - int(earlier["stage1_trained_steps"])]
        else:
            stages = [int(earlier.get("trained_steps", 0))]
        stages.append(int(trained_steps))
        metadata = checkpoint.setdefault("metadata", {})
        metadata["stage_steps"] = stages
        metadata["stage1_trained_steps"] = stages[0]
        metadata["total_trained_steps"] = sum(stages)
    return checkpoint
