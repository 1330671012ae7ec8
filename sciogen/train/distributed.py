"""Distributed data parallel (DDP) under ``torchrun``: process group, device, helpers.

The same entry point runs as one process or as ``torchrun --nproc-per-node N ...``.
:func:`setup` reads the environment that torchrun sets (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), picks the device (``cuda:LOCAL_RANK`` when GPUs are present, else CPU)
and the matching backend (PyTorch's default for that device: nccl on GPU, gloo on CPU)
and joins the process group. Only rank 0 logs and writes files (:func:`is_main`).

All helpers work unchanged, and cheaply, in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "setup",
    "shutdown",
    "info",
    "resolve_device",
    "is_main",
    "barrier",
    "all_reduce_mean",
    "all_reduce_max",
    "all_gather_objects",
    "broadcast_object",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` if a GPU is present, else ``cpu``; other names pass through."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:0, mps, ...") from None
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        index = _env_int("LOCAL_RANK", 0) if local_rank is None else local_rank
        return torch.device("cuda", index % torch.cuda.device_count())
    return torch.device("cpu")


def _check_available(device: torch.device) -> None:
    """A ValueError naming the device when this machine has no such device."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {str(device)!r} was asked for, but this machine has no CUDA GPU "
                             "(or PyTorch was built without CUDA); use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(device)!r} was asked for, but this machine has {count} GPU(s): cuda:0 .. cuda:{count - 1}")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available here; use --device cpu or auto")


def setup(device: str | torch.device = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); idempotent.

    Returns this process's :class:`DistInfo`. In a single process nothing is initialised.
    """
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=dist.get_default_backend_for_device(dev), device_id=_device_id(dev))
    return info(dev)


def _device_id(dev: torch.device) -> torch.device | None:
    return dev if dev.type == "cuda" else None


def info(device: str | torch.device = "auto") -> DistInfo:
    """This process's :class:`DistInfo` (rank 0 of 1 when no process group is up)."""
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), dev)
    return DistInfo(0, 0, 1, dev)


def shutdown() -> None:
    """Leave the process group if one is up."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all processes (the tensor itself in a single process)."""
    if not _active():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_max(value: torch.Tensor) -> torch.Tensor:
    """Maximum of a tensor over all processes."""
    if not _active():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process).

    Objects travel between this job's own processes with pickle; nothing is read from disk.
    """
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
