"""The block-by-block generation loop of block-wise autoregressive diffusion.

Block k of every unfinished sample is made in four moves: the clean prefix is encoded
once (a key/value cache, a graph network's clean pass), a plan gives each sample the size
of its next block (0: the sample is finished), the block is drawn by diffusion conditioned
on the prefix (and drawn again for the samples a check rejects), and the finished block is
written to the prefix. A model supplies the moves as a :class:`BlockSampler` and
:func:`generate_blocks` runs them: :class:`~sciogen.ar.BlockAR` (one block size for the
whole batch, from a list or a callback) and PARD's molecules
(:func:`sciogen.molecules.pard.sample_graphs`: a size and degree per molecule, blocks that
break a valence drawn again) share it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["BlockSampler", "generate_blocks"]


class BlockSampler(ABC):
    """The moves of one block-wise generation; the samples themselves live in the object.

    ``rows`` are the samples still being generated, as indices (R,) into the batch; a plan
    and a block hold one row per such sample.
    """

    @abstractmethod
    def prefix(self, k: int, rows: torch.Tensor) -> Any:
        """What block k of ``rows`` is conditioned on, computed once per block (e.g. the
        encoded clean prefix)."""

    @abstractmethod
    def plan(self, k: int, prefix: Any, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The next block of every row: ``{"size": (R,) long, ...}``; size 0 finishes the
        sample. Other entries, (R, ...) each, are the model's (a block degree, per-token
        features)."""

    @abstractmethod
    def draw(self, k: int, prefix: Any, plan: dict[str, torch.Tensor],
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Block k of the plan's rows drawn by diffusion: {field: (R, ...)}."""

    @abstractmethod
    def commit(self, k: int, rows: torch.Tensor, prefix: Any, plan: dict[str, torch.Tensor],
               block: dict[str, torch.Tensor]) -> None:
        """Write block k of ``rows`` (drawn after ``prefix``) into the samples: it joins their
        clean prefix."""

    def select(self, prefix: Any, rows: torch.Tensor) -> Any:
        """The prefix of some rows (``rows``: indices into the current rows): needed when a
        plan finishes some samples but not all, or when blocks are drawn again."""
        raise NotImplementedError(f"{type(self).__name__} generates every sample's blocks together; "
                                  "it cannot keep some rows of a prefix")

    def reject(self, k: int, prefix: Any, plan: dict[str, torch.Tensor],
               block: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(R,) bool, the rows whose block is drawn again; None (the default): none."""
        return None


def _rows(plan: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[rows] for key, value in plan.items()}


def generate_blocks(
    sampler: BlockSampler,
    num_samples: int,
    *,
    first_block: int = 0,
    max_blocks: int | None = None,
    retries: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: str | None = None,
) -> int:
    """Generate blocks ``first_block, first_block + 1, ...`` until every sample is finished.

    Per block: ``prefix`` of the unfinished rows, ``plan`` (rows with size 0 finish),
    ``draw`` for the others, then up to ``retries`` times ``draw`` again for the rows that
    ``reject`` names, and ``commit``. Stops when no sample is left or after ``max_blocks``
    blocks (None: no limit). ``progress``: the description of a progress bar (tqdm) counting
    blocks, None for none. Returns the number of blocks generated.
    """
    active = torch.ones(int(num_samples), dtype=torch.bool, device=device)
    bar = tqdm(total=None, desc=progress, unit="block", disable=progress is None, leave=False)
    made = 0
    try:
        while max_blocks is None or made < max_blocks:
            bar.set_postfix(unfinished=int(active.sum()))
            bar.update()
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            k = first_block + made
            prefix = sampler.prefix(k, rows)
            plan = sampler.plan(k, prefix, generator)
            size = plan["size"]
            active[rows[size == 0]] = False
            keep = (size > 0).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            if keep.numel() < rows.numel():
                rows, plan, prefix = rows[keep], _rows(plan, keep), sampler.select(prefix, keep)
            block = sampler.draw(k, prefix, plan, generator)
            for _ in range(int(retries)):
                redo = sampler.reject(k, prefix, plan, block)
                if redo is None or not bool(redo.any()):
                    break
                r = redo.nonzero().squeeze(1)
                again = sampler.draw(k, sampler.select(prefix, r), _rows(plan, r), generator)
                for name, value in again.items():
                    block[name][r] = value
            sampler.commit(k, rows, prefix, plan, block)
            made += 1
    finally:
        bar.close()
    return made
