"""Synthetic sequences whose conditional distributions are known exactly.

They check that the autoregressive heads learn the right conditionals (tests) and
measure sample quality against the truth (benchmarks). Each next vector is drawn from a
two-component Gaussian mixture whose means depend on the previous vector, so the exact
conditional is a :class:`~sciogen.diffusion.GaussianMixture` and two-sample statistics
against it are meaningful.

:func:`fit` is a minimal AdamW loop for these toys; real training uses ``sciogen.train``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..diffusion import GaussianMixture

__all__ = ["MixtureChain", "BlockMixtureChain", "BlockCategoricalChain", "fit"]


class MixtureChain:
    """Token sequence ``[BOS, x_1, ..., x_T, S]`` mixing values and discrete tokens.

    - ``x_1 ~ 0.5 N(+c, s^2 I) + 0.5 N(-c, s^2 I)``;
    - ``x_{k+1} | x_k ~ 0.5 N(R x_k + c, s^2 I) + 0.5 N(R x_k - c, s^2 I)``, R = ``gain``
      times a rotation by ``angle``;
    - ``S`` = ``POS`` if the first coordinate of x_T is positive, else ``NEG`` (a discrete
      token that depends on the last value).

    Token ids: ``BOS = 0``, ``VALUE = 1`` (the value marker), ``NEG = 2``, ``POS = 3``.

    Args:
        length: number of values T.
        dim: size of each value (>= 2).
        gain, angle: the linear map R.
        offset: the component offset c (its first two coordinates; others 0).
        noise: the component standard deviation s.
    """

    BOS, VALUE, NEG, POS = 0, 1, 2, 3
    vocab_size = 4

    def __init__(self, length: int = 3, dim: int = 2, gain: float = 0.7, angle: float = 0.8,
                 offset: tuple[float, float] = (0.4, 1.2), noise: float = 0.25):
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self.length, self.dim, self.noise = int(length), int(dim), float(noise)
        rot = torch.eye(dim, dtype=torch.float64)
        rot[:2, :2] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        self.matrix = gain * rot
        self.offset = torch.zeros(dim, dtype=torch.float64)
        self.offset[:2] = torch.tensor(offset, dtype=torch.float64)

    @property
    def seq_len(self) -> int:
        return self.length + 2

    def conditional(self, prev: torch.Tensor | None) -> GaussianMixture:
        """The exact law of the next value given the previous one (None: of x_1)."""
        center = torch.zeros(self.dim, dtype=torch.float64) if prev is None else self.matrix @ prev.double()
        means = torch.stack([center + self.offset, center - self.offset])
        return GaussianMixture(means, torch.full((2,), self.noise, dtype=torch.float64))

    def sample_values(self, n: int, generator: torch.Generator | None = None, first: torch.Tensor | None = None):
        """(n, T, dim) float64 values (the chain continued from ``first`` (dim,) if given)."""
        x = torch.empty(n, self.length, self.dim, dtype=torch.float64)
        prev = None if first is None else first.double().expand(n, self.dim)
        for k in range(self.length):
            sign = torch.randint(0, 2, (n, 1), generator=generator).double() * 2 - 1
            center = 0.0 if prev is None else prev @ self.matrix.T
            prev = center + sign * self.offset + self.noise * torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
            x[:, k] = prev
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences ``tokens (n, T + 2)`` long and ``values (n, T + 2, dim)`` float32."""
        x = self.sample_values(n, generator)
        tokens = torch.full((n, self.seq_len), self.VALUE, dtype=torch.long)
        tokens[:, 0] = self.BOS
        tokens[:, -1] = torch.where(x[:, -1, 0] > 0, self.POS, self.NEG)
        values = torch.zeros(n, self.seq_len, self.dim)
        values[:, 1:-1] = x.float()
        return tokens, values

    def end_token(self, last_value: torch.Tensor) -> torch.Tensor:
        """The correct final token for values x_T (..., dim)."""
        return torch.where(last_value[..., 0] > 0, self.POS, self.NEG)


class BlockMixtureChain:
    """Blocked series: K blocks of L scalars, block k depending on block k - 1.

    - block 0 ~ 0.5 N(+c, s^2 I) + 0.5 N(-c, s^2 I) in R^L;
    - block k | block k-1 ~ 0.5 N(a m 1 + c, s^2 I) + 0.5 N(a m 1 - c, s^2 I), with m the
      mean of block k-1.

    The shared sign couples the L values of a block, so a model must denoise a block
    jointly to get it right. Values are a Gaussian field ``"x"`` of shape (n, K L, 1).

    Args:
        num_blocks: K; block_size: L; gain: a; offset: c (length L); noise: s.
    """

    def __init__(self, num_blocks: int = 3, block_size: int = 3, gain: float = 0.8,
                 offset: tuple[float, ...] = (1.0, -0.5, 0.5), noise: float = 0.2):
        if len(offset) != block_size:
            raise ValueError(f"offset must have block_size={block_size} entries, got {len(offset)}")
        self.num_blocks, self.block_size = int(num_blocks), int(block_size)
        self.gain, self.noise = float(gain), float(noise)
        self.offset = torch.tensor(offset, dtype=torch.float64)

    @property
    def block_index(self) -> torch.Tensor:
        """(K L,) block of each position."""
        return torch.arange(self.num_blocks).repeat_interleave(self.block_size)

    def conditional(self, prev: torch.Tensor | None) -> GaussianMixture:
        """Exact law of a block (L,) given the previous block (L,) (None: of block 0)."""
        center = 0.0 if prev is None else self.gain * prev.double().mean()
        base = torch.full((self.block_size,), float(center), dtype=torch.float64)
        means = torch.stack([base + self.offset, base - self.offset])
        return GaussianMixture(means, torch.full((2,), self.noise, dtype=torch.float64))

    def sample_blocks(self, n: int, generator: torch.Generator | None = None, first: torch.Tensor | None = None):
        """(n, K, L) float64 blocks (continued from block ``first`` (L,) if given)."""
        out = torch.empty(n, self.num_blocks, self.block_size, dtype=torch.float64)
        prev = None if first is None else first.double().expand(n, self.block_size)
        for k in range(self.num_blocks):
            sign = torch.randint(0, 2, (n, 1), generator=generator).double() * 2 - 1
            center = 0.0 if prev is None else self.gain * prev.mean(1, keepdim=True)
            prev = center + sign * self.offset + self.noise * torch.randn(n, self.block_size, generator=generator, dtype=torch.float64)
            out[:, k] = prev
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"x": (n, K L, 1)}`` float32."""
        return {"x": self.sample_blocks(n, generator).reshape(n, -1, 1).float()}


class BlockCategoricalChain:
    """Blocked sequence of labelled tokens: a categorical and a Gaussian field per token.

    Each block holds ``block_size`` tokens sharing one class c in {0 .. K-1}; every token
    also carries a value ``x ~ N(c - (K - 1) / 2, noise^2)``. Block 0 has a uniform class;
    block k has class ``c_{k-1} + 1`` (mod K) with probability ``stay``, else
    ``c_{k-1} + 2`` (mod K). A model must keep the tokens of a block on one class (joint
    denoising of a categorical field), follow the transition, and match the values to the
    classes (categorical and Gaussian fields together). Fields: ``"c"`` (n, N) long,
    ``"x"`` (n, N, 1) float.
    """

    def __init__(self, num_blocks: int = 3, block_size: int = 2, num_classes: int = 3, stay: float = 0.7,
                 noise: float = 0.1):
        self.num_blocks, self.block_size, self.num_classes = int(num_blocks), int(block_size), int(num_classes)
        self.stay, self.noise = float(stay), float(noise)

    @property
    def block_index(self) -> torch.Tensor:
        return torch.arange(self.num_blocks).repeat_interleave(self.block_size)

    def transition(self, prev_class: int | None) -> torch.Tensor:
        """(K,) probabilities of a block's class given the previous block's class."""
        k = self.num_classes
        if prev_class is None:
            return torch.full((k,), 1.0 / k, dtype=torch.float64)
        p = torch.zeros(k, dtype=torch.float64)
        p[(prev_class + 1) % k] += self.stay
        p[(prev_class + 2) % k] += 1.0 - self.stay
        return p

    def value_mean(self, c: torch.Tensor) -> torch.Tensor:
        return c.double() - (self.num_classes - 1) / 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        k = self.num_classes
        cls = torch.empty(n, self.num_blocks, dtype=torch.long)
        cls[:, 0] = torch.randint(0, k, (n,), generator=generator)
        for j in range(1, self.num_blocks):
            move = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < self.stay, 1, 2)
            cls[:, j] = (cls[:, j - 1] + move) % k
        c = cls.repeat_interleave(self.block_size, dim=1)
        x = self.value_mean(c) + self.noise * torch.randn(c.shape, generator=generator, dtype=torch.float64)
        return {"c": c, "x": x[..., None].float()}


def fit(
    model: torch.nn.Module,
    batch: Callable[[torch.Generator], dict],
    steps: int,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    warmup: int = 50,
) -> list[float]:
    """Minimal AdamW loop: ``loss = model.loss(**batch(generator))["loss"]``.

    A linear warm-up over ``warmup`` steps then cosine decay to 10 % of ``lr``; gradients
    clipped at norm 1. Returns the loss of every step.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def factor(i):
        if i < warmup:
            return (i + 1) / warmup
        p = (i - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    history = []
    for _ in range(steps):
        out = model.loss(**batch(gen), generator=gen)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(float(out["loss"].detach()))
    model.eval()
    return history
