"""Joint diffusion of lattice, fractional coordinates and element types (DiffCSP).

The three fields of a crystal each have their own process from :mod:`sciogen.diffusion`:

- lattice: Gaussian (variance-preserving, cosine schedule, v prediction) on the
  lattice matrix divided by the crystal's length scale ``scale * N^(1/3)`` (a scalar per
  crystal, so rotations still act on it as on the lattice itself);
- fractional coordinates: the wrapped normal on [0, 1)^3 (normalised-score prediction);
- types: categorical with marginal transitions (D3PM / DiGress) for de novo generation.

One network does both tasks: in training a fraction ``csp_fraction`` of the crystals keep
their clean types (type time 0, no type loss: crystal structure prediction), the others
have their types noised at the same time as lattice and coordinates (de novo generation).

Sampling is DiffCSP's predictor-corrector loop on a uniform time grid from 1 to 0: the
DDPM posterior step for the lattice, the D3PM step for types, the reverse-diffusion
predictor for coordinates, followed (except at the last step) by ``corrector_steps``
Langevin corrector steps of the coordinates with one more network call each.

A network trained with scalar conditions (``cond``, ``cond_mask``) samples them with
classifier-free guidance (Ho & Salimans 2022): every prediction (lattice, coordinate
score, type logits) becomes ``u + guidance (c - u)``, ``u`` the prediction with every
condition replaced by its null embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sciogen.diffusion import CategoricalProcess, GaussianProcess, WrappedNormalProcess

__all__ = ["CrystalProcesses", "crystal_loss", "sample_crystals", "lattice_scale"]


@dataclass
class CrystalProcesses:
    """The processes of the three fields, and the lattice length scale (Å)."""

    lattice: GaussianProcess
    frac: WrappedNormalProcess
    types: CategoricalProcess
    scale: float

    def normalise_lattice(self, lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """Å -> O(1): lattice / (scale N^(1/3)). Shapes: (B, 3, 3), (B,)."""
        return lattice / lattice_scale(self.scale, num_atoms).to(lattice.dtype)

    def denormalise_lattice(self, lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        return lattice * lattice_scale(self.scale, num_atoms).to(lattice.dtype)


def lattice_scale(scale: float, num_atoms: torch.Tensor) -> torch.Tensor:
    """The per-crystal length scale ``scale * N^(1/3)``, shaped (B, 1, 1)."""
    return (scale * num_atoms.double().clamp_min(1) ** (1.0 / 3.0)).view(-1, 1, 1)


def crystal_loss(net, batch: dict[str, torch.Tensor], proc: CrystalProcesses, generator: torch.Generator,
                 csp_fraction: float = 0.5, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-crystal loss (B,): lattice MSE (of its process's prediction target) + coordinate
    score MSE + type cross-entropy.

    ``batch``: types (B, N) long (-1 = padding), frac (B, N, 3), lattice (B, 3, 3) in Å,
    num_atoms (B,). ``weights``: (lattice, coordinates, types). ``cond`` (B, K) and
    ``cond_mask`` (B, K) bool: the conditions of a conditional network (dropped ones False).
    """
    types, frac, num_atoms = batch["types"], batch["frac"], batch["num_atoms"]
    mask = types >= 0
    b, dev = types.shape[0], types.device
    lattice0 = proc.normalise_lattice(batch["lattice"], num_atoms).to(frac.dtype)
    t = proc.lattice.sample_time(b, generator=generator, device=dev).to(frac.dtype)
    csp = torch.rand(b, generator=generator, device=dev) < csp_fraction
    t_types = torch.where(csp, torch.zeros_like(t), t)

    lattice_t, eps = proc.lattice.noise(lattice0, t, generator=generator)
    frac_t, _ = proc.frac.noise(frac, t, generator=generator)
    types0 = types.clamp_min(0)
    types_t = proc.types.noise(types0, t_types, generator=generator)
    extra = {} if cond is None else {"cond": cond, "cond_mask": cond_mask}
    pred = net(types_t, frac_t, lattice_t, mask, t, t_types, **extra)

    loss_lattice = proc.lattice.prediction_loss(pred["lattice"], lattice0, eps, t)
    loss_frac = proc.frac.prediction_loss(pred["frac"], frac, frac_t, t, mask.unsqueeze(-1).to(frac.dtype))
    type_mask = (mask & ~csp.unsqueeze(1)).to(frac.dtype)
    loss_types = proc.types.loss(pred["types"], types0, mask=type_mask) if bool(type_mask.any()) else torch.zeros_like(t)
    w_l, w_f, w_t = weights
    return w_l * loss_lattice + w_f * loss_frac + w_t * loss_types


@torch.no_grad()
def sample_crystals(net, proc: CrystalProcesses, num_atoms: torch.Tensor, *, types: torch.Tensor | None = None,
                    steps: int = 200, corrector_steps: int = 1, step_lr: float = 1e-5,
                    allowed_types: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                    guidance: float = 1.0) -> dict[str, torch.Tensor]:
    """Generate crystals: structure prediction when ``types`` is given, else de novo.

    Args:
        net: a :class:`~sciogen.crystals.network.CSPNet`.
        num_atoms: (B,) atoms per crystal.
        types: (B, N) element indices (-1 on padding) kept fixed (CSP), or None (drawn).
        steps: predictor steps (network calls: steps + corrector_steps * (steps - 1)).
        corrector_steps, step_lr: DiffCSP's Langevin corrector of the coordinates.
        allowed_types: (K,) bool, the element types de novo samples may contain (e.g. those
            of the training data); the others get zero probability in every type step.
        cond, cond_mask: (B, K) float and bool, the conditions of a conditional network
            (None: none given); ``guidance``: the classifier-free guidance scale.

    Returns: dict(types (B, N) long, -1 on padding; frac (B, N, 3); lattice (B, 3, 3) Å).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = next(net.parameters()).device
    num_atoms = num_atoms.to(dev)
    b, n = num_atoms.shape[0], int(num_atoms.max())
    mask = torch.arange(n, device=dev).unsqueeze(0) < num_atoms.unsqueeze(1)
    lattice = proc.lattice.prior((b, 3, 3), generator=generator, device=dev)
    frac = proc.frac.prior((b, n, 3), generator=generator, device=dev)
    fixed = types is not None
    if fixed:
        types = types.to(dev)[:, :n]
        if bool(((types >= 0) != mask).any()):
            raise ValueError("types must hold num_atoms element indices per crystal and -1 on padding")
        cur_types = types.clamp_min(0)
    else:
        cur_types = proc.types.prior((b, n), generator=generator, device=dev)
    if cond is not None:
        net = _guided(net, cond.to(dev), cond_mask.to(dev), float(guidance))
    grid = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    zeros = torch.zeros(b, device=dev)
    for i in range(int(steps)):
        t = torch.full((b,), float(grid[i]), device=dev)
        s = torch.full((b,), float(grid[i + 1]), device=dev)
        last = i == int(steps) - 1
        pred = _checked(net(cur_types, frac, lattice, mask, t, zeros if fixed else t), mask, fixed, i, grid[i])
        lattice = _finite(proc.lattice.step(lattice, pred["lattice"], t, s, generator), "lattice", i, grid[i + 1])
        frac = _finite(proc.frac.predictor_step(frac, pred["frac"], t, None if last else s, generator),
                       "coordinates", i, grid[i + 1], mask)
        if not fixed:
            logits = pred["types"]
            if allowed_types is not None:
                logits = logits.masked_fill(~allowed_types.to(dev), float("-inf"))
            cur_types = proc.types.step(cur_types, logits, t, s, generator)
        if not last:
            for k in range(int(corrector_steps)):
                pred = net(cur_types, frac, lattice, mask, s, zeros if fixed else s)
                pred = _checked(pred, mask, True, i, grid[i + 1], f" (corrector {k + 1})")
                frac = _finite(proc.frac.corrector_step(frac, pred["frac"], s, generator, step_lr),
                               "coordinates", i, grid[i + 1], mask, f" (corrector {k + 1})")
    out_types = torch.where(mask, cur_types, torch.full_like(cur_types, -1))
    return {"types": out_types, "frac": frac, "lattice": proc.denormalise_lattice(lattice, num_atoms)}


def _nonfinite(what: str, i: int, t: float, where: str = "") -> FloatingPointError:
    return FloatingPointError(
        f"non-finite {what} at predictor-corrector step {i}{where} (t = {float(t):.5f}); check the checkpoint's "
        "weights, lower step_lr (DiffCSP: 5e-7 .. 1e-5) or the guidance scale")


def _checked(pred: dict[str, torch.Tensor], mask: torch.Tensor, fixed: bool, i: int, t: float,
             where: str = "") -> dict[str, torch.Tensor]:
    """The network's predictions, or FloatingPointError naming the step when one is not finite
    on the atoms (padding rows are ignored; type logits only where types are sampled)."""
    for key, value in (("lattice", pred["lattice"]), ("frac", pred["frac"][mask])) + (
            () if fixed else (("types", pred["types"][mask]),)):
        if not math.isfinite(float(value.sum())):
            raise _nonfinite(f"network output ({key})", i, t, where)
    return pred


def _finite(x: torch.Tensor, what: str, i: int, t: float, mask: torch.Tensor | None = None,
            where: str = "") -> torch.Tensor:
    """``x``, or FloatingPointError naming the step if it is not finite (on the atoms of ``mask``)."""
    if not math.isfinite(float((x if mask is None else x[mask]).sum())):
        raise _nonfinite(what, i, t, where)
    return x


def _guided(net, cond: torch.Tensor, cond_mask: torch.Tensor, guidance: float):
    """``net`` with the conditions bound and classifier-free guidance ``u + g (c - u)``."""
    null = torch.zeros_like(cond_mask)

    def call(*args):
        c = net(*args, cond=cond, cond_mask=cond_mask)
        if guidance == 1.0:
            return c
        u = net(*args, cond=cond, cond_mask=null)
        return {k: u[k] + guidance * (c[k] - u[k]) for k in c}

    return call
