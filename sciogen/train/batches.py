"""Which samples each process trains on at each step: a resumable, rank-sharded batch plan.

Step ``s`` of a run over ``N`` samples with global batch ``B`` uses

    epoch  e = s // (N // B),   offset o = s % (N // B)
    batch    = perm_e[o B : (o + 1) B],   perm_e = randperm(N) seeded by (seed, e)

(the last ``N mod B`` samples of each permutation are dropped). Rank ``r`` of ``W``
processes loads only its slice ``batch[r B/W : (r + 1) B/W]``, cut into ``grad_accum``
micro-batches. The global batch of a step therefore depends on the step alone: the
position in the data is restored exactly on resume, and the optimisation is the same on
one process or many. Micro-batch ``j`` of rank ``r`` has the global index ``r A + j``,
used to seed that micro-batch's noise.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from .seeding import derive_seed

__all__ = ["ShardedBatchSampler"]


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches of dataset indices for steps ``[start_step, total_steps)``.

    Args:
        num_samples: dataset length N.
        batch_size: global batch B per optimizer step; must divide by ``world_size * grad_accum``.
        total_steps: the run's last step (exclusive).
        start_step: the first step to yield (resume point).
        world_size, rank: the process layout.
        grad_accum: micro-batches per step and process.
        seed: base seed of the epoch permutations.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        total_steps: int,
        *,
        start_step: int = 0,
        world_size: int = 1,
        rank: int = 0,
        grad_accum: int = 1,
        seed: int = 0,
    ):
        parts = world_size * grad_accum
        if batch_size % parts:
            raise ValueError(
                f"train.batch_size={batch_size} must divide by processes x grad_accum = "
                f"{world_size} x {grad_accum} = {parts}"
            )
        if num_samples < batch_size:
            raise ValueError(f"the dataset has {num_samples} samples, fewer than train.batch_size={batch_size}")
        self.num_samples, self.batch_size, self.total_steps = num_samples, batch_size, total_steps
        self.start_step, self.world_size, self.rank = start_step, world_size, rank
        self.grad_accum, self.seed = grad_accum, seed
        self.steps_per_epoch = num_samples // batch_size
        self.micro_batch = batch_size // parts

    def position(self, step: int) -> dict[str, int]:
        """The data position before ``step``: epoch and batch offset within it."""
        return {"epoch": step // self.steps_per_epoch, "offset": step % self.steps_per_epoch}

    def chunk_index(self, micro: int) -> int:
        """Global index of this rank's micro-batch ``micro`` within a step."""
        return self.rank * self.grad_accum + micro

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        share = self.batch_size // self.world_size
        for step in range(self.start_step, self.total_steps):
            pos = self.position(step)
            if pos["epoch"] != epoch:
                epoch, perm = pos["epoch"], self._permutation(pos["epoch"])
            start = pos["offset"] * self.batch_size + self.rank * share
            mine = perm[start : start + share]
            for j in range(self.grad_accum):
                yield mine[j * self.micro_batch : (j + 1) * self.micro_batch].tolist()

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0) * self.grad_accum
