"""Per-token diffusion head: a causal transformer over mixed discrete / continuous tokens.

UniGenX (Zhang et al. 2025) and MAR (Li et al. 2024): a sequence interleaves discrete
tokens (element symbols, keywords) and continuous values (a number, a lattice row, xyz
coordinates). A continuous position carries the reserved token ``value_token`` (a "[NUM]"
marker) and a value vector of size ``value_dim``; its input embedding is a small encoder
of the value instead of the token embedding.

With hidden states ``h_i`` of the causal transformer, position i + 1 is predicted from
``h_i``:

- its token by a softmax head, trained with cross-entropy (so the model also learns *when*
  a value comes: it predicts the marker);
- where the token is the marker, its value by a diffusion head, a small AdaLN MLP
  ``head(x_t, t, cond=h_i)`` trained with the core's Gaussian loss; each target is
  repeated ``diffusion_repeats`` times with independent times and noise (MAR's
  "diffusion batch multiplier"), which lowers the gradient variance at little cost.

Generation runs token after token with a key/value cache. When a marker is drawn, the
value is sampled by any core solver from ``temperature * N(0, I)``, optionally with fewer
solver steps for later positions (:class:`~sciogen.ar.annealing.StepAnnealing`, DiSA).

Data layout (the domain tokeniser provides it):

    tokens (B, N) long   - token ids; ``value_token`` at continuous positions; position 0
                           is a start token the model never predicts.
    values (B, N, D) float - values at continuous positions (anything elsewhere).
    valid  (B, N) bool   - False at right padding (optional).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn
from torch.nn import functional as F

from sciogen.config import from_dict, to_dict

from ..config import check_choice
from ..diffusion import PREDICTIONS, SCHEDULES, GaussianProcess, sample
from ..diffusion.gaussian import LOSS_WEIGHTINGS
from ..nn.adaln import AdaLNMLP
from ..nn.attention import KVCache
from .annealing import StepAnnealing, resolve_steps
from .transformer import Transformer, TransformerConfig

__all__ = ["TokenARConfig", "TokenAR", "SequenceSample", "sample_token"]


@dataclass
class TokenARConfig:
    """Sizes and diffusion settings of a :class:`TokenAR`.

    Attributes:
        vocab_size: number of discrete token ids (including ``value_token`` and specials).
        value_dim: size D of the continuous value at a value position.
        value_token: id of the marker that flags a continuous position.
        eos_token: id that ends a sequence in generation (None: generate to full length).
        max_len: the longest sequence (learned position embeddings).
        dim, depth, heads, mlp_ratio, dropout: the causal transformer.
        head_width, head_depth: the AdaLN-MLP diffusion head.
        schedule, prediction, loss_weighting: the head's Gaussian process. The default
            cosine schedule reaches alpha(1) ~ 5e-4, where an eps-model's x0 estimate
            divides by alpha: use "v" (default) or "x0" with it, or "eps" with "linear"
            (MAR's choice).
        diffusion_repeats: noise draws per continuous target and training step.
        value_loss_weight: weight of the diffusion loss against the token cross-entropy.
    """

    vocab_size: int
    value_dim: int = 1
    value_token: int = 1
    eos_token: int | None = None
    max_len: int = 256
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    head_width: int = 256
    head_depth: int = 3
    schedule: Literal["linear", "cosine", "discrete"] = "cosine"
    prediction: Literal["eps", "x0", "v"] = "v"
    loss_weighting: Literal["none", "snr", "min_snr", "x0"] = "none"
    diffusion_repeats: int = 4
    value_loss_weight: float = 1.0

    def __post_init__(self):
        if not 0 <= self.value_token < self.vocab_size:
            raise ValueError(f"value_token {self.value_token} is outside the vocabulary [0, {self.vocab_size})")
        if self.eos_token is not None and not 0 <= self.eos_token < self.vocab_size:
            raise ValueError(f"eos_token {self.eos_token} is outside the vocabulary [0, {self.vocab_size})")
        if self.eos_token == self.value_token:
            raise ValueError("eos_token and value_token must differ")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_choice("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        if self.diffusion_repeats < 1:
            raise ValueError(f"diffusion_repeats must be >= 1, got {self.diffusion_repeats}")

    def transformer(self) -> TransformerConfig:
        return TransformerConfig(self.dim, self.depth, self.heads, self.mlp_ratio, self.dropout, cond_dim=None)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenARConfig":
        return from_dict(cls, d)


@dataclass
class SequenceSample:
    """Generated sequences.

    Attributes:
        tokens: (B, N) long, the prompt followed by the generated tokens.
        values: (B, N, D) float, values at ``value_token`` positions (0 elsewhere).
        valid: (B, N) bool, False after a sequence's end token.
    """

    tokens: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor

    def is_value(self, value_token: int) -> torch.Tensor:
        return (self.tokens == value_token) & self.valid


def sample_token(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one id per row from ``softmax(logits / temperature)``; temperature 0 is argmax.

    Shapes: logits (B, V) -> (B,) long.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class TokenAR(nn.Module):
    """Causal transformer with a softmax head for tokens and a diffusion head for values.

    Args:
        config: a :class:`TokenARConfig`.

    Attributes:
        transformer: the causal :class:`~sciogen.ar.transformer.Transformer`.
        head: the diffusion head, a model callable ``head(x_t, t, cond=h)`` with
            x_t (M, D), t (M,), h (M, dim) -> prediction (M, D), so the core solvers
            (:func:`sciogen.diffusion.sample`) drive it directly.
        process: the head's :class:`~sciogen.diffusion.GaussianProcess`.
    """

    def __init__(self, config: TokenARConfig):
        super().__init__()
        self.config = c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.dim)
        self.value_embed = nn.Sequential(nn.Linear(c.value_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.pos_embed = nn.Embedding(c.max_len, c.dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        self.transformer = Transformer(c.transformer())
        self.lm_head = nn.Linear(c.dim, c.vocab_size)
        self.head = AdaLNMLP(c.value_dim, c.dim, c.head_width, c.head_depth)
        self.process = GaussianProcess(c.schedule, c.prediction, c.loss_weighting)

    # -- forward ---------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor, values: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """Input embeddings (B, N, dim) of positions ``start .. start + N - 1``."""
        b, n = tokens.shape
        if start + n > self.config.max_len:
            raise ValueError(
                f"positions up to {start + n} exceed max_len={self.config.max_len}; "
                "build the model with a larger TokenARConfig.max_len"
            )
        is_value = tokens == self.config.value_token
        x = self.token_embed(tokens)
        if values is not None and bool(is_value.any()):
            if values.shape != (b, n, self.config.value_dim):
                raise ValueError(f"values must have shape {(b, n, self.config.value_dim)}, got {tuple(values.shape)}")
            clean = torch.where(is_value[..., None], values, torch.zeros((), dtype=values.dtype, device=values.device))
            x = torch.where(is_value[..., None], self.value_embed(clean.to(x.dtype)), x)
        elif bool(is_value.any()):
            raise ValueError("tokens contain value positions; pass their values (B, N, value_dim)")
        pos = torch.arange(start, start + n, device=tokens.device)
        return x + self.pos_embed(pos)

    def forward(
        self, tokens: torch.Tensor, values: torch.Tensor | None = None, *, cache: KVCache | None = None, start: int = 0
    ) -> torch.Tensor:
        """Hidden states (B, N, dim) of positions ``start ..``; ``h[:, i]`` predicts position
        ``start + i + 1``. With a ``cache`` the positions before ``start`` come from it and the
        new keys/values are appended."""
        if cache is not None and len(cache) != start:
            raise ValueError(f"the cache holds {len(cache)} positions but start={start}")
        return self.transformer(self.embed(tokens, values, start), causal=True, cache=cache)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., vocab_size) from hidden states (..., dim)."""
        return self.lm_head(hidden)

    # -- training --------------------------------------------------------------------
    def loss(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        *,
        valid: torch.Tensor | None = None,
        value_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss of a batch.

        Args:
            tokens: (B, N) long; values: (B, N, D); valid: (B, N) bool (False = padding).
            value_mask: (B, N, D) bool, which value components count (e.g. a 1-D number
                stored in a 3-D slot); all when None. Masked components are set to 0 in
                the diffusion target and left out of its loss (in generation they come
                out as noise the domain ignores).
            generator: the source of the diffusion times and noise.

        Returns:
            ``{"loss": scalar to minimise, "token_nll": mean cross-entropy per predicted
            token, "value_loss": mean diffusion loss per value}`` (the last two detached).
        """
        c = self.config
        hidden = self(tokens, values)[:, :-1]
        target = tokens[:, 1:]
        counts = torch.ones_like(target, dtype=torch.bool) if valid is None else valid[:, 1:].bool()
        ce = F.cross_entropy(self.logits(hidden).transpose(1, 2).float(), target, reduction="none")
        token_nll = (ce * counts).sum() / counts.sum().clamp_min(1)
        is_value = (target == c.value_token) & counts
        if bool(is_value.any()):
            x0 = values[:, 1:][is_value].repeat(c.diffusion_repeats, 1)
            cond = hidden[is_value].repeat(c.diffusion_repeats, 1)
            mask = None
            if value_mask is not None:
                mask = value_mask[:, 1:][is_value].bool().repeat(c.diffusion_repeats, 1)
                x0 = torch.where(mask, x0, torch.zeros((), dtype=x0.dtype, device=x0.device))
            value_loss = self.process.loss(self.head, x0.to(hidden.dtype), mask=mask, generator=generator, cond=cond).mean()
        else:
            value_loss = hidden.sum() * 0.0
        loss = token_nll + c.value_loss_weight * value_loss
        return {"loss": loss, "token_nll": token_nll.detach(), "value_loss": value_loss.detach()}

    # -- generation ------------------------------------------------------------------
    @torch.no_grad()
    def sample_values(
        self,
        hidden: torch.Tensor,
        *,
        solver: str = "ddim",
        steps: int = 20,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        **sample_options,
    ) -> torch.Tensor:
        """Draw values from the diffusion head given hidden states.

        The solver starts from ``temperature * N(0, I)``: temperature 1 samples the learned
        conditional, lower values concentrate the samples (0 with a deterministic solver
        gives one point per hidden state). Stochastic solvers ("ddpm", "euler-maruyama",
        "ddim" with eta > 0) re-inject unit noise, so there the temperature only scales
        the start.

        Shapes: hidden (M, dim) -> (M, value_dim). ``sample_options`` go to
        :func:`sciogen.diffusion.sample` (grid, solver_options, ...).
        """
        shape = (hidden.shape[0], self.config.value_dim)
        x_T = self.process.prior(shape, generator=generator, device=hidden.device, dtype=hidden.dtype) * temperature
        return sample(
            self.head, x_T, schedule=self.process.schedule, prediction=self.process.prediction, solver=solver,
            steps=steps, generator=generator, cond=hidden, **sample_options,
        )

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        prompt_values: torch.Tensor | None = None,
        *,
        length: int,
        solver: str = "ddim",
        steps: int | StepAnnealing = 20,
        temperature: float = 1.0,
        token_temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        logits_processor: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        **sample_options,
    ) -> SequenceSample:
        """Continue ``prompt`` token by token up to ``length`` positions.

        Args:
            prompt: (B, P) long, at least the start token; prompt_values (B, P, D) if the
                prompt holds value positions.
            length: total length of the output, prompt included (<= max_len).
            solver, steps: the core solver for values and its number of steps, or a
                :class:`StepAnnealing` (DiSA) that lowers the steps along the sequence.
            temperature: scale of the starting noise of the value solver.
            token_temperature: softmax temperature of the tokens (0 = greedy).
            generator: the only source of randomness.
            use_cache: keep a key/value cache (one new position per step); False recomputes
                the whole prefix at every step (same result, for testing and benchmarks).
            logits_processor: ``f(position, logits (B, V), tokens so far (B, position)) ->
                logits`` to enforce a grammar (e.g. force a value at known positions).

        Returns:
            a :class:`SequenceSample` of shape (B, L) with L <= length (shorter when every
            sequence has emitted ``eos_token``).
        """
        c = self.config
        b, p = prompt.shape
        if not p <= length <= c.max_len:
            raise ValueError(f"need prompt length {p} <= length {length} <= max_len {c.max_len}")
        dtype = self.token_embed.weight.dtype
        tokens = prompt.new_zeros(b, length)
        values = torch.zeros(b, length, c.value_dim, dtype=dtype, device=prompt.device)
        tokens[:, :p] = prompt
        if prompt_values is not None:
            values[:, :p] = prompt_values.to(dtype)
        valid = torch.ones(b, length, dtype=torch.bool, device=prompt.device)
        done = torch.zeros(b, dtype=torch.bool, device=prompt.device)
        cache = self.transformer.new_cache(capacity=length) if use_cache else None
        h_last = self(tokens[:, :p], values[:, :p], cache=cache)[:, -1]
        end = length
        for i in range(p, length):
            logits = self.logits(h_last)
            if logits_processor is not None:
                logits = logits_processor(i, logits, tokens[:, :i])
            tok = sample_token(logits, token_temperature, generator)
            if c.eos_token is not None:
                tok = torch.where(done, torch.full_like(tok, c.eos_token), tok)
                valid[:, i] = ~done
            is_value = (tok == c.value_token) & ~done
            tokens[:, i] = tok
            if bool(is_value.any()):
                k = resolve_steps(steps, i - p, length - p)
                values[is_value, i] = self.sample_values(
                    h_last[is_value], solver=solver, steps=k, temperature=temperature, generator=generator,
                    **sample_options,
                ).to(dtype)
            if c.eos_token is not None:
                done = done | (tok == c.eos_token)
                if bool(done.all()):
                    end = i + 1
                    break
            if i + 1 < length:
                if use_cache:
                    h_last = self(tokens[:, i : i + 1], values[:, i : i + 1], cache=cache, start=i)[:, -1]
                else:
                    h_last = self(tokens[:, : i + 1], values[:, : i + 1])[:, -1]
        return SequenceSample(tokens[:, :end], values[:, :end], valid[:, :end])
