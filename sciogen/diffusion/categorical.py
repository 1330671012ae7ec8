"""Categorical (discrete-state) diffusion in continuous time t in [0, 1] (D3PM / DiGress).

Every element of an integer tensor (node types (B, N), edge types (B, N, N), tokens
(B, L), ...) is a categorical variable over K classes, noised independently:

    q(x_t | x_0) = Cat(x_t; row x_0 of Qbar_t),   Qbar_t = abar(t) I + (1 - abar(t)) 1 m^T

with m the stationary distribution: uniform (1/K), the data marginals, or one-hot on the
mask class (absorbing). Matrices of this rank-one form compose by multiplying their
retention factors, so between times s < t

    q(x_t | x_s) = Cat(x_t; row x_s of a I + (1 - a) 1 m^T),   a = abar(t) / abar(s),

and the posterior ``q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0)``, the model's reverse
step and the losses all cost O(K) per element; no K x K matrix is ever formed.

References: Austin et al. 2021, "Structured Denoising Diffusion Models in Discrete
State-Spaces" (D3PM); Vignac et al. 2023, "DiGress: Discrete Denoising diffusion for graph
generation" (marginal transitions, cosine abar, cross-entropy on x0).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from .parametrization import expand_time
from .times import masked_mean, stratified_times

__all__ = [
    "CategoricalProcess",
    "sample_categorical",
    "TRANSITIONS",
    "CATEGORICAL_SCHEDULES",
    "CATEGORICAL_LOSSES",
]

TRANSITIONS = ("uniform", "marginal", "absorbing")
CATEGORICAL_SCHEDULES = ("cosine", "linear")
CATEGORICAL_LOSSES = ("ce", "vlb", "hybrid")
PREDICTION_KINDS = ("logits", "probs")

#: abar(t) is clipped to [ABAR_MIN, 1]: abar(1) ~ 0 while every division stays finite.
ABAR_MIN = 1e-6


class CategoricalProcess:
    """Discrete diffusion of an integer tensor with K classes.

    Args:
        num_classes: K, the number of classes. For ``"absorbing"`` K includes the mask
            class, which is the last index ``K - 1`` (``mask_index``); the data normally
            use classes 0 .. K - 2.
        transition: the stationary distribution m the noise drifts towards:
            ``"uniform"`` (m = 1/K, D3PM uniform), ``"marginal"`` (m = the data's class
            marginals, DiGress) or ``"absorbing"`` (m = one-hot on the mask class, D3PM
            absorbing / masked diffusion).
        marginals: the class frequencies of the data, shape (K,), summing to 1; required
            for ``"marginal"`` and refused otherwise.
        schedule: abar(t), the probability that an element is still untouched at time t:
            ``"cosine"`` (DiGress: cos(pi/2 (t + s) / (1 + s))^2 / cos(pi/2 s / (1 + s))^2,
            s = 0.008) or ``"linear"`` (abar = 1 - t, D3PM's absorbing schedule). Both are
            clipped to [1e-6, 1], so abar(0) = 1 exactly and abar(1) = 1e-6.

    Shapes: labels are integer tensors of any shape S = (B, ...); probabilities and logits
    have shape S + (K,); times are (B,) or a leading prefix of S (per token / block), or
    a scalar.
    """

    kind = "categorical"
    t_min: float = 1e-3

    def __init__(
        self,
        num_classes: int,
        transition: Literal["uniform", "marginal", "absorbing"] = "uniform",
        marginals=None,
        schedule: Literal["cosine", "linear"] = "cosine",
        cosine_s: float = 0.008,
    ):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}; allowed: {', '.join(TRANSITIONS)}")
        if schedule not in CATEGORICAL_SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(CATEGORICAL_SCHEDULES)}")
        self.num_classes = k = int(num_classes)
        self.transition = transition
        self.schedule = schedule
        self.cosine_s = float(cosine_s)
        self.mask_index = k - 1 if transition == "absorbing" else None
        if transition == "marginal":
            m = _check_marginals(marginals, k)
        elif marginals is not None:
            raise ValueError(f"marginals are only used with transition='marginal', got transition={transition!r}")
        elif transition == "uniform":
            m = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            m = F.one_hot(torch.tensor(k - 1), k).double()
        self.stationary = m  # (K,) float64

    def __repr__(self) -> str:
        return (
            f"CategoricalProcess(num_classes={self.num_classes}, transition={self.transition!r}, "
            f"schedule={self.schedule!r})"
        )

    # -- schedule ----------------------------------------------------------------------
    def alpha_bar(self, t) -> torch.Tensor:
        """abar(t) = P(x_t = x_0 is kept untouched), clipped to [1e-6, 1]; dtype of ``t``."""
        t = torch.as_tensor(t)
        t = t if t.is_floating_point() else t.double()
        u = t.double().clamp(0.0, 1.0)
        if self.schedule == "linear":
            abar = 1.0 - u
        else:
            s = self.cosine_s
            abar = (torch.cos(0.5 * math.pi * (u + s) / (1 + s)) / math.cos(0.5 * math.pi * s / (1 + s))) ** 2
        return abar.clamp(ABAR_MIN, 1.0).to(t.dtype)

    def _abar(self, t, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """abar(t) shaped to broadcast against ``x.shape + (K,)``."""
        t = torch.as_tensor(t, device=x.device)
        return expand_time(self.alpha_bar(t).to(dtype), x).unsqueeze(-1)

    def _m(self, device, dtype) -> torch.Tensor:
        return self.stationary.to(device=device, dtype=dtype)

    # -- forward process ---------------------------------------------------------------
    def q_probs(self, x0: torch.Tensor, t) -> torch.Tensor:
        """q(x_t | x_0) = abar(t) onehot(x_0) + (1 - abar(t)) m.

        Shapes: x0 integer S, t (B,) / prefix of S / scalar -> probabilities S + (K,),
        float64 if t is float64, else float32.
        """
        x0 = self._check_labels(x0, "x0")
        dtype = _prob_dtype(t)
        abar = self._abar(t, x0, dtype)
        return abar * F.one_hot(x0, self.num_classes).to(dtype) + (1.0 - abar) * self._m(x0.device, dtype)

    def noise(self, x0: torch.Tensor, t, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0). Shapes: x0 integer S, t (B,) or a prefix of S -> x_t long S."""
        return _sample_probs(self.q_probs(x0, t), generator)

    def prior(self, shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """A draw (long, ``shape``) from the stationary distribution m, the state at t = 1."""
        probs = self.stationary.to(device=device).expand(tuple(shape) + (self.num_classes,))
        return _sample_probs(probs, generator)

    # -- reverse process ---------------------------------------------------------------
    def posterior_probs(self, x_t: torch.Tensor, x0: torch.Tensor, t, s) -> torch.Tensor:
        """q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0) for s <= t.

        With a = abar(t) / abar(s), as a function of the class i of x_s:
        ``q(x_t | x_s = i) = a [i = x_t] + (1 - a) m[x_t]`` and
        ``q(x_s = i | x_0) = abar(s) [i = x_0] + (1 - abar(s)) m_i``.

        Shapes: x_t, x0 integer S; t, s (B,) / prefix of S / scalar -> S + (K,). A pair
        (x_t, x_0) that the forward process cannot produce gives a row of zeros.
        """
        x_t = self._check_labels(x_t, "x_t")
        x0 = self._check_labels(x0, "x0")
        dtype = _prob_dtype(t, s)
        like_t, _, abar_s = self._step_coefficients(x_t, t, s, dtype)
        m = self._m(x_t.device, dtype)
        right = abar_s * F.one_hot(x0, self.num_classes).to(dtype) + (1.0 - abar_s) * m
        num = like_t * right
        return num / num.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)

    def model_posterior(self, x_t: torch.Tensor, x0_probs: torch.Tensor, t, s) -> torch.Tensor:
        """p(x_s | x_t) = sum_{x_0} q(x_s | x_t, x_0) p(x_0 | x_t), in O(K) per element.

        Writing D_c = q(x_t | x_0 = c) and w_c = p(x_0 = c | x_t) / D_c, the sum collapses to

            p(x_s = i | x_t) = q(x_t | x_s = i) (abar(s) w_i + (1 - abar(s)) m_i sum_c w_c).

        Classes c with D_c = 0 cannot have produced x_t (only possible where m[x_t] = 0,
        e.g. an unmasked token under absorbing noise, whose x_0 must equal x_t); they get
        weight 0, and if the model puts all its mass there, x_0 = x_t is used. At s = 0 the
        result is p(x_0 | x_t) itself (restricted to the possible classes).

        Shapes: x_t integer S, x0_probs S + (K,), t, s (B,) / prefix of S / scalar ->
        S + (K,) in x0_probs' dtype promoted to at least float32.
        """
        x_t = self._check_labels(x_t, "x_t")
        k = self.num_classes
        if x0_probs.shape != x_t.shape + (k,):
            raise ValueError(
                f"x0_probs has shape {tuple(x0_probs.shape)}, expected x_t's shape plus the classes "
                f"{tuple(x_t.shape) + (k,)}"
            )
        dtype = torch.promote_types(_prob_dtype(t, s), x0_probs.dtype)
        p = x0_probs.to(dtype)
        like_t, abar_t, abar_s = self._step_coefficients(x_t, t, s, dtype)
        m = self._m(x_t.device, dtype)
        onehot = F.one_hot(x_t, k).to(dtype)
        m_xt = m[x_t].unsqueeze(-1)
        denom = abar_t * onehot + (1.0 - abar_t) * m_xt  # D_c = q(x_t | x_0 = c)
        possible = denom > 0
        denom = torch.where(possible, denom, torch.ones_like(denom))
        w = torch.where(possible, p / denom, torch.zeros_like(p))
        total = w.sum(-1, keepdim=True)
        w = torch.where(total > 0, w, onehot / denom)
        total = w.sum(-1, keepdim=True)
        out = like_t * (abar_s * w + (1.0 - abar_s) * m * total)
        return out / out.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)

    def step(
        self,
        x_t: torch.Tensor,
        pred: torch.Tensor,
        t,
        s,
        generator: torch.Generator | None = None,
        *,
        prediction: Literal["logits", "probs"] = "logits",
    ) -> torch.Tensor:
        """One ancestral step: draw x_s ~ p(x_s | x_t) of :meth:`model_posterior`.

        ``pred`` is the model's x_0 prediction, logits (default) or probabilities, shape
        S + (K,). At s = 0 this draws x_0 from the model's p(x_0 | x_t).
        Shapes: x_t integer S, t, s (B,) / prefix of S / scalar -> x_s long S.
        """
        if prediction not in PREDICTION_KINDS:
            raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTION_KINDS)}")
        if prediction == "logits":
            pred = torch.softmax(pred.to(torch.promote_types(pred.dtype, torch.float32)), dim=-1)
        return _sample_probs(self.model_posterior(x_t, pred, t, s), generator)

    def _step_coefficients(self, x_t: torch.Tensor, t, s, dtype):
        """q(x_t | x_s = i) over i (S + (K,)), abar(t) and abar(s) (broadcastable against it)."""
        abar_t = self._abar(t, x_t, dtype)
        abar_s = self._abar(s, x_t, dtype)
        if bool((abar_s < abar_t).any()):
            raise ValueError("need s <= t (the step goes from time t back to an earlier time s)")
        a = abar_t / abar_s
        m_xt = self._m(x_t.device, dtype)[x_t].unsqueeze(-1)
        like_t = a * F.one_hot(x_t, self.num_classes).to(dtype) + (1.0 - a) * m_xt
        return like_t, abar_t, abar_s

    # -- training ----------------------------------------------------------------------
    def sample_time(self, batch: int, generator=None, device=None, t_min: float | None = None) -> torch.Tensor:
        """Training times, uniform on [t_min, 1] with stratified (low-discrepancy) offsets; (B,) float32."""
        t_min = self.t_min if t_min is None else float(t_min)
        return stratified_times(batch, t_min, generator, device)

    def loss(
        self,
        logits: torch.Tensor,
        x0: torch.Tensor,
        x_t: torch.Tensor | None = None,
        t=None,
        *,
        kind: Literal["ce", "vlb", "hybrid"] = "ce",
        mask: torch.Tensor | None = None,
        num_steps: int = 1000,
        hybrid_weight: float = 1e-3,
    ) -> torch.Tensor:
        """Per-sample loss, shape (B,), of x_0 logits predicted from (x_t, t).

        - ``"ce"``: cross-entropy -log p(x_0 | x_t) (DiGress);
        - ``"vlb"``: the variational-bound term KL(q(x_s | x_t, x_0) || p(x_s | x_t)) with
          s = max(t - 1 / num_steps, 0) (at s = 0 it is the reconstruction -log p(x_0 | x_t));
          num_steps * E_t[term] estimates the discrete-time bound's diffusion terms;
        - ``"hybrid"``: ``vlb + hybrid_weight * ce`` (D3PM, lambda = 0.001).

        Element losses are averaged over the non-batch dimensions; ``mask`` (broadcastable
        to x0, 1 = counts) leaves out padding. Shapes: logits S + (K,), x0 / x_t integer S,
        t (B,) / prefix of S.
        """
        if kind not in CATEGORICAL_LOSSES:
            raise ValueError(f"unknown loss kind {kind!r}; allowed: {', '.join(CATEGORICAL_LOSSES)}")
        x0 = self._check_labels(x0, "x0")
        if logits.shape != x0.shape + (self.num_classes,):
            raise ValueError(
                f"logits have shape {tuple(logits.shape)}, expected x0's shape plus the classes "
                f"{tuple(x0.shape) + (self.num_classes,)}"
            )
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        ce = -logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        if kind == "ce":
            return masked_mean(ce, mask)
        if x_t is None or t is None:
            raise ValueError(f"loss kind {kind!r} needs x_t and t")
        t = torch.as_tensor(t, device=x0.device)
        s = (t - 1.0 / num_steps).clamp_min(0.0)
        q = self.posterior_probs(x_t, x0, t, s).to(logp.dtype)
        p = self.model_posterior(x_t, logp.exp(), t, s).to(logp.dtype)
        kl = (torch.xlogy(q, q) - q * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)
        err = kl if kind == "vlb" else kl + hybrid_weight * ce
        return masked_mean(err, mask)

    def training_loss(
        self,
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        kind: Literal["ce", "vlb", "hybrid"] = "ce",
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_steps: int = 1000,
        hybrid_weight: float = 1e-3,
        **cond,
    ) -> torch.Tensor:
        """Per-sample training loss (B,): draws t (unless given; uniform on [1/num_steps, 1])
        and x_t ~ q(x_t | x_0), calls ``model(x_t, t, **cond)`` for x_0 logits of shape
        x0.shape + (K,) and returns :meth:`loss` of kind ``kind``.
        """
        if t is None:
            t = self.sample_time(x0.shape[0], generator=generator, device=x0.device, t_min=1.0 / num_steps)
        x_t = self.noise(x0, t, generator=generator)
        logits = model(x_t, t, **cond)
        if logits.shape != x0.shape + (self.num_classes,):
            raise ValueError(
                f"model output has shape {tuple(logits.shape)}, expected x0's shape plus the classes "
                f"{tuple(x0.shape) + (self.num_classes,)}"
            )
        return self.loss(
            logits, x0, x_t, t, kind=kind, mask=mask, num_steps=num_steps, hybrid_weight=hybrid_weight
        )

    # -- validation --------------------------------------------------------------------
    def _check_labels(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not torch.is_tensor(x) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            got = x.dtype if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name} must be an integer tensor of class labels, got {got}")
        if x.numel():
            lo, hi = torch.aminmax(x)
            if int(lo) < 0 or int(hi) >= self.num_classes:
                raise ValueError(
                    f"{name} has labels in [{int(lo)}, {int(hi)}], outside the allowed 0 .. {self.num_classes - 1}"
                )
        return x.long()


def sample_categorical(
    model: Callable[..., torch.Tensor],
    x_T: torch.Tensor,
    process: CategoricalProcess,
    steps: int,
    generator: torch.Generator | None = None,
    **cond,
) -> torch.Tensor:
    """Ancestral sampling of a categorical diffusion (D3PM, Austin et al. 2021, Sec. 3).

    Runs ``steps`` steps on the uniform grid t_k = 1 - k / steps: each calls
    ``model(x_t, t, **cond)`` (t of shape (B,), float32) for x_0 logits of shape
    x_T.shape + (K,) and draws x_s ~ p(x_s | x_t); the last step draws x_0.

    Shapes: x_T integer (B, ...) (e.g. ``process.prior(shape, generator)``) -> long (B, ...).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    x = x_T.long()
    for k in range(int(steps)):
        t = torch.full((x.shape[0],), float(grid[k]), device=x.device)
        s = torch.full((x.shape[0],), float(grid[k + 1]), device=x.device)
        x = process.step(x, model(x, t, **cond), t, s, generator)
    return x


def _prob_dtype(*times) -> torch.dtype:
    """float64 if any time is a float64 tensor, else float32."""
    if any(torch.is_tensor(t) and t.dtype == torch.float64 for t in times):
        return torch.float64
    return torch.float32


def _sample_probs(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of (unnormalised) probabilities S + (K,) -> long S, by inverse CDF.

    One uniform per element, so with a fixed seed the leading samples do not depend on the
    batch size. Classes of probability zero are never drawn.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=torch.float64)
    v = (u * cdf[..., -1]).unsqueeze(-1)
    return (cdf <= v).sum(-1).clamp_max(probs.shape[-1] - 1)


def _check_marginals(marginals, k: int) -> torch.Tensor:
    if marginals is None:
        raise ValueError("transition='marginal' needs marginals: the data's class frequencies, shape (K,)")
    m = torch.as_tensor(marginals, dtype=torch.float64).detach().cpu()
    if m.shape != (k,):
        raise ValueError(f"marginals must have shape ({k},) (one frequency per class), got {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()) or abs(float(m.sum()) - 1.0) > 1e-4:
        raise ValueError(f"marginals must be non-negative and sum to 1, got {m.tolist()}")
    return m / m.sum()
